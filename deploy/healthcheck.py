"""Container health check: exit 0 when edge answers 200 on /healthz, else 1.

Python's standard library only, so the image needs no curl or wget. It asks 127.0.0.1 on
$EDGE_PORT (the image sets 8080), never through a proxy that the environment may name.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('EDGE_PORT') or '8080'}/healthz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
