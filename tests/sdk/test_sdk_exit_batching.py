"""Records logged after the atexit drain (by hooks that run later) are batched, not one request each, and
all of them arrive exactly once; each case is its own interpreter against a real capture server."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .capture_server import CaptureServer
from .stderr_checks import reports_loss

_HANG_GUARD = 60

_HOOK_THEN_IMPORT = textwrap.dedent(
    """
    import atexit, sys
    import logging

    def late():
        log = logging.getLogger("late")
        for i in range(int(sys.argv[2])):
            log.warning("late %d", i)

    atexit.register(late)  # runs after the SDK's own drain (atexit is last-in, first-out)
    import oglogstream

    log = logging.getLogger("late")
    log.propagate = False
    log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "exit-batching"))
    log.warning("from main")
    """
)


def _run(server: CaptureServer, script: str, count: int) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", script, server.url, str(count)],
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD,
    )
    assert result.returncode == 0, result.stderr
    assert not reports_loss(result.stderr), result.stderr
    return result


def test_a_hook_after_the_drain_ships_its_records_in_batches(server: CaptureServer) -> None:
    """3,000 lines from one atexit hook that runs between the SDK's drain and `logging.shutdown`: they wait
    in the buffer and `logging.shutdown` (which closes every handler) sends them, a few requests in all."""
    _run(server, _HOOK_THEN_IMPORT, 3000)
    assert server.entry_count == 3001 == len(server.ids)
    assert len(server.requests) <= 10, len(server.requests)


def test_a_hook_after_logging_shutdown_still_delivers_every_record(server: CaptureServer) -> None:
    """A hook registered before `import logging` runs after `logging.shutdown`: nothing closes the handler
    after it, so each record waits for its delivery (all 300 arrive, one request each)."""
    script = textwrap.dedent(
        """
        import atexit, sys

        def late():
            import logging
            log = logging.getLogger("late")
            for i in range(int(sys.argv[2])):
                log.warning("late %d", i)

        atexit.register(late)  # registered before `import logging`: runs after logging.shutdown
        import logging
        import oglogstream

        log = logging.getLogger("late")
        log.propagate = False
        log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "exit-batching"))
        log.warning("from main")
        """
    )
    _run(server, script, 300)
    assert server.entry_count == 301 == len(server.ids)
