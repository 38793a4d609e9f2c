"""`pipe:COMMAND` sources (§8 of docs/interface.md, edge/sources/pipe.py): a producer's stdout is an MJPEG
byte stream whose JPEGs are served as they are; a producer that writes garbage, stalls, exits or
writes broken frames is handled (reconnecting, killed, restarted, broken frames counted and never
sent), and no producer process outlives its server.

The producers are real processes: ffmpeg, and `tests/producers/mjpeg_producer.py`, which logs
what it does (start, its pid, every frame's hash, when it stalls) to an events file, so the
tests know exactly which bytes were good and when a stall began.
"""

from __future__ import annotations

import re
import shlex
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.config import virtual_cam
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg, sha
from tests.support.mjpeg import MjpegStream
from tests.support.process import EdgeServer, StartServer
from tests.support.programs import requires
from tests.support.sources import extract_jpegs, mjpeg_clip
from tests.support.status import camera_status, get_status, wait_all_cameras, wait_camera_state, wait_status
from tests.support.waiting import wait_for

PRODUCER = Path(__file__).resolve().parent / "producers" / "mjpeg_producer.py"
FPS = 15
STALL_TIMEOUT = max(2.0, 3.0 / FPS)  # Source.stall_timeout for this rate
LOG_LINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", re.MULTILINE)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def pipe_cam(name: str, command: str, fps: float = FPS, **extra: Any) -> dict[str, Any]:
    cam = virtual_cam(name, 320, 240, fps, source="pipe:" + command)
    cam["idle_after"] = 0  # these tests watch frames being checked and counted: never idle
    cam.update(extra)
    return cam


def producer_command(events: Path, mode: str, *args: str) -> str:
    return shlex.join([sys.executable, str(PRODUCER), str(events), mode, *args])


def read_events(path: Path) -> list[tuple[str, int, float, list[str]]]:
    """(event, pid, unix time, details) per line of a producer's events file."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((fields[0], int(fields[1]), float(fields[2]), fields[3:]))
    return out


def starts(path: Path) -> list[tuple[int, float]]:
    return [(pid, t) for event, pid, t, _ in read_events(path) if event == "start"]


def process_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat (R, S, Z...), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def running(pid: int) -> bool:
    """Still running (a zombie is not running: it has exited, only its exit status is left)."""
    return process_state(pid) not in (None, "Z", "X")


def exists(pid: int) -> bool:
    """Exists at all, zombies included: a child its parent has not reaped still exists."""
    return process_state(pid) is not None


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append((int(entry.name), comm))
    return out


def log_times(srv: EdgeServer, needle: str) -> list[float]:
    """Unix times of the server's log lines containing ``needle`` (from their asctime prefix)."""
    times = []
    for line in srv.log_text().splitlines():
        if needle in line:
            m = LOG_LINE_TIME.match(line)
            if m:
                local = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                times.append(local.timestamp() + int(m.group(2)) / 1000)
    return times


def invalid_metrics(srv: EdgeServer, camera: str) -> dict[str, float]:
    """``edge_frames_invalid_total{camera=...,reason=...}`` per reason, from /metrics."""
    r = fetch(srv.url + "/metrics")
    assert r.status == 200 and r.body is not None
    found: dict[str, float] = {}
    pattern = re.compile(r"^edge_frames_invalid_total\{([^}]*)\} (\S+)$", re.MULTILINE)
    for m in pattern.finditer(r.body.decode()):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("camera") == camera:
            found[labels["reason"]] = float(m.group(2))
    return found


def cam_state(srv: EdgeServer, name: str = "p") -> dict[str, Any]:
    return camera_status(get_status(srv), name)


# --------------------------------------------------------------------------------------------
# a real producer: ffmpeg
# --------------------------------------------------------------------------------------------


