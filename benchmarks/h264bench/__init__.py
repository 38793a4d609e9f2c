"""Parts of ``benchmarks/h264bench.py``, the H.264 benchmark (§9 of docs/interface.md).

``stats`` (pure helpers: percentiles, SSIM lines, HTTP chunks, multipart parts, WebSocket headers),
``edgeproc`` (one edge process and its CPU), ``encode`` (producer commands, offline SSIM, the CRF
search), ``viewers`` (the load-client process), ``sections`` and ``latency`` (the five
measurements), ``summary`` (the tables). Like ``loadgen`` it is a test tool beside the script,
never imported by the server; the repository root is put on the import path for ``tests.support``.
"""

import sys
from pathlib import Path

__all__ = ["REPO"]

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
