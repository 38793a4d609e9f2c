"""A fake `pipe:` producer for tests/test_pipe_source.py: writes an MJPEG byte stream (or worse) on stdout.

Run with the test interpreter (it needs OpenCV to make its frames):

    python mjpeg_producer.py EVENTS MODE [--fps F] [--size WxH] [--good N] [--message TEXT]
                             [--ignore-term] [--grandchild] [-u USER:PASSWORD] [--password P]

``--ignore-term`` makes it stubborn: it ignores SIGTERM and keeps running when its stdout is closed.
``-u USER:PASSWORD`` / ``--password P`` are logged as a ``credentials`` event (``--echo-credentials``
also quotes them on stderr, as a chatty producer would).

EVENTS is a file the producer appends one line to per event, ``<event> <pid> <unix time> [detail]``:
``start`` when it starts, ``child`` with the pid of a grandchild it started (``--grandchild``),
``good``/``bad`` with the SHA-256 of every frame written (``bad`` also names the reason the server
should give), ``stall`` when it stops writing, ``exit`` just before it exits on its own.

MODE:
- ``good``: good frames at ``--fps`` for ever.
- ``stall``: ``--good`` good frames, then nothing, staying alive with stdout open.
- ``garbage``: bytes without any 0xFF (so never a JPEG marker) for ever.
- ``exit``: ``--message`` on stderr, then exit status 3, writing no frame.
- ``corrupt``: good frames with broken ones between them, cycling through the broken kinds below.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np


def log_event(path: str, event: str, detail: str = "") -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{event} {os.getpid()} {time.time():.6f} {detail}".rstrip() + "\n")


def make_jpeg(n: int, width: int, height: int) -> bytes:
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = ((n * 7) % 256, (n * 13) % 256, (n * 29) % 256)
    cv2.putText(img, f"#{n}", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def segments(jpeg: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of the header segments after SOI, up to and including SOS."""
    out = []
    pos = 2
    while True:
        marker = jpeg[pos + 1]
        out.append((pos, marker))
        if marker == 0xDA:
            return out
        pos += 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")


def without_sof(jpeg: bytes) -> bytes:
    for pos, marker in segments(jpeg):
        if marker == 0xC0:
            length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
            return jpeg[:pos] + jpeg[pos + 2 + length :]
    raise AssertionError("no SOF0")


def zero_width(jpeg: bytes) -> bytes:
    for pos, marker in segments(jpeg):
        if marker == 0xC0:
            # FF C0, length (2), precision (1), height (2), width (2)
            return jpeg[: pos + 7] + b"\x00\x00" + jpeg[pos + 9 :]
    raise AssertionError("no SOF0")


# A complete-looking image far too small to be a camera frame: SOI, a scan header, two bytes, EOI.
TOO_SMALL = b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00\x12\x34\xff\xd9"


def broken(kind: str, n: int, width: int, height: int) -> tuple[bytes, str]:
    """A broken frame and the reason the server should count it under ('' when the stream
    splitter drops it before the frame check)."""
    good = make_jpeg(n, width, height)
    if kind == "size_mismatch":
        return make_jpeg(n, width // 2, height // 2), "size_mismatch"
    if kind == "no_sof":
        return without_sof(good), "no_sof"
    if kind == "too_small":
        return TOO_SMALL, "too_small"
    if kind == "zero_width":
        return zero_width(good), "corrupt"
    if kind == "cut_in_scan":  # the next frame's SOI follows: the splitter drops this one
        return good[: len(good) // 2], ""
    if kind == "cut_in_header":  # ditto, cut inside its header
        return good[:40], ""
    raise AssertionError(kind)


BROKEN_KINDS = ("size_mismatch", "no_sof", "too_small", "zero_width", "cut_in_scan", "cut_in_header")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("events")
    ap.add_argument("mode", choices=["good", "stall", "garbage", "exit", "corrupt"])
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--good", type=int, default=10)
    ap.add_argument("--message", default="producer: no camera found (simulated)")
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--grandchild", action="store_true")
    # Credentials as curl takes them, to test that edge masks them and fills in secret references:
    # logged as a `credentials` event, and (with --echo-credentials) quoted on stderr as well.
    ap.add_argument("-u", "--user", default=None)
    ap.add_argument("--password", default=None)
    ap.add_argument("--echo-credentials", action="store_true")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    log_event(args.events, "start")
    if args.user is not None or args.password is not None:
        log_event(args.events, "credentials", f"user={args.user} password={args.password}")
        if args.echo_credentials:
            print(f"producer: logging in as {args.user} with {args.password}", file=sys.stderr, flush=True)
    if args.grandchild:
        # Something the producer started itself (like `sh -c 'a | b'`): stopping the producer must
        # stop it too. Its output goes nowhere, so only the process group reaches it.
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log_event(args.events, "child", str(child.pid))
    out = sys.stdout.buffer
    period = 1.0 / args.fps

    if args.mode == "exit":
        time.sleep(0.2)
        print(args.message, file=sys.stderr, flush=True)
        log_event(args.events, "exit")
        sys.exit(3)

    if args.mode == "garbage":
        rng = np.random.default_rng(os.getpid())
        while True:
            out.write((rng.integers(0, 255, 16384, dtype=np.uint8)).tobytes())  # 0..254: never 0xFF
            out.flush()
            time.sleep(0.02)

    n = 0
    k = 0
    next_t = time.monotonic()
    while True:
        if args.mode == "stall" and n >= args.good:
            log_event(args.events, "stall")
            while True:
                time.sleep(60)
        frame = make_jpeg(n, width, height)
        if args.mode == "corrupt" and n >= 5 and n % 2 == 1:
            kind = BROKEN_KINDS[k % len(BROKEN_KINDS)]
            k += 1
            frame, reason = broken(kind, n, width, height)
            log_event(args.events, "bad", f"{hashlib.sha256(frame).hexdigest()} {kind} {reason or '-'}")
            if k % 3 == 0:
                frame += b"not a jpeg \x00\x01 between frames"  # junk the splitter skips
        else:
            log_event(args.events, "good", hashlib.sha256(frame).hexdigest())
        out.write(frame)
        out.flush()
        n += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the server closed its end: it is stopping us
        if "--ignore-term" in sys.argv:
            # Stubborn: ignores SIGTERM and outlives its pipe, so only SIGKILL ends it.
            while True:
                time.sleep(60)
        os._exit(1)