@requires("ffmpeg")
def test_ffmpeg_pipe_is_passed_through_byte_for_byte(start_server: StartServer, tmp_path: Path) -> None:
    """ffmpeg copying an MJPEG file to stdout: streaming, passthrough, the file's size, and the bytes
    on /snapshot and /stream are exactly the file's frames; after SIGTERM no ffmpeg is left."""
    clip = mjpeg_clip(tmp_path / "out.avi")
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    extract_jpegs(clip, frames_dir / "frame%03d.jpg")
    file_frames = {sha(p.read_bytes()) for p in frames_dir.glob("*.jpg")}
    assert len(file_frames) >= 25, f"expected ~30 distinct frames in the clip, got {len(file_frames)}"

    command = f"ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i {shlex.quote(str(clip))} -c copy -f mjpeg -"
    srv = start_server(cameras=[pipe_cam("p", command)])
    st = wait_status(
        srv,
        lambda s: camera_status(s, "p")["state"] == "streaming" and camera_status(s, "p")["fps"] > 5,
        15,
        "pipe camera streaming",
    )
    cam = camera_status(st, "p")
    assert cam["passthrough"] is True, cam
    assert (cam["width"], cam["height"]) == (320, 240), cam
    assert cam["source_kind"] == "pipe", cam
    assert cam["source"].startswith("pipe:ffmpeg"), cam

    snap = fetch(srv.url + "/snapshot")
    assert snap.status == 200 and snap.body is not None
    assert snap.headers.get("x-placeholder") is None, "a streaming pipe camera served a placeholder"
    assert sha(snap.body) in file_frames, "the snapshot is not one of the file's frames, byte for byte"

    with MjpegStream(srv.host, srv.port, "/stream", timeout=10) as s:
        parts = s.read_parts(20)
    hashes = [sha(p.jpeg) for p in parts]
    foreign = [i for i, h in enumerate(hashes) if h not in file_frames]
    assert not foreign, f"stream parts {foreign} are not frames of the file (re-encoded or altered)"
    assert len(set(hashes)) >= 10, "the stream does not move through the file's frames"
    fps = cam_state(srv)["fps"]
    assert 10 <= fps <= 20, f"ffmpeg -re gives 15 fps; measured {fps}"

    producers = [pid for pid, comm in children_of(srv.proc.pid) if comm == "ffmpeg"]
    assert len(producers) == 1, f"expected one ffmpeg child of the server, found {children_of(srv.proc.pid)}"
    assert srv.stop() == 0
    wait_for(lambda: not running(producers[0]), 3, message=f"ffmpeg (pid {producers[0]}) gone after shutdown")


# --------------------------------------------------------------------------------------------
# fake producers misbehaving
# --------------------------------------------------------------------------------------------


def test_garbage_producer_reconnects_and_viewers_get_only_jpegs(start_server: StartServer, tmp_path: Path) -> None:
    """A producer writing bytes that never form a JPEG: reconnecting within stall_timeout, the
    producer is replaced by a new process, and viewers get only (placeholder) JPEGs."""
    events = tmp_path / "events"
    srv = start_server(cameras=[pipe_cam("p", producer_command(events, "garbage"))])
    st = wait_camera_state(srv, "p", "reconnecting", 10)
    cam = camera_status(st, "p")
    assert "stalled" in cam["problem"] and f"no frame for {STALL_TIMEOUT:g} s" in cam["problem"], cam
    assert cam["frames_captured"] == 0, cam

    # From the server's "started" line: the producer itself needs a moment to start up (imports).
    started = log_times(srv, "p: started pipe:")
    down = log_times(srv, "p: source down")
    assert started and down, srv.log_text()[-3000:]
    took = down[0] - started[0]
    assert STALL_TIMEOUT - 0.3 <= took <= STALL_TIMEOUT + 1.5, f"reconnecting {took:.2f} s after the producer started"

    with MjpegStream(srv.host, srv.port, "/stream", timeout=10) as s:
        for part in s.read_parts(3):  # read_part checks FFD8...FFD9
            decode_jpeg(part.jpeg)
    snap = fetch(srv.url + "/snapshot")
    assert snap.status == 200 and snap.body is not None and snap.headers.get("x-placeholder") == "1"
    decode_jpeg(snap.body)

    wait_for(lambda: len(starts(events)) >= 2, 10, message="a second producer process after the stall")
    old = starts(events)[0][0]
    wait_for(lambda: not exists(old), 3, message=f"the first producer (pid {old}) killed and reaped")
    assert get_status(srv)["cameras"][0]["frames_captured"] == 0


