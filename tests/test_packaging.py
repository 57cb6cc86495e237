"""Packaging: the SDK imports with nothing but its own dependencies installed."""

from __future__ import annotations

import subprocess
import sys

BLOCK_SERVER_DEPS = (
    "import sys\n"
    "blocked = ('aiohttp', 'nats', 'clickhouse_connect', 'chdb', 'pydantic',\n"
    "           'structlog', 'prometheus_client')\n"
    "for name in blocked:\n"
    "    sys.modules[name] = None\n"
    "import oglogstream\n"
    "print(oglogstream.OgLogHandler.__name__)\n"
)


def test_sdk_imports_without_the_stack_extras() -> None:
    """`import oglogstream` works when none of the server or structlog packages can be imported."""
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_SERVER_DEPS], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OgLogHandler"
