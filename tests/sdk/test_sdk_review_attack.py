"""Findings of the attacker review of the SDK (issue #10), each as a test with default settings against a real
local capture server; the interpreter-exit cases run in their own interpreter."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from .capture_server import BlackHoleServer, CaptureServer, Reply
from .stderr_checks import reports_loss

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
    assert not reports_loss(result.stderr), result.stderr
    assert server.entry_count == 6000 == len(server.ids)
    assert len(server.requests) <= 12, len(server.requests)


# -- 2. SIGTERM to an ordinary process drains first, then the process still dies of SIGTERM ---------------
_SIGTERM_APP = """
    import logging, os, signal, sys, threading, time
    import oglogstream

    url, case = sys.argv[1], sys.argv[2]
    log = logging.getLogger("term")
    log.propagate = False
    log.setLevel(logging.INFO)
    def own(signum, frame):
        log.info("app handler ran")
        sys.exit(0)  # an orderly exit: the atexit drain delivers
    if case == "own_first":
        signal.signal(signal.SIGTERM, own)
    if case == "off_main":
        box = []
        maker = threading.Thread(target=lambda: box.append(oglogstream.OgLogHandler(url, "term")))
        maker.start()
        maker.join()
        handler = box[0]
    else:
        handler = oglogstream.OgLogHandler(url, "term", drain_on_sigterm=case != "opted_out")
    log.addHandler(handler)
    if case == "own_later":
        signal.signal(signal.SIGTERM, own)
    if case == "uvicorn_style":
        # uvicorn: capture the signal, shut down gracefully, restore the previous handler and re-raise it.
        previous = signal.signal(signal.SIGTERM, lambda s, f: caught.append(s))
        caught = []
    current = signal.getsignal(signal.SIGTERM)
    if current == signal.SIG_DFL:
        print("disposition default", flush=True)
    else:
        print("disposition", "sdk" if current.__module__ == "oglogstream._lifecycle" else current.__name__,
              flush=True)
    count = 50_000 if case == "burst" else 2_000
    for i in range(count):
        log.info("record %d", i)
    if case != "burst":
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    if case == "uvicorn_style":
        log.info("graceful shutdown done")
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(caught[0])
    threading.Event().wait(30)  # SIGTERM ends the process before this
    print("still alive", flush=True)
"""


def _terminated(server: CaptureServer, case: str) -> tuple[subprocess.CompletedProcess[str], str]:
    result = _run(server, _SIGTERM_APP, case)
    return result, result.stdout.split()[1]


def test_sigterm_to_a_plain_process_delivers_the_last_second_and_still_dies_of_sigterm(
    server: CaptureServer,
) -> None:
    """2,000 records, 0.5 s, SIGTERM to itself: all 2,000 arrive (before: 0) and the exit status is still
    "killed by SIGTERM"."""
    result, disposition = _terminated(server, "plain")
    assert disposition == "sdk"
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert server.entry_count == 2000 == len(server.ids), result.stderr
    assert "still alive" not in result.stdout


def test_sigterm_right_after_a_burst_delivers_the_whole_burst(server: CaptureServer) -> None:
    """50,000 records logged in a tight loop and SIGTERM at once: all arrive within the exit budget (before:
    0), exactly once."""
    result, _ = _terminated(server, "burst")
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert server.entry_count == 50_000 == len(server.ids), result.stderr


def test_an_application_handler_installed_first_is_left_alone(server: CaptureServer) -> None:
    """The app's own SIGTERM handler (set before the handler exists) stays in place and decides the exit."""
    result, disposition = _terminated(server, "own_first")
    assert disposition == "own"
    assert result.returncode == 0, result.stderr
    assert server.entry_count == 2001 == len(server.ids), result.stderr


def test_an_application_handler_installed_later_wins(server: CaptureServer) -> None:
    """gunicorn-style: the app installs its handler after building ours; theirs runs (orderly exit 0) and the
    atexit drain still delivers everything."""
    result, disposition = _terminated(server, "own_later")
    assert disposition == "own"
    assert result.returncode == 0, result.stderr
    assert server.entry_count == 2001 == len(server.ids), result.stderr


def test_a_uvicorn_style_app_that_re_raises_to_the_previous_handler_gets_the_drain(
    server: CaptureServer,
) -> None:
    """uvicorn captures SIGTERM, shuts down, restores the previous handler (ours) and re-raises: the drain
    runs then, and the process dies of SIGTERM with every record delivered."""
    result, disposition = _terminated(server, "uvicorn_style")
    assert disposition == "<lambda>"
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert server.entry_count == 2001 == len(server.ids), result.stderr


def test_a_handler_built_off_the_main_thread_installs_nothing(server: CaptureServer) -> None:
    """Python only lets the main thread set signal handlers: built on another thread, SIGTERM keeps its
    default (documented: such a process loses what it buffered, as before)."""
    result, disposition = _terminated(server, "off_main")
    assert disposition == "default"
    assert result.returncode == -signal.SIGTERM


def test_drain_on_sigterm_false_opts_out(server: CaptureServer) -> None:
    """`drain_on_sigterm=False` leaves SIGTERM's default disposition untouched."""
    result, disposition = _terminated(server, "opted_out")
    assert disposition == "default"
    assert result.returncode == -signal.SIGTERM


