"""A real RTSP server on loopback for the tests, run with the system python: `/usr/bin/python3`.

It uses GStreamer's RTSP server through PyGObject (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0,
and the plugins named in tests/support/rtsp.py), which the project's venv does not have, so
tests/support/rtsp.py runs it as a child process rather than importing it.

    /usr/bin/python3 tests/support/rtsp_server.py --port 0 [--address 127.0.0.1] [--exit-on-stdin-eof]

Mounts:

- ``/test``   live H.264 (640x480, 30 fps, constrained baseline, a key frame every 30 frames, no
              B-frames, SPS/PPS with every key frame), one pipeline shared by every client;
- ``/h265``   the same in H.265 (Main), when x265enc is installed (otherwise left out, said on
              stderr);
- ``/record`` RECORD mode: a client publishes H.264 into it (``ffmpeg ... -f rtsp URL``) and
              the server parses and discards it, or with ``--record-tcp-port P`` plays it out as
              an H.264 byte stream to TCP readers on 127.0.0.1:P.

Once the server listens and its shared pipelines are prepared it prints exactly one line to
stdout, ``listening rtsp://ADDRESS:PORT`` (the bound port, also when ``--port 0`` let the system
pick), and nothing else there; diagnostics go to stderr. SIGTERM or SIGINT quits the main loop
and the process exits 0. With ``--exit-on-stdin-eof`` it also quits when its stdin reaches end of
file, so a test run that dies without stopping it does not leave a server behind holding a port.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=640,height=480,framerate=30/1"
H264 = (
    f"( {VIDEO} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0"
    " ! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
H265 = (
    f"( {VIDEO} ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=30 option-string=bframes=0"
    " ! rtph265pay name=pay0 pt=96 config-interval=1 )"
)
RECORD = "( rtph264depay name=depay0 ! h264parse ! fakesink sync=false async=false )"
# The published stream played out to TCP readers: the publisher's own NAL units, SPS/PPS put
# before each key frame for a reader that joins mid-stream.
RECORD_OUT = (
    "( rtph264depay name=depay0 ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
    " ! tcpserversink host=127.0.0.1 port={port} sync=false async=false )"
)
H264_ELEMENTS = ("videotestsrc", "x264enc", "rtph264pay", "rtph264depay", "h264parse", "fakesink", "tcpserversink")
H265_ELEMENTS = ("x265enc", "rtph265pay")
MAX_THREADS = 8


def log(message: str) -> None:
    print(f"rtsp_server: {message}", file=sys.stderr, flush=True)


def missing_elements(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if Gst.ElementFactory.find(name) is None]


def shared_factory(launch: str) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    return factory


def record_factory(launch: str) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    return factory


def build_server(address: str, port: int, record_tcp_port: int = 0) -> tuple[GstRtspServer.RTSPServer, list[str]]:
    """The server with its mounts, and the paths of its shared (played) mounts."""
    missing = missing_elements(H264_ELEMENTS)
    if missing:
        raise SystemExit(f"rtsp_server: GStreamer elements missing: {', '.join(missing)}")
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(str(port))
    pool = GstRtspServer.RTSPThreadPool()
    pool.set_max_threads(MAX_THREADS)
    server.set_thread_pool(pool)

    mounts = server.get_mount_points()
    shared = ["/test"]
    mounts.add_factory("/test", shared_factory(H264))
    missing = missing_elements(H265_ELEMENTS)
    if missing:
        log(f"no /h265 mount: GStreamer elements missing: {', '.join(missing)}")
    else:
        shared.append("/h265")
        mounts.add_factory("/h265", shared_factory(H265))
    record = RECORD_OUT.format(port=record_tcp_port) if record_tcp_port else RECORD
    mounts.add_factory("/record", record_factory(record))
    return server, shared


def keep_prepared(server: GstRtspServer.RTSPServer, url: str) -> GstRtspServer.RTSPMedia | None:
    """Prepare the shared media of `url` once more than its clients do, so it is never unprepared.

    A shared media is unprepared when its last client leaves, and a non-reusable one cannot be
    prepared again; in GStreamer 1.22 it stays in the factory's cache meanwhile, so a client that
    reconnects at once (as a camera source does) is given it, and a 503 for its DESCRIBE. Held
    prepared, the media is made once and runs from its first client on, like a camera's encoder.
    Clients share it by port and path (not host: localhost works too; a query makes another one).
    """
    parsed = GstRtsp.RTSPUrl.parse(url)[1]
    factory, _matched = server.get_mount_points().match(parsed.abspath)
    media = factory.construct(parsed) if factory is not None else None
    if media is None:
        log(f"cannot construct the media of {url}")
        return None
    # Later GStreamer versions return a constructed media locked (its global lock, which every
    # DESCRIBE and SETUP takes); 1.22 does not. Unlock it if another thread cannot take it.
    free = threading.Event()
    threading.Thread(target=lambda: (media.lock(), media.unlock(), free.set()), daemon=True).start()
    if not free.wait(0.5):
        media.unlock()
    thread = server.get_thread_pool().get_thread(GstRtspServer.RTSPThreadType.MEDIA, GstRtspServer.RTSPContext())
    if not media.prepare(thread):
        log(f"cannot prepare the media of {url}")
        return None
    return media


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="port to listen on; 0 lets the system pick one")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--record-tcp-port", type=int, default=0, help="play /record out to TCP readers on this port")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="quit when stdin reaches end of file")
    args = parser.parse_args(argv)

    Gst.init(None)
    server, shared = build_server(args.address, args.port, args.record_tcp_port)
    loop = GLib.MainLoop()

    def quit_loop(*_: object) -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)
    if args.exit_on_stdin_eof:

        def on_stdin(fd: int, _condition: GLib.IOCondition) -> bool:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            return GLib.SOURCE_CONTINUE if data else quit_loop()

        GLib.unix_fd_add_full(
            GLib.PRIORITY_DEFAULT, sys.stdin.fileno(), GLib.IOCondition.IN | GLib.IOCondition.HUP, on_stdin
        )

    # attach() binds the socket (SO_REUSEADDR: a restart may take the port of a killed server at
    # once); it returns 0, after a GStreamer error on stderr, when it cannot.
    port = server.get_bound_port() if server.attach(None) else -1
    if port <= 0:
        log(f"cannot listen on {args.address}:{args.port}")
        return 1
    # The shared media's cache key holds the port, known only now. Held until the process ends.
    kept = [keep_prepared(server, f"rtsp://{args.address}:{port}{path}") for path in shared]
    if not all(kept):
        return 1
    print(f"listening rtsp://{args.address}:{port}", flush=True)
    loop.run()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
