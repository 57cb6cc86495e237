"""Shutdown: flush/close deadlines, idempotent close, atexit drain budget, records after close, fork."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
import weakref

import pytest

from .capture_server import BlackHoleServer, CaptureServer
from .stderr_checks import reports_loss

_EXIT_SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    import oglogstream

    url, budget, handlers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for n in range(handlers):
        root.addHandler(oglogstream.OgLogHandler(url, f"exit-{n}", shutdown_timeout=budget,
                                                 connect_timeout=60, read_timeout=60, flush_interval=0.05))
    for i in range(100):
        logging.info("stuck %d", i)
    time.sleep(0.5)  # every worker is now waiting for an answer that never comes
    print(repr(time.time()), flush=True)
    """
)


@pytest.fixture
def black_hole():
    hole = BlackHoleServer()
    yield hole
    hole.close()


def _exit_delay(url: str, budget: float, handlers: int) -> tuple[float, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXIT_SCRIPT, url, str(budget), str(handlers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        main_done = float(proc.stdout.readline())
        proc.wait(timeout=budget + 20)
        exited = time.time()
    finally:
        proc.kill()
    assert proc.stderr is not None
    return exited - main_done, proc.stderr.read()


def test_exit_with_a_hanging_server_stays_within_budget(black_hole: BlackHoleServer) -> None:
    """A process whose server never answers exits within the atexit budget + 0.5 s, and says what it lost."""
    delay, err = _exit_delay(black_hole.url, 1.0, 1)
    assert delay <= 1.0 + 0.5, delay
    assert "lost 100 record(s), reason 'unconfirmed'" in err  # sent, never answered


def test_atexit_budget_is_shared_across_handlers(black_hole: BlackHoleServer) -> None:
    """Three stuck handlers drain in parallel under one budget, not one budget each."""
    delay, _ = _exit_delay(black_hole.url, 1.0, 3)
    assert delay <= 1.0 + 0.5, delay


def test_close_against_a_hanging_server_respects_its_timeout(
    black_hole: BlackHoleServer, make_handler, logger
) -> None:
    """close(timeout) returns by its deadline and counts the request still unanswered as `unconfirmed`."""
    handler = make_handler(black_hole.url, read_timeout=60, connect_timeout=60)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("%d", i)
    time.sleep(0.2)
    started = time.monotonic()
    assert handler.close(timeout=0.5) is False
    assert time.monotonic() - started < 0.5 + 0.3
    assert handler.stats().dropped == {"unconfirmed": 10}


def test_flush_times_out_and_returns_false(black_hole: BlackHoleServer, make_handler, logger) -> None:
    """flush() never waits past its timeout; it reports False when records are still in flight."""
    handler = make_handler(black_hole.url, read_timeout=60)
    logger.addHandler(handler)
    logger.info("x")
    started = time.monotonic()
    assert handler.flush(0.3) is False
    assert time.monotonic() - started < 0.3 + 0.3
    handler.close(0.1)


def test_logging_shutdown_against_a_hanging_server_takes_one_budget(
    black_hole: BlackHoleServer, make_handler, logger
) -> None:
    """logging.shutdown() (and so a dictConfig re-configuration, under logging's module lock) calls flush()
    then close(): against a server that never answers the pair takes one shutdown_timeout, not two."""
    handler = make_handler(black_hole.url, read_timeout=60, connect_timeout=60, shutdown_timeout=1.0)
    logger.addHandler(handler)
    for i in range(10):
        logger.info("%d", i)
    time.sleep(0.2)
    started = time.monotonic()
    logging.shutdown([weakref.ref(handler)])
    assert time.monotonic() - started < 1.0 + 0.5  # was 2.0: flush's budget, then close's
    assert handler.stats().dropped == {"unconfirmed": 10}


def test_close_delivers_then_twice_is_harmless(server: CaptureServer, make_handler, logger) -> None:
    """close() sends what is buffered; a second close() returns at once."""
    handler = make_handler(server.url, flush_interval=60)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("%d", i)
    assert handler.close() is True
    assert server.entry_count == 50
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 0.1


def test_records_after_close_are_delivered(server: CaptureServer, make_handler, logger) -> None:
    """Like a stdlib FileHandler, a closed handler reopens for a later record (dictConfig re-configures)."""
    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("before")
    handler.close()
    logger.info("late")
    assert handler.flush(timeout=5) is True
    assert [e["message"] for e in server.entries] == ["before", "late"]
    assert handler.stats().dropped == {} and handler.stats().sent == 2
    handler.close()
    logger.info("later still")
    assert handler.close() is True
    assert server.entry_count == 3


def test_logging_shutdown_drains(server: CaptureServer, make_handler, logger) -> None:
    """logging.shutdown() (flush then close under the handler lock) delivers and returns promptly."""
    handler = make_handler(server.url, flush_interval=60)
    logger.addHandler(handler)
    for i in range(20):
        logger.info("%d", i)
    started = time.monotonic()
    logging.shutdown([weakref.ref(handler)])
    assert time.monotonic() - started < 2
    assert server.entry_count == 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_child_gets_its_own_worker(server: CaptureServer, make_handler, logger) -> None:
    """After fork the child starts a fresh worker and ships its own records (its pid), not the parent's."""
    handler = make_handler(server.url, flush_interval=60)
    logger.addHandler(handler)
    logger.info("parent before fork")  # buffered, not yet sent: must not be duplicated by the child
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            logger.info("from child")
            code = 0 if handler.flush(5) and handler.stats().sent == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.flush(5)
    by_message = {e["message"]: e["pid"] for e in server.entries}
    assert by_message == {"from child": pid, "parent before fork": os.getpid()}


_EARLY_ATEXIT = textwrap.dedent(
    """
    import atexit, logging, sys

    def late():
        logging.getLogger("late").warning("from an atexit hook registered before the import")

    atexit.register(late)  # runs AFTER the SDK's own atexit drain (atexit is last-in, first-out)
    import oglogstream

    log = logging.getLogger("late")
    log.propagate = False
    log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "atexit-test"))
    log.warning("from main")
    """
)


def test_atexit_hook_registered_before_the_import_is_delivered(server: CaptureServer) -> None:
    """A record logged after the atexit drain ran is sent synchronously at exit, not dropped as closed."""
    result = subprocess.run(
        [sys.executable, "-c", _EARLY_ATEXIT, server.url], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(e["message"] for e in server.entries) == [
        "from an atexit hook registered before the import",
        "from main",
    ]
    assert not reports_loss(result.stderr), result.stderr


def test_dictconfig_reconfiguration_keeps_an_old_handler_delivering(server: CaptureServer, logger) -> None:
    """dictConfig closes the handlers it replaces; a logger still holding one keeps delivering through it."""
    import logging.config

    from oglogstream import OgLogHandler

    handler = OgLogHandler(server.url, "reconf", flush_interval=0.05)
    logger.addHandler(handler)
    logger.info("before")
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # closes `handler`
    logger.info("after re-configuration")
    assert handler.flush(5)
    assert [e["message"] for e in server.entries] == ["before", "after re-configuration"]
    assert handler.stats().dropped == {}
    handler.close()