def test_stalled_producer_is_killed_and_replaced(start_server: StartServer, tmp_path: Path) -> None:
    """Good frames, then silence with the process alive (and a child of its own): reconnecting
    max(2 s, 3 frame periods) after the last frame, the process group killed, a new producer
    started, and streaming again. (A producer ignoring SIGTERM: see the shutdown test.)"""
    events = tmp_path / "events"
    command = producer_command(events, "stall", "--good", "20", "--fps", str(FPS), "--grandchild")
    srv = start_server(cameras=[pipe_cam("p", command)])
    wait_camera_state(srv, "p", "streaming", 10)

    def stall_event() -> tuple[int, float] | None:
        return next(((pid, t) for ev, pid, t, _ in read_events(events) if ev == "stall"), None)

    pid1, stalled_at = wait_for(stall_event, 10, message="the producer stalling")
    grandchild = next(int(d[0]) for ev, pid, _, d in read_events(events) if ev == "child" and pid == pid1)
    wait_camera_state(srv, "p", "reconnecting", STALL_TIMEOUT + 3)
    down = [t for t in log_times(srv, "p: source down") if t >= stalled_at - 0.1]
    assert down, srv.log_text()[-3000:]
    took = down[0] - stalled_at
    assert STALL_TIMEOUT - 0.3 <= took <= STALL_TIMEOUT + 1.0, f"stall noticed {took:.2f} s after the last frame"
    problem = cam_state(srv)["problem"]
    assert "stalled" in problem, problem

    wait_for(lambda: len(starts(events)) >= 2, 8, message="a new producer after the stall")
    assert not exists(pid1), f"the stalled producer (pid {pid1}) is still there: {process_state(pid1)}"
    wait_for(lambda: not running(grandchild), 3, message=f"the producer's own child (pid {grandchild}) killed too")
    st = wait_camera_state(srv, "p", "streaming", 8)
    assert camera_status(st, "p")["passthrough"] is True


def test_producer_that_exits_is_restarted_with_backoff(start_server: StartServer, tmp_path: Path) -> None:
    """A producer that prints an error and exits: WARNING with its message, `problem` with its exit
    status and message, placeholders meanwhile, restarted after 1 s, then 2 s, ..."""
    events = tmp_path / "events"
    message = "producer: camera cable unplugged (simulated)"
    srv = start_server(cameras=[pipe_cam("p", producer_command(events, "exit", "--message", message))])
    wait_for(lambda: len(starts(events)) >= 3, 15, message="three producer starts")
    cam = cam_state(srv)
    assert cam["state"] == "reconnecting", cam
    assert "exited with status 3" in cam["problem"] and message in cam["problem"], cam

    lines = srv.log_text().splitlines()
    warnings = [i for i, ln in enumerate(lines) if " WARNING edge.pipe " in ln and "exited with status 3" in ln]
    assert warnings, srv.log_text()[-3000:]
    # The record goes on with the producer's last stderr lines, indented.
    assert message in lines[warnings[0] + 1], lines[warnings[0] : warnings[0] + 3]
    n_starts = len(starts(events))
    assert n_starts - 1 <= len(warnings) <= n_starts, f"{len(warnings)} warnings for {n_starts} deaths"

    t = [s[1] for s in starts(events)]
    gaps = [b - a for a, b in zip(t, t[1:], strict=False)]
    assert gaps[0] >= 1.0, f"restarted {gaps[0]:.2f} s after the first start (backoff starts at 1 s)"
    assert gaps[1] >= 2.0 and gaps[1] > gaps[0] + 0.5, f"backoff does not grow: gaps {gaps}"

    snap = fetch(srv.url + "/snapshot")
    assert snap.status == 200 and snap.headers.get("x-placeholder") == "1"
    for pid, _ in starts(events)[:-1]:
        assert not exists(pid), f"producer {pid} that exited was not reaped ({process_state(pid)})"


