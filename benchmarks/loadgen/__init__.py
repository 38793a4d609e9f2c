"""Load-generator internals for ``benchmarks/bench.py``.

Kept as a package beside the script (not inside ``edge/``) because it is a test tool: it must
never be imported by the server, and it only talks to the server over sockets.

What is not speed-critical (the listening line, config files, response heads) comes from the
test suite's support package, ``tests/support``, so the two cannot drift apart; the per-frame
readers stay here, zero-copy. The scripts run from ``benchmarks/``, so the repository root is
put on the import path for it.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
