"""Container probe: GET a path on the worker's web port; exit 0 on HTTP 200, else 1.

    python deploy/healthcheck.py /health/      # live: the Faust web server answers
    python deploy/healthcheck.py /ready/       # ready: partitions assigned, model loaded

Standard library only: the slim image has no curl. The port comes from
$HIERTCN_WEB_PORT (default 6066), as in stream/config.py; the probe always asks
loopback, whatever $HIERTCN_WEB_HOST binds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe(path: str = "/health/", port: int | None = None, timeout: float = 4.0) -> bool:
    port = port or int(os.environ.get("HIERTCN_WEB_PORT") or 6066)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False  # 503 (not ready) raises HTTPError, a URLError


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/health/"
    ok = probe(path)
    if not ok:
        print(f"probe {path} failed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
