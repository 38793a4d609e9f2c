"""What the appliance says about itself: ``/api/status`` (§6 of ``docs/interface.md``), ``/healthz``,
``/readyz``, ``/metrics``."""

from __future__ import annotations

import resource
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import __version__
from ..capture import State
from ..redact import redact_source
from .camera import Camera
from .endpoints import state_of
from .state import EdgeState


async def status(request: Request) -> Response:
    state = state_of(request)
    server = state.config.server
    cameras = [camera_status(state, cam) for cam in state.cameras.values()]
    body = {
        "version": __version__,
        "uptime_s": round(time.monotonic() - state.started, 1),
        "clients_total": len(state.registry),
        "max_clients": state.registry.max_clients,
        "max_streams_per_address": state.registry.max_per_address,
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "access": {
            "auth": server.auth is not None,
            "tokens": server.tokens_file is not None,
            "tls": server.tls is not None,
        },
        "cameras": cameras,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def camera_status(state: EdgeState, cam: Camera) -> dict[str, Any]:
    capture = cam.capture
    spec = cam.config.spec
    return {
        "name": cam.name,
        "source": capture.source_description,
        "source_kind": capture.source_kind,
        "configured_source": spec.target if isinstance(spec.target, int) else redact_source(spec.text),
        "state": capture.state.value,
        "problem": capture.problem,
        "passthrough": capture.passthrough,
        "processing": capture.processing,
        "idle": capture.idle,
        "width": capture.width,
        "height": capture.height,
        "fps": round(capture.measured_fps(), 2),
        "configured_fps": cam.config.fps,
        "frames_captured": capture.frames_captured,
        "frames_invalid": sum(capture.frames_invalid.values()),
        "frames_same_dropped": capture.frames_same_dropped,
        "clients": [conn.as_status() for conn in state.registry.for_camera(cam.name)],
        "codec": "h264" if capture.codec == "h264" else "mjpeg",
        **h264_status(cam),
        "publish": cam.publisher.status(),
        **encoder_status(cam),
    }


def encoder_status(cam: Camera) -> dict[str, Any]:
    """A JPEG camera that publishes: the H.264 encoder in use and what it costs (§10)."""
    if not cam.config.publish or cam.capture.codec == "h264":
        return {}
    return {"h264_encoder": cam.capture.h264_out.status()}


def h264_status(cam: Camera) -> dict[str, Any]:
    """An H.264 camera's stream as measured (§9): what a viewer's decoder is configured with, and
    what the stream costs; plus, while edge decodes for JPEG viewers, what that costs."""
    capture = cam.capture
    params = capture.units.params
    if capture.codec != "h264" or params is None:
        return {}
    interval, kbps = capture.units.measured()
    body: dict[str, Any] = {
        "codec": params.codec,
        "width": params.width,
        "height": params.height,
        "keyframe_interval_s": None if interval is None else round(interval, 3),
        "bitrate_kbps": round(kbps, 1),
        "jpeg_decoding": capture.transcoder.running,
    }
    if capture.encoder is not None:
        body["encoder"] = "libx264"
    return {"h264": body}


async def healthz(request: Request) -> Response:
    dead = [cam.name for cam in state_of(request).cameras.values() if not cam.capture.alive]
    if dead:
        return JSONResponse({"status": "unhealthy", "reason": f"capture thread not running: {', '.join(dead)}"}, 503)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    now = time.monotonic()
    problems = []
    for cam in state_of(request).cameras.values():
        window = max(2.0, 3.0 / cam.config.fps)
        capture = cam.capture
        if capture.idle and capture.state is State.STREAMING:
            continue  # idle on purpose: the source is fine, nobody is watching
        if capture.state is not State.STREAMING or now - capture.last_real_frame > window:
            problems.append(f"{cam.name}: no real frame in the last {window:g} s (state {capture.state.value})")
    if problems:
        return JSONResponse({"status": "not ready", "reason": "; ".join(problems)}, 503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(state_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