# -- 4. a request still in flight at the close deadline is "unconfirmed", not "shutdown" ------------------
def test_close_against_a_slow_server_counts_the_request_in_flight_as_unconfirmed(
    server: CaptureServer,
) -> None:
    """20,000 records, a server that answers after 3 s, close(1.0): the 4,000 of the request in flight may
    be stored (they are), so they count as `unconfirmed`, the other 16,000 as `shutdown`; nothing stays
    buffered after close and the counts stay exact."""
    import logging

    from oglogstream import DROP_REASONS, LOSS_REMEDIES, OgLogHandler

    server.script(*[Reply(200, delay=3.0) for _ in range(10)])
    handler = OgLogHandler(server.url, "attack-unconfirmed")
    log = logging.getLogger("attack-unconfirmed")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i in range(20_000):
            log.warning("record %d", i)
        assert not handler.close(1.0)
        stats = handler.stats()
        # One batch (4,000 unless a slow machine let a flush_interval tick cut a smaller one) was in flight.
        unconfirmed = stats.dropped["unconfirmed"]
        assert 0 < unconfirmed <= 4000 and set(stats.dropped) == {"unconfirmed", "shutdown"}, stats
        assert stats.sent + unconfirmed + stats.dropped["shutdown"] == 20_000 and stats.queued == 0
        assert stats.buffered_bytes == 0
        assert "unconfirmed" in DROP_REASONS and "unconfirmed" in LOSS_REMEDIES
        # The unconfirmed ones were in fact stored: the server took exactly them (and what was sent).
        assert server.wait_entries(stats.sent + unconfirmed, timeout=10)
        assert server.entry_count == stats.sent + unconfirmed
    finally:
        log.removeHandler(handler)


# -- 3. many small `extra=` fields count against the memory bound ----------------------------------------
_MANY_EXTRAS = """
    import json, logging, os, resource, sys
    import oglogstream

    url, attributes = sys.argv[1], int(sys.argv[2])
    handler = oglogstream.OgLogHandler(url, "attack-extras")
    log = logging.getLogger("extras")
    log.propagate = False
    log.addHandler(handler)
    keys = [f"field_{j:02d}" for j in range(attributes)]
    log.warning("warm-up")  # starts the worker, which then hangs on the server
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(100_000):
        value = f"{i:010d}"
        log.warning("record %d", i, extra={key: value[:9] + key[-1] for key in keys})
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = handler.stats()
    print(json.dumps({"grew_kib": after - before, "overflow": stats.dropped.get("overflow", 0),
                      "accepted": 100_001, "queued": stats.queued, "dropped": stats.dropped_total}))
    sys.stdout.flush()
    os._exit(0)  # the worker hangs on purpose: skip the exit drain
"""


@pytest.fixture
def black_hole() -> Iterator[BlackHoleServer]:
    hole = BlackHoleServer()
    try:
        yield hole
    finally:
        hole.close()


def test_many_small_extra_fields_stay_within_the_memory_bound(black_hole: BlackHoleServer) -> None:
    """100,000 records with 50 ten-character `extra=` fields while the server hangs: the intake charges each
    record its attributes, so overflow drops (counted) keep the process's growth near the default budget
    (before: 789 MB, no drop). Counts stay exact."""
    import json

    url = black_hole.url
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_MANY_EXTRAS), url, "50"],
        capture_output=True,
        text=True,
        timeout=_HANG_GUARD * 2,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["overflow"] > 0, result
    assert result["queued"] + result["dropped"] == result["accepted"], result
    assert result["grew_kib"] < 160 * 1024, result  # 128 MiB budget, charged conservatively; before: 789 MB
    assert "reason 'overflow'" in done.stderr


def test_the_charge_of_a_record_is_the_same_after_another_handler_formatted_it() -> None:
    """A record is charged for its `extra=` fields when captured and credited when it leaves the intake; a
    later handler's Formatter (which adds `message` and `asctime`) must not change that amount."""
    import logging

    from oglogstream._capture import capture
    from oglogstream._intake_charge import large_bytes
    from oglogstream._value_charge import EXTRA_ATTR_BYTES

    record = logging.getLogger("charge").makeRecord(
        "charge", logging.INFO, "f", 1, "m", None, None, extra={f"k{j}": "0123456789" for j in range(50)}
    )
    item = capture(record, None)
    before = large_bytes(item)
    assert before == 1 + 50 * (EXTRA_ATTR_BYTES + 10)
    logging.Formatter("%(asctime)s %(message)s").format(record)
    assert large_bytes(item) == before


def test_drain_on_sigterm_must_be_a_bool() -> None:
    """The opt-out is declared with the other settings and validated like them."""
    from oglogstream._settings import DEFAULT_DRAIN_ON_SIGTERM, Settings

    assert DEFAULT_DRAIN_ON_SIGTERM is True
    assert Settings.build("http://127.0.0.1:1", "s").drain_on_sigterm is True
    with pytest.raises(ValueError, match="drain_on_sigterm must be a bool, got str"):
        Settings.build("http://127.0.0.1:1", "s", drain_on_sigterm="no")  # type: ignore[arg-type]
