"""The README's recipes work as written (README "Recipes").

Every YAML block of the README that holds an edge config (`cameras:`) is validated with
`edge.config.parse_config`; files and variables it names are made first (under a temporary
home, and with absolute secret paths such as `/run/secrets/...` moved below the test's
directory). A recipe is a `### ` section under `## Recipes`: shell blocks whose non-`curl` lines
prepare it (they make the password, token and secret files), one config, and `curl` lines that
check it, each ending in `# → OUTPUT`. The recipes that need no camera hardware are run as
written: their preparation lines run in a shell with `HOME` pointing at the test's directory,
their config is served by a real `python -m edge`, and every `curl` line runs with the server's
address in place of the README's `127.0.0.1:8080` and must exit 0 and print exactly OUTPUT.
Recipes for a USB or CSI camera (`/dev/video...`, `rpicam-vid`) are validated, not run; their
check lines must still parse as shell. The camera-password recipe reads an MJPEG camera at
`192.168.1.40:8080`: a second edge with HTTP Basic (the recipe's user and password file) stands in
for it at a local address.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from edge.config import Config, parse_config
from tests.support.process import REPO_ROOT, EdgeServer, StartServer
from tests.support.programs import missing_reason

README = REPO_ROOT / "README.md"
CHECK = "# → "  # a check line ends with this, then what it prints
README_ADDRESS = "127.0.0.1:8080"  # where the recipes' checks expect edge
CAMERA_ADDRESS = "192.168.1.40:8080"  # the IP camera of the camera-password recipe
NOT_EDGE = "(not edge's config)"  # the first line of another program's YAML (Frigate's)
HARDWARE = ("/dev/", "rpicam-vid", "libcamera-vid")  # a source naming one of these needs a real camera
# The recipes that must run here; one that starts needing hardware must be taken out on purpose.
RUNS = {
    "A password and a token (edge on the host)",
    "A second camera",
    "Rotation",
    "A camera password out of the config file",
}
CHECK_DEADLINE = 15.0  # seconds a check may take to print what the README says (a camera still starting)
PLACEHOLDER_SECRET = "readme-placeholder-secret-0123456789"
SECRET_PATH_PREFIXES = ("/run/", "/etc/", "/config/")  # absolute secret paths, moved below tmp_path


@dataclass
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based


@dataclass
class Recipe:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def configs(self) -> list[Block]:
        return [b for b in self.blocks if b.lang == "yaml" and is_edge_config(b)]

    def shell_lines(self) -> list[str]:
        lines = []
        for block in self.blocks:
            if block.lang == "sh":
                lines += [
                    ln.strip() for ln in block.text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
                ]
        return lines

    @property
    def setup(self) -> list[str]:
        return [ln for ln in self.shell_lines() if not ln.startswith("curl ")]

    @property
    def checks(self) -> list[tuple[str, str]]:
        """(command, expected output) of every `curl` line."""
        found = []
        for line in self.shell_lines():
            if line.startswith("curl "):
                assert CHECK in line, f"recipe {self.title!r}: a check must end in '{CHECK}OUTPUT': {line}"
                command, expected = line.rsplit(CHECK, 1)
                found.append((command.strip(), expected.strip()))
        return found

    @property
    def needs_hardware(self) -> bool:
        """A camera reads a device, or a `pipe:` producer that needs one (or is not installed)."""
        for block in self.configs:
            for cam in yaml.safe_load(block.text)["cameras"]:
                source = str(cam.get("source", "auto"))
                if source.isdigit() or any(marker in source for marker in HARDWARE):
                    return True
                if source.startswith("pipe:") and shutil.which(source[5:].split()[0]) is None:
                    return True
        return False


def parse_markdown(text: str) -> tuple[list[tuple[int, str]], list[Block]]:
    """The headings outside code blocks, as (line, heading), and the fenced code blocks (indented
    ones inside list items too), with 1-based line numbers."""
    headings: list[tuple[int, str]] = []
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            if lines[i].startswith("#"):
                headings.append((i + 1, lines[i]))
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append(Block(lang, "\n".join(body) + "\n", start + 1))
        i += 1
    return headings, blocks


def is_edge_config(block: Block) -> bool:
    first = block.text.lstrip().splitlines()[0] if block.text.strip() else ""
    return bool(re.search(r"(?m)^cameras:", block.text)) and not first.endswith(NOT_EDGE)


def readme_recipes() -> list[Recipe]:
    """The `### ` sections of `## Recipes`, each with its code blocks."""
    headings, blocks = parse_markdown(README.read_text(encoding="utf-8"))
    starts = [n for n, h in headings if h == "## Recipes"]
    assert starts, "README has no '## Recipes' section"
    end = next((n for n, h in headings if n > starts[0] and h.startswith("## ")), 1 << 30)
    sections = [(n, h[4:].strip()) for n, h in headings if starts[0] < n < end and h.startswith("### ")]
    recipes = []
    for k, (line, title) in enumerate(sections):
        until = sections[k + 1][0] if k + 1 < len(sections) else end
        recipes.append(Recipe(title, [b for b in blocks if line < b.line < until]))
    return recipes


RECIPES = readme_recipes()


def config_blocks() -> list[Block]:
    _, blocks = parse_markdown(README.read_text(encoding="utf-8"))
    return [b for b in blocks if b.lang == "yaml" and is_edge_config(b)]


# ---- validation -------------------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _moved(value: Any, root: Path) -> Any:
    """``value`` with absolute secret paths (/run/secrets/x, /etc/edge/x, /config/x) below ``root``."""
    if isinstance(value, str):
        pattern = "|".join(re.escape(p) for p in SECRET_PATH_PREFIXES)
        return re.sub(rf"(?<![\w.~])(?={pattern})", str(root), value)
    if isinstance(value, dict):
        return {k: _moved(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, root) for v in value]
    return value


def validate_with_placeholders(block: Block, root: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Validate ``block`` after making every file and variable it names (placeholder secrets)."""
    data = yaml.safe_load(block.text)
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    data = _moved(data, root)
    server = data.get("server") or {}
    assert "tls" not in server, f"README line {block.line}: a camera config with tls needs a certificate here"
    files = [server.get("tokens_file"), (server.get("auth") or {}).get("password_file")]
    for text in _strings(data):
        files += re.findall(r"\$\{file:([^}]+)\}", text)
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
            monkeypatch.setenv(name, PLACEHOLDER_SECRET)
    env_name = (server.get("auth") or {}).get("password_env")
    if env_name:
        monkeypatch.setenv(env_name, PLACEHOLDER_SECRET)
    for file in filter(None, files):
        path = Path(os.path.expanduser(file.strip()))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(PLACEHOLDER_SECRET + "\n")
    return parse_config(data, f"README.md line {block.line}")


