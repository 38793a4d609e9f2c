"""HTTP checks of a running edge container, for tests/docker/run.sh (not collected by pytest).

    .venv/bin/python -m tests.docker.check --port PORT

Talks to 127.0.0.1 only, with the suite's own raw clients (tests/helpers.py): /healthz, the
viewer page, /api/status (the camera fell back to the virtual one: there is no camera in CI), a
snapshot that decodes, complete MJPEG frames and a WebSocket frame. Exits 1 with a message on
the first failure.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.helpers import HOST, MjpegStream, RawWebSocket, decode_jpeg, fetch


def check(port: int) -> None:
    base = f"http://{HOST}:{port}"

    r = fetch(base + "/healthz")
    assert r.status == 200, f"/healthz answered {r.status}"
    print("  /healthz: 200")

    r = fetch(base + "/")
    assert r.status == 200 and "text/html" in r.headers.get("content-type", ""), f"/ answered {r.status}"
    print(f"  /: viewer page, {len(r.body or b'')} bytes")

    r = fetch(base + "/api/status")
    assert r.status == 200, f"/api/status answered {r.status}"
    status = r.json()
    cam = status["cameras"][0]
    assert cam["source"] == "virtual", f"expected the virtual-camera fallback, got {cam['source']!r}"
    print(f"  /api/status: version {status['version']}, {cam['name']} source {cam['source']}, state {cam['state']}")

    r = fetch(base + "/snapshot")
    assert r.status == 200 and r.body, f"/snapshot answered {r.status}"
    img = decode_jpeg(r.body)
    print(f"  /snapshot: {img.shape[1]}x{img.shape[0]} JPEG, X-Timestamp {r.headers.get('x-timestamp')}")

    with MjpegStream(HOST, port, "/stream", timeout=10) as stream:
        assert stream.head is not None and stream.head.status == 200, "MJPEG stream did not answer 200"
        t0 = time.monotonic()
        parts = stream.read_parts(5)
        took = time.monotonic() - t0
    decode_jpeg(parts[-1].jpeg)
    print(f"  /stream: 5 complete frames in {took:.2f}s")

    ws = RawWebSocket(HOST, port, "/ws", timeout=10)
    try:
        hello = ws.recv_json()
        assert hello.get("type") == "hello", hello
        frame = ws.recv_binary()
    finally:
        ws.close()
    decode_jpeg(frame.jpeg)
    print(f"  /ws: hello {hello}, frame seq {frame.seq}, {len(frame.jpeg)} bytes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        check(args.port)
    except (AssertionError, OSError) as exc:
        print(f"check failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
