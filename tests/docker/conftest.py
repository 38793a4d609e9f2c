"""tests/docker: the real image, built and started by tests/docker/run.sh (`make test-docker`).

test_container.py checks the container run.sh started, so it is left out of a plain `pytest`
(`make test`, `pytest tests`, `pytest tests/docker`): there is no container there, and under
CI=true a skipped test counts as a failure (tests/conftest.py). run.sh names the file on the
command line, which pytest collects despite `collect_ignore`; named without run.sh's variables,
it skips with the reason.

The figures the tests measure (uid, groups, image size, stop time...) are printed in an
"edge container" section at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

collect_ignore = ["test_container.py"]

_NOTES: list[str] = []


@pytest.fixture
def note() -> Callable[[str], None]:
    """Record a line for the "edge container" summary section."""
    return _NOTES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _NOTES:
        terminalreporter.section("edge container")
        for line in _NOTES:
            terminalreporter.write_line(line)
