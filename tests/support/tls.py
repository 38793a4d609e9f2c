"""Self-signed certificates for the TLS tests (server.tls, and https:// sources).

Made with the openssl command line at test time: nothing secret is stored in the repository, and
every run gets fresh keys. A test that makes one is marked `requires("openssl")`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.programs import program


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (`NAME.pem`, `NAME-key.pem`)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(
        [
            program("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key
