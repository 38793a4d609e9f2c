"""The soak test's machinery (driven by `tests/test_soak.py`).

- `upstream.py`: a fake MJPEG-over-HTTP camera that fails and recovers on a schedule;
- `proto.py`: incremental, zero-copy MJPEG and WebSocket parsers that check every frame;
- `clients.py`: the client kinds (fast, slow, vanishing, garbage, idle);
- `worker.py`: runs the 200 clients in their own process (`python -m tests.soak.worker`), so the
  client load does not share an interpreter (and a GIL) with the upstream or the monitors;
- `monitor.py`: polls `/api/status` and samples the server's RSS, fds and CPU from /proc;
- `analysis.py`: fault windows, per-client rates and the figure table.
"""
