"""Green threads: no lock is held across a gevent yield, whether patching happens before or after the
handler exists, in a forked child, and under real `gunicorn --preload -k gevent` (each in its own process)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import require
from .capture_server import CaptureServer
from .test_sdk_fork import start_gunicorn

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="gevent's fork cases are POSIX-only")

_SETUP = """
import logging, os, sys
import oglogstream
log = logging.getLogger("green")
log.propagate = False
log.setLevel(logging.INFO)
handler = oglogstream.OgLogHandler(sys.argv[1], "gevent-test")
log.addHandler(handler)
"""

_GREENLETS = """
import gevent
gevent.joinall([gevent.spawn(lambda n: log.info("greenlet %d", n), n) for n in range(20)], timeout=10)
"""

_CASES = {
    # The case: handler created and used, fork, the child patches and logs from 20 greenlets.
    "fork_then_patch_in_child": _SETUP + textwrap.dedent(
        """
        log.info("parent")
        assert handler.flush(5)
        pid = os.fork()
        if pid == 0:
            from gevent import monkey; monkey.patch_all()
        """
    ) + textwrap.indent(_GREENLETS, "    ") + textwrap.dedent(
        """
            os._exit(0 if handler.flush(5) else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    ),
    # Patched after the handler exists and its worker (a real thread) runs.
    "patch_after_handler": _SETUP + 'log.info("parent")\nassert handler.flush(5)\n'
    + "from gevent import monkey; monkey.patch_all()\n" + _GREENLETS
    + "sys.exit(0 if handler.flush(5) else 3)\n",
    # Patched before the handler exists: its worker is a greenlet.
    "patch_before_handler": "from gevent import monkey; monkey.patch_all()\n" + _SETUP
    + 'log.info("parent")\n' + _GREENLETS + "sys.exit(0 if handler.flush(5) else 3)\n",
}


def _run_child(script: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter with faulthandler on: a crash (a SIGSEGV at exit was seen once in
    CI) prints every thread's Python stack into the stderr the assertions show."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("case", sorted(_CASES))
def test_twenty_greenlets_deliver_without_hanging(server: CaptureServer, case: str) -> None:
    """Every record of the parent and the 20 greenlets arrives once; nothing hangs (bounded by a timeout)."""
    require("gevent")
    result = _run_child(_CASES[case], server.url)
    assert result.returncode == 0, result.stderr
    assert server.wait_entries(21, 10)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter(["parent", *(f"greenlet {n}" for n in range(20))])


_APP = textwrap.dedent(
    """
    import logging, os
    import oglogstream

    log = logging.getLogger("wsgi")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = oglogstream.OgLogHandler(service="gevent-app")
    log.addHandler(handler)
    log.info("preloaded in the master")
    handler.flush(5)  # the master's worker thread has run: the workers fork a used handler

    def app(environ, start_response):
        log.info("request %s", environ["QUERY_STRING"])
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def test_gunicorn_preload_gevent_workers_answer_and_deliver(server: CaptureServer, tmp_path: Path) -> None:
    """Real `gunicorn --preload -k gevent`: requests answer at once and every request's record arrives once,
    while the workers still run (the fork-child linger sends them; no request times out)."""
    require("gevent")
    import requests

    proc, port = start_gunicorn(
        tmp_path, _APP, server.url, "--preload", "-k", "gevent", "-w", "2", "--graceful-timeout", "10"
    )
    try:
        for n in range(40):
            requests.get(f"http://127.0.0.1:{port}/?{n}", headers={"Connection": "close"}, timeout=5)
        assert server.wait_entries(42, 10), server.entry_count  # delivered while the workers run
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter(
        ["preloaded in the master", "request warmup", *(f"request {n}" for n in range(40))]
    )


#: Registered before `import oglogstream`, so it runs after the SDK's atexit drain (atexit runs last-in
#: first-out): which of the SDK's threads are still alive when the interpreter goes on to finalize.
_THREADS_LEFT_AT_EXIT = textwrap.dedent(
    """
    import atexit, threading
    def _sdk_threads_left():
        left = [t.name for t in threading.enumerate() if t.name.startswith("oglogstream-worker")]
        print("sdk threads left:", left, flush=True)
    atexit.register(_sdk_threads_left)
    """
)


def test_patch_after_the_worker_started_exits_clean_and_drains(server: CaptureServer) -> None:
    """`patch_all()` after the worker thread runs, records logged after it and no flush(): the atexit drain
    delivers them all within the deadline, leaves none of the SDK's threads running (such a thread waits in
    its own gevent hub; finalization killing it mid-switch was a SIGSEGV at exit, ~4 % of runs) and the exit
    prints nothing (no KeyError from threading's bookkeeping of a thread that started unpatched and ends
    patched)."""
    require("gevent")
    script = _THREADS_LEFT_AT_EXIT + _SETUP + 'log.info("parent")\nassert handler.flush(5)\n'
    script += textwrap.dedent(
        """
        from gevent import monkey; monkey.patch_all()
        import gevent
        gevent.joinall([gevent.spawn(lambda n: log.info("greenlet %d", n), n) for n in range(20)], timeout=10)
        for n in range(50):
            log.info("tail %d", n)
        """
    )
    result = _run_child(script, server.url)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)
    assert result.stdout == "sdk threads left: []\n"
    assert server.wait_entries(71, 10)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter(
        ["parent", *(f"greenlet {n}" for n in range(20)), *(f"tail {n}" for n in range(50))]
    )


def test_patch_after_the_handler_with_no_connection_yet_delivers_at_exit(server: CaptureServer) -> None:
    """`patch_all()` after the handler exists but before its first request, then exit without flush(): the
    exit drain's first connection resolves the host through gevent's resolver, which imports
    `concurrent.futures.thread` (an exit-hook registration that raises once the interpreter exits): every
    record used to be lost as `shutdown`; all 51 arrive."""
    require("gevent")
    script = _SETUP + textwrap.dedent(
        """
        log.info("parent")
        from gevent import monkey; monkey.patch_all()
        for n in range(50):
            log.info("tail %d", n)
        """
    )
    result = _run_child(script, server.url)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)
    assert server.wait_entries(51, 10), server.entry_count
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter(["parent", *(f"tail {n}" for n in range(50))])