@pytest.mark.parametrize("block", config_blocks(), ids=lambda b: f"line{b.line}")
def test_every_config_block_is_valid(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every edge config the README shows is one edge accepts (files it names made first)."""
    validate_with_placeholders(block, tmp_path, monkeypatch)


def test_the_recipes_are_there() -> None:
    """Each recipe has one config and checks; the ones without hardware are the ones that run."""
    assert RECIPES, "README has no '## Recipes' section with '### ' recipes"
    for recipe in RECIPES:
        assert len(recipe.configs) == 1, f"recipe {recipe.title!r}: expected one edge config, got {len(recipe.configs)}"
        assert recipe.checks, f"recipe {recipe.title!r} has no `curl ... {CHECK}OUTPUT` check"
    runnable = {r.title for r in RECIPES if not r.needs_hardware}
    assert runnable == RUNS, f"recipes that run here changed: {sorted(runnable)} (expected {sorted(RUNS)})"


# ---- running the recipes ----------------------------------------------------------------------


def _shell(command: str, cwd: Path, env: dict[str, str], timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _run_check(command: str, expected: str, srv: EdgeServer, cwd: Path, env: dict[str, str]) -> None:
    assert README_ADDRESS in command, f"a check must ask edge at {README_ADDRESS}: {command}"
    live = command.replace(README_ADDRESS, f"{srv.host}:{srv.port}")
    deadline = time.monotonic() + CHECK_DEADLINE
    while True:
        proc = _shell(live, cwd, env)
        if (proc.returncode, proc.stdout.strip()) == (0, expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert proc.returncode == 0 and proc.stdout.strip() == expected, (
        f"README check failed\n  {command}\n  expected {expected!r}, printed {proc.stdout.strip()!r} "
        f"(exit {proc.returncode})\n  stderr: {proc.stderr.strip()}\nserver log:\n{srv.log_text()[-3000:]}"
    )


def _camera_stand_in(recipe: Recipe, start_server: StartServer, home: Path) -> str:
    """An edge with HTTP Basic standing in for the recipe's IP camera; its host:port."""
    source = yaml.safe_load(recipe.configs[0].text)["cameras"][0]["source"]
    m = re.match(r"^http://([^:@/]+):\$\{file:([^}]+)\}@([^/]+)/", source)
    assert m, f"recipe {recipe.title!r}: expected http://USER:${{file:PATH}}@HOST:PORT/..., got {source!r}"
    user, password_file, address = m.group(1), m.group(2), m.group(3)
    assert address == CAMERA_ADDRESS, f"the recipe's camera moved to {address}; update CAMERA_ADDRESS"
    camera = start_server(
        cameras=[{"name": "cam0", "source": "virtual", "width": 320, "height": 240, "fps": 15}],
        server={"auth": {"username": user, "password_file": password_file}},
        env_extra={"HOME": str(home)},
    )
    return f"{camera.host}:{camera.port}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.title)
def test_recipe(recipe: Recipe, start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's files, config and checks, as written (validated only if it needs a camera)."""
    for command, _ in recipe.checks:
        syntax = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, timeout=10)
        assert syntax.returncode == 0, f"recipe {recipe.title!r}: not a shell command: {command}\n{syntax.stderr}"
    if recipe.needs_hardware:
        validate_with_placeholders(recipe.configs[0], tmp_path, monkeypatch)
        print(f"{recipe.title}: validated, not run (needs a camera)")
        return
    reason = missing_reason("curl")  # the README's checks are curl commands
    if reason is not None:
        pytest.skip(reason)

    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"  # the checks' current directory (where `curl -o FILE` writes)
    work.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for line in recipe.setup:
        proc = _shell(line, work, env)
        assert proc.returncode == 0, f"recipe {recipe.title!r}: {line!r} failed: {proc.stderr}"

    block = recipe.configs[0]
    monkeypatch.setenv("HOME", str(home))
    config = parse_config(yaml.safe_load(block.text), f"README.md line {block.line}")  # as written
    text = block.text
    if CAMERA_ADDRESS in text:
        text = text.replace(CAMERA_ADDRESS, _camera_stand_in(recipe, start_server, home))
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    srv = start_server(config_path=path, env_extra={"HOME": str(home)})
    for command, expected in recipe.checks:
        _run_check(command, expected, srv, work, env)

    # Snapshots the checks saved (`curl -o FILE.jpg`) are JPEGs of the served size.
    cam = config.cameras[0]
    size = (cam.height, cam.width) if cam.rotate in (90, 270) else (cam.width, cam.height)
    for command, _ in recipe.checks:
        for name in re.findall(r"-o\s+(\S+\.jpg)\b", command):
            image = cv2.imread(str(work / name))
            assert image is not None, f"{command}: {name} is not a JPEG"
            assert (image.shape[1], image.shape[0]) == size, f"{name} is {image.shape[1]}x{image.shape[0]}"
            if cam.rotate == 90 and (cam.width, cam.height) == (640, 480):
                assert (image.shape[1], image.shape[0]) == (480, 640), "rotate: 90 must serve 480 wide, 640 high"
