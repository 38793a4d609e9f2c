"""Load-generator internals for ``benchmarks/bench.py``.

Kept as a package beside the script (not inside ``edge/``) because it is a test tool: it must
never be imported by the server, and it only talks to the server over sockets.
"""
