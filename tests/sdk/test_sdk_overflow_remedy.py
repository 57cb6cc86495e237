"""The overflow announcement says which setting helps in which case: a spool does not relieve a burst that
outruns the encoder (the caller-side intake overflows: only max_buffer_bytes helps; a reviewer lost 4.6-13 %
of a burst with `spool_dir` set after being told to set it), while an outage is what a spool absorbs."""

from __future__ import annotations

from oglogstream import LOSS_REMEDIES

from .capture_server import CaptureServer


def test_the_remedy_pairs_each_case_with_the_setting_that_helps() -> None:
    """Burst -> max_buffer_bytes; outage -> spool_dir; never spool_dir offered for a burst."""
    remedy = LOSS_REMEDIES["overflow"]
    burst, _, outage = remedy.partition(";")
    assert "burst" in burst and "max_buffer_bytes" in burst and "spool_dir" not in burst
    assert "outage" in outage and "spool_dir" in outage


def test_the_first_overflow_is_announced_with_both_cases(
    server: CaptureServer, make_handler, logger, capsys
) -> None:
    """The stderr line of the first overflow carries that remedy verbatim."""
    handler = make_handler(server.url, service="remedy", max_buffer_records=100, batch_size=50)
    logger.addHandler(handler)
    server.fail_status = 503
    for i in range(1000):
        logger.info("r %d", i)
    handler.close(timeout=0.5)
    lines = [line for line in capsys.readouterr().err.splitlines() if "reason 'overflow'" in line]
    assert len(lines) == 1
    assert LOSS_REMEDIES["overflow"] in lines[0]
