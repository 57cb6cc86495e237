"""With a spool, what a close leaves in it is `spooled`, never also `queued`, whether the worker was done by
the deadline or close() gave up on it waiting for a slow answer (found by review: 20,000 or 0 `queued` after
the same close, depending on which came first)."""

from __future__ import annotations

import logging
from pathlib import Path

from .capture_server import CaptureServer, Reply


def test_a_spooling_close_leaves_the_same_counts_every_time(
    server: CaptureServer, make_handler, tmp_path: Path
) -> None:
    """20,000 records, every answer after 3 s, close(1.0), four rounds: clean, all spooled, none queued."""
    for round_ in range(4):
        server.script(*[Reply(202, delay=3.0)] * 50)
        handler = make_handler(server.url, spool_dir=str(tmp_path / f"spool{round_}"))
        logger = logging.getLogger(f"tests.spool_close.{round_}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            for i in range(20_000):
                logger.info("r %d", i)
            assert handler.close(timeout=1.0) is True
            stats = handler.stats()
            assert (stats.queued, stats.dropped, stats.sent + stats.spooled) == (0, {}, 20_000), stats
        finally:
            logger.removeHandler(handler)
