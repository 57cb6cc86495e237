"""Findings of the attacker review of the SDK (issue #10), each as a test with default settings against a real
local capture server; the interpreter-exit cases run in their own interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from .capture_server import CaptureServer, Reply

_HANG_GUARD = 60


def _run(server: CaptureServer, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), server.url, *args],
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD,
    )


# -- 1. the atexit order does not depend on whether `logging` was imported before `oglogstream` -----------
def test_a_hook_registered_between_import_oglogstream_and_import_logging_delivers_everything(
    server: CaptureServer,
) -> None:
    """`import oglogstream` (which loads nothing else), then `atexit.register(hook)`, then `import logging`:
    the hook's 1,000 records still run before `logging.shutdown` and go in a few batches, none lost."""
    server.script(*[Reply(200, delay=0.02) for _ in range(200)])
    script = """
        import atexit, sys
        import oglogstream

        def hook():
            import logging
            log = logging.getLogger("hook")
            for i in range(1000):
                log.warning("hook %d", i)

        atexit.register(hook)
        import logging

        log = logging.getLogger("hook")
        log.propagate = False
        log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "attack-order"))
        for i in range(5000):
            log.warning("main %d", i)
    """
    result = _run(server, script)
    assert result.returncode == 0, result.stderr
    assert "lost" not in result.stderr, result.stderr
    assert server.entry_count == 6000 == len(server.ids)
    assert len(server.requests) <= 12, len(server.requests)
