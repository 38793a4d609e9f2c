"""The slow-reader rule (§4 of docs/interface.md): what a viewer that stopped reading may get when it resumes.

Frames are never queued per client, so a client that resumes gets at most two frames or 256 KiB
(whichever is more) captured before it resumed, then only fresh ones (edge/fanout/broadcast.py explains
how the server keeps that bound). One check, shared by the MJPEG and WebSocket tests.
"""

from __future__ import annotations

from tests.support.frames import Received

STALE_BYTES = 256 * 1024


def check_stale_after_resume(frames: list[Received], resume_at: float, min_fresh: int = 3) -> None:
    """Frames captured before the client resumed: at most 2 frames or 256 KiB; then only fresh.

    `frames` are those read after resuming, in order.
    """
    first_fresh = next((i for i, f in enumerate(frames) if f.timestamp >= resume_at), None)
    assert first_fresh is not None, f"no frame captured after resume among {len(frames)} frames read after resuming"
    stale = frames[:first_fresh]
    later_stale = [f for f in frames[first_fresh:] if f.timestamp < resume_at]
    assert not later_stale, f"{len(later_stale)} stale frame(s) arrived after a fresh one"
    stale_bytes = sum(f.size for f in stale)
    assert len(stale) <= 2 or stale_bytes <= STALE_BYTES, (
        f"after resuming, got {len(stale)} stale frames totalling {stale_bytes} bytes "
        f"(oldest captured {resume_at - stale[0].timestamp:.2f}s before resume); "
        "allowed: at most 2 frames or 256 KiB"
    )
    fresh = frames[first_fresh:]
    assert len(fresh) >= min_fresh, f"only {len(fresh)} fresh frames after resume"