def test_broken_frames_are_counted_and_never_sent(start_server: StartServer, tmp_path: Path) -> None:
    """Broken frames between good ones: counted per reason in /metrics, never delivered; every
    delivered frame is one of the good frames, byte for byte, and decodes."""
    events = tmp_path / "events"
    srv = start_server(cameras=[pipe_cam("p", producer_command(events, "corrupt", "--fps", "20"))])
    wait_camera_state(srv, "p", "streaming", 10)

    with MjpegStream(srv.host, srv.port, "/stream", timeout=10) as s:
        parts = s.read_parts(40)
    evs = read_events(events)
    good = {d[0] for ev, _, _, d in evs if ev == "good"}
    bad = {d[0]: d[1] for ev, _, _, d in evs if ev == "bad"}
    assert len(bad) >= 10, f"the producer wrote only {len(bad)} broken frames"
    for i, part in enumerate(parts):
        h = sha(part.jpeg)
        assert h not in bad, f"part {i} is a broken frame ({bad[h]})"
        assert h in good, f"part {i} is not one of the producer's good frames"
        img = decode_jpeg(part.jpeg)
        assert (img.shape[1], img.shape[0]) == (320, 240)

    # Every broken frame that reached the frame check by now is counted under its reason.
    expected: dict[str, int] = {}
    for ev, _, _, d in read_events(events):
        if ev == "bad" and d[2] != "-":
            expected[d[2]] = expected.get(d[2], 0) + 1
    assert set(expected) == {"size_mismatch", "no_sof", "too_small", "corrupt"}, expected

    def counted() -> dict[str, float] | None:
        found = invalid_metrics(srv, "p")
        return found if all(found.get(r, 0) >= n for r, n in expected.items()) else None

    wait_for(counted, 5, message=f"edge_frames_invalid_total per reason >= {expected}")
    assert cam_state(srv)["frames_invalid"] >= sum(expected.values())
    assert cam_state(srv)["state"] == "streaming"


def test_no_producer_left_after_shutdown(start_server: StartServer, tmp_path: Path) -> None:
    """SIGTERM to the server: it exits 0 within the 5 s of §1 of docs/interface.md, and no producer (nor a child a
    producer started, nor one that ignores SIGTERM) is left running."""
    ev1, ev2 = tmp_path / "events1", tmp_path / "events2"
    srv = start_server(
        cameras=[
            pipe_cam("p", producer_command(ev1, "good", "--grandchild")),
            pipe_cam("q", producer_command(ev2, "good", "--ignore-term")),
        ]
    )
    wait_all_cameras(srv, "streaming", 10)
    with MjpegStream(srv.host, srv.port, "/cameras/p/stream", timeout=10) as s:
        s.read_parts(2)  # a viewer open during shutdown
        pids = [pid for pid, _ in starts(ev1) + starts(ev2)]
        pids += [int(d[0]) for ev, _, _, d in read_events(ev1) if ev == "child"]
        assert len(pids) == 3, read_events(ev1) + read_events(ev2)
        assert all(running(pid) for pid in pids)
        t0 = time.monotonic()
        assert srv.stop() == 0
        took = time.monotonic() - t0
    assert took < 5, f"shutdown took {took:.1f} s"
    wait_for(lambda: not any(running(pid) for pid in pids), 3, message=f"producers {pids} gone after shutdown")
    log = srv.log_text()
    assert "capture thread still busy" not in log
    assert "did not exit 1 s after SIGTERM; killing it" in log, "the producer ignoring SIGTERM was not SIGKILLed"


# --------------------------------------------------------------------------------------------
# the source on its own, in this process (what the capture thread relies on)
# --------------------------------------------------------------------------------------------


