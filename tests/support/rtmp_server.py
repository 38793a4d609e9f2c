"""A real RTMP server with HLS on loopback, for the publishing tests: Debian's nginx with
libnginx-mod-rtmp, run with a config of its own in a temporary directory (never the system's).

    with NginxRtmp(tmp_path / "nginx") as nginx:
        url = nginx.rtmp_url("cam0")              # rtmp://127.0.0.1:PORT/live/cam0
        ...                                       # edge publishes there
        nginx.wait_playlist("cam0")               # HLS written to nginx.hls_dir
        nginx.playlist_url("cam0")                # http://127.0.0.1:PORT/hls/cam0.m3u8
        nginx.kill(); nginx.start()               # a crash, and back on the same ports

Application ``live`` writes HLS (1 s fragments, a 6 s playlist); ``stall`` takes a stream without
writing anything. `requires_nginx_rtmp` skips a test, naming the Debian packages, when nginx or
the module is missing; under ``CI=true`` a skip fails the run, so `.ci/run` installs
`DEBIAN_PACKAGES`.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.process import free_port
from tests.support.programs import find_program
from tests.support.waiting import wait_for

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
DEBIAN_PACKAGES = ("nginx-light", "libnginx-mod-rtmp")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0

CONFIG = """\
load_module {module};
{user}
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 512; }}
rtmp {{
    server {{
        listen {host}:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {dir}/hls;
            hls_fragment 1s;
            hls_playlist_length 6s;
        }}
        application stall {{
            live on;
            record off;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen {host}:{http_port};
        location /hls/ {{
            alias {dir}/hls/;
            types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""


def _user() -> str:
    """As root, nginx's workers would run as nobody, who cannot write into a test's private
    directory: they run as the test's own user instead (as another user, nginx ignores it)."""
    if os.geteuid() != 0:
        return ""
    entry = pwd.getpwuid(os.geteuid())
    return f"user {entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name};"


def missing_reason() -> str | None:
    if find_program("nginx") is None or not MODULE.is_file():
        return f"needs nginx with the RTMP module (Debian: apt-get install {' '.join(DEBIAN_PACKAGES)})"
    return None


requires_nginx_rtmp = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


class NginxRtmp:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.hls_dir = directory / "hls"
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NginxRtmp:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def rtmp_url(self, name: str, app: str = "live") -> str:
        return f"rtmp://{HOST}:{self.rtmp_port}/{app}/{name}"

    def playlist_url(self, name: str) -> str:
        return f"http://{HOST}:{self.http_port}/hls/{name}.m3u8"

    def playlist_path(self, name: str) -> Path:
        return self.hls_dir / f"{name}.m3u8"

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> NginxRtmp:
        assert self.proc is None or self.proc.poll() is not None, "nginx already running"
        nginx = find_program("nginx")
        assert nginx is not None and missing_reason() is None, (
            f"{missing_reason()}; the test needs @requires_nginx_rtmp"
        )
        for sub in (self.dir, self.hls_dir, self.dir / "tmp"):
            sub.mkdir(parents=True, exist_ok=True)
        config = self.dir / "nginx.conf"
        config.write_text(
            CONFIG.format(
                module=MODULE,
                user=_user(),
                dir=self.dir,
                host=HOST,
                rtmp_port=self.rtmp_port,
                http_port=self.http_port,
            )
        )
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(config), "-e", str(self.dir / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not (self._listening(self.rtmp_port) and self._listening(self.http_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stderr = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self._reap()
                raise AssertionError(f"nginx did not start: {stderr}\n{self.error_log()[-3000:]}")
            time.sleep(0.05)
        return self

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), SIGKILL after 5 s."""
        self._reap(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole group at once: the server crashes, its connections are reset."""
        self._reap(signal.SIGKILL)

    def _reap(self, sig: int = signal.SIGKILL) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        if proc.stderr is not None:
            proc.stderr.close()
        # Workers leave with the master; wait until the ports are free for a restart on them.
        wait_for(lambda: not self._listening(self.rtmp_port), 10, 0.05, "nginx's RTMP port released")

    def wait_playlist(self, name: str, timeout: float = 20.0) -> Path:
        """The playlist, once it names a segment."""
        path = self.playlist_path(name)

        def ready() -> bool:
            return path.exists() and ".ts" in path.read_text(errors="replace")

        try:
            wait_for(ready, timeout, 0.1, f"HLS playlist {path.name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nnginx error log:\n{self.error_log()[-3000:]}") from None
        return path
