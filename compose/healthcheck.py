#!/usr/bin/env python3
"""Container health check for an `oglog serve` process: exit 0 when its GET /health answers 200, else 1.

Installed in the image as `oglog-healthcheck` and used by its HEALTHCHECK and by the compose files (the slim
Python image has no curl). It asks the port the server listens on, read from HTTP_PORT as the server reads
it; OGLOG_HEALTH_URL replaces the whole URL. Stdlib only, so it runs before anything else is importable.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

#: Docker runs the check every few seconds; a role that cannot answer /health within this is unhealthy.
TIMEOUT = 4.0
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def health_url(environ: dict[str, str]) -> str:
    """The /health URL of the server configured by `environ` (HTTP_HOST, HTTP_PORT, OGLOG_HEALTH_URL)."""
    if environ.get("OGLOG_HEALTH_URL"):
        return environ["OGLOG_HEALTH_URL"]
    host = environ.get("HTTP_HOST", "127.0.0.1")
    # A server listening on every interface is reached on loopback; a specific address only on itself.
    host = "127.0.0.1" if host in _WILDCARDS else host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{environ.get('HTTP_PORT', '8080')}/health"


def main() -> int:
    url = health_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body = response.read(4096).decode(errors="replace")
            print(f"{url}: {response.status} {body}")
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: a dependency (NATS, ClickHouse) is down
        print(f"{url}: {exc.code} {exc.read(4096).decode(errors='replace')}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
