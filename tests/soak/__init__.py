"""The soak test's machinery (driven by `tests/test_soak.py`).

- `upstream.py`: a fake MJPEG-over-HTTP camera that fails and recovers on a schedule;
- `proto.py`: the per-frame readers, MJPEG through `tests.support.multipart` and the soak's own
  incremental, zero-copy WebSocket reader, checking every frame;
- `context.py`: what every client shares (`Ctx`, `ClientStats`, connecting and leaving);
- the client kinds: `readers.py` (fast and slow), `churn.py` (vanishers), `abuse.py` (garbage,
  idle), `attackers.py` (floods, guessers, stallers);
- `worker.py`: runs the clients in their own process (`python -m tests.soak.worker`), so the
  client load does not share an interpreter (and a GIL) with the upstream or the monitors;
- `monitor.py`: polls `/api/status` and samples the server's RSS, fds and CPU from /proc;
- `analysis.py`: fault windows, per-client rates and the figure table.
"""