def direct_source(command: str) -> tuple[Any, threading.Event]:
    from edge.config import CameraConfig
    from edge.sources.pipe import PipeSource

    stop = threading.Event()
    cam = CameraConfig(name="p", source="pipe:" + command, fps=FPS)
    return PipeSource(cam, stop, cam.spec), stop


def test_source_reads_frames_counts_discards_and_stops_quickly(tmp_path: Path) -> None:
    """open/read/close directly: frames come as JPEG bytes, frames the splitter dropped are
    reported by take_discarded(), read() returns None within a poll slice of stop, close() reaps."""
    from edge.sources import Captured

    events = tmp_path / "events"
    src, stop = direct_source(producer_command(events, "corrupt", "--fps", "60"))
    src.open()
    try:
        pid = src.pid
        assert pid is not None and running(pid)
        frames = []
        discarded = 0
        deadline = time.monotonic() + 10
        while len(frames) < 40:
            assert time.monotonic() < deadline, f"only {len(frames)} frames in 10 s"
            captured = src.read()
            assert isinstance(captured, Captured) and captured.jpeg is not None and captured.image is None
            frames.append(captured.jpeg)
            discarded += src.take_discarded()
        cut = sum(1 for ev, _, _, d in read_events(events) if ev == "bad" and d[2] == "-")
        assert cut >= 3 and cut - 1 <= discarded <= cut, f"{discarded} reported discards, {cut} cut frames written"
        assert src.take_discarded() == 0, "take_discarded() reports each discard once"

        threading.Timer(0.3, stop.set).start()
        t0 = time.monotonic()
        while (captured := src.read()) is not None:
            assert time.monotonic() - t0 < 2, "read() goes on after stop"
        assert time.monotonic() - t0 < 0.3 + 0.5, "read() noticed stop late"
    finally:
        src.close()
    assert not exists(pid), f"close() left the producer (pid {pid}): {process_state(pid)}"
    src.close()  # idempotent


def test_source_stall_and_quiet_stop(tmp_path: Path) -> None:
    """A producer that goes quiet: read() raises the stall after stall_timeout; and a read waiting
    on a quiet producer returns None soon after stop, without waiting for the stall."""
    from edge.sources import SourceError

    events = tmp_path / "events"
    src, stop = direct_source(producer_command(events, "stall", "--good", "1"))
    src.open()
    try:
        assert src.read() is not None
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"stalled: no frame for 2 s"):
            src.read()
        took = time.monotonic() - t0
        assert STALL_TIMEOUT - 0.2 <= took <= STALL_TIMEOUT + 0.5, f"stall raised after {took:.2f} s"
        src.close()
        src.open()  # a new process, as the capture thread's reconnect does
        assert src.read() is not None
        threading.Timer(0.5, stop.set).start()
        t0 = time.monotonic()
        assert src.read() is None
        assert time.monotonic() - t0 < 0.5 + 0.5
    finally:
        src.close()
    assert len(starts(events)) == 2
    assert not any(exists(pid) for pid, _ in starts(events))


def test_missing_program_says_what_to_do() -> None:
    from edge.sources import SourceError

    src, _ = direct_source("no-such-producer-program --flag")
    with pytest.raises(SourceError, match=r"'no-such-producer-program' not found: install it"):
        src.open()
    assert src.pid is None
    src.close()


def test_secrets_on_the_command_line_are_not_shown(tmp_path: Path) -> None:
    """The description and the producer's last words (which end up in `problem`) mask secrets."""
    from edge.sources import SourceError

    message = "cannot open rtsp://admin:Hunter2-secret@cam/live?token=tok-123456"
    command = producer_command(tmp_path / "events", "exit", "--message", message)
    src, _ = direct_source(command)  # the secrets are on its command line, in --message
    assert "Hunter2" not in src.description and "tok-123456" not in src.description, src.description
    src.open()
    try:
        with pytest.raises(SourceError) as info:
            while src.read() is not None:
                pass
    finally:
        src.close()
    text = str(info.value)
    assert "exited with status 3" in text and "rtsp://***@cam/live?token=***" in text, text
