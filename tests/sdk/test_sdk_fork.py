"""Fork safety: gunicorn --preload workers and multiprocessing (fork) children ship their records once."""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..conftest import require
from .capture_server import CaptureServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")

_APP = textwrap.dedent(
    """
    import logging, os
    import oglogstream

    log = logging.getLogger("wsgi")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(oglogstream.OgLogHandler(service="gunicorn-app", flush_interval=0.05))
    log.info("preloaded in the master")  # buffered in the master before it forks: must arrive once

    def app(environ, start_response):
        log.info("request %s", environ["QUERY_STRING"])
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gunicorn() -> str:
    require("gunicorn")
    require("requests")
    found = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail("the gunicorn package is installed but its script is not next to this Python")
    return found


def start_gunicorn(
    tmp_path: Path, app: str, oglog_url: str, *options: str, first_path: str = "/?warmup"
) -> tuple[subprocess.Popen[str], int]:
    """Real gunicorn serving `app` (the source of `wsgi_app.py`) with OGLOG_URL set, once it has answered a
    first GET of `first_path` (within 20 s): the process (stderr piped) and its port. `options` go before
    the app name (`--preload`, `-k gevent`, `-w N`, ...)."""
    gunicorn = _gunicorn()  # fails (CI) or skips when gunicorn or requests is missing
    import requests

    (tmp_path / "wsgi_app.py").write_text(app)
    port = _free_port()
    proc = subprocess.Popen(
        [gunicorn, *options, "-b", f"127.0.0.1:{port}", "--chdir", str(tmp_path), "wsgi_app:app"],
        env={**os.environ, "OGLOG_URL": oglog_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}{first_path}", timeout=2)
            return proc, port
        except requests.ConnectionError:
            if time.monotonic() >= deadline or proc.poll() is not None:
                proc.kill()
                proc.communicate()
                pytest.fail("gunicorn did not start")
            time.sleep(0.1)


def test_gunicorn_preload_workers_ship_every_request_once_with_their_pid(
    server: CaptureServer, tmp_path: Path
) -> None:
    """A handler created in a --preload master works in every worker; nothing is lost or sent twice."""
    import requests

    proc, port = start_gunicorn(
        tmp_path, _APP, server.url, "--preload", "-w", "3", "--graceful-timeout", "10"
    )
    try:
        pids: dict[str, int] = {}
        for n in range(90):
            url = f"http://127.0.0.1:{port}/?{n}"
            response = requests.get(url, headers={"Connection": "close"}, timeout=5)
            pids[f"request {n}"] = int(response.text)
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: workers finish, exit, and drain at exit
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert len(set(pids.values())) >= 2, "the requests should have been spread over several workers"
    sdk_lines = [line[-300:] for line in stderr.splitlines() if "oglogstream" in line]
    assert server.wait_entries(92, 10), (server.entry_count, sdk_lines)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts.pop("request warmup") == 1
    assert counts == collections.Counter([*pids, "preloaded in the master"])
    by_message = {str(e["message"]): e["pid"] for e in server.entries}
    assert by_message["preloaded in the master"] == proc.pid
    assert all(by_message[message] == pid for message, pid in pids.items())


def _child_logs(url: str, n: int) -> None:
    log = logging.getLogger("mp.child")
    for i in range(200):
        log.info("child %d record %d", n, i)
    # No flush(), no close(): the child ends with os._exit(), which skips atexit.


def test_multiprocessing_fork_children_deliver_without_flushing(
    server: CaptureServer, make_handler
) -> None:
    """Children started with the fork context ship their records (with their pid) even without close()."""
    log = logging.getLogger("mp.child")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = make_handler(server.url)
    log.addHandler(handler)
    try:
        log.info("parent before fork")  # buffered in the parent when the children fork: shipped once
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=_child_logs, args=(server.url, n)) for n in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
            assert child.exitcode == 0
        assert handler.flush(10)
        assert server.wait_entries(601, 10)
    finally:
        log.removeHandler(handler)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    expected = ["parent before fork"] + [f"child {n} record {i}" for n in range(3) for i in range(200)]
    assert counts == collections.Counter(expected)
    pid_of = {n: child.pid for n, child in enumerate(children)}
    for entry in server.entries:
        message = str(entry["message"])
        want = os.getpid() if message == "parent before fork" else pid_of[int(message.split()[1])]
        assert entry["pid"] == want


def test_fork_without_the_at_fork_hooks_is_caught_by_the_pid_check(
    server: CaptureServer, make_handler, logger
) -> None:
    """If a fork bypassed os.register_at_fork, the child still ships only its own records."""
    from oglogstream._entry import capture

    handler = make_handler(server.url)
    logger.addHandler(handler)
    logger.info("parent record")
    # What a hook-less fork would leave in the child's intake: a record the parent captured (its pid).
    inherited = capture(logger.makeRecord(logger.name, logging.INFO, "f", 1, "inherited", None, None), None)
    pipeline = handler._pipeline
    pid = os.fork()
    if pid == 0:  # child: undo what the at-fork hook did, as if it had not run, then log and flush
        code = 1
        try:
            pipeline.intake.append(inherited)
            pipeline._pid = -1
            logger.info("child record")
            code = 0 if handler.flush(10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.flush(10)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter(["parent record", "child record"])


_POOL = textwrap.dedent(
    """
    import logging, multiprocessing, sys
    import oglogstream

    log = logging.getLogger("pool")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "pool-test"))  # defaults

    def f(i):
        log.info("task %d", i)
        return i

    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(2) as p:  # __exit__ SIGTERMs the workers at once
            assert p.map(f, range(20)) == list(range(20))
    """
)


def test_pool_workers_ended_by_sigterm_deliver_every_record(server: CaptureServer, tmp_path: Path) -> None:
    """`with Pool(2) as p: p.map(f, range(20))`, f logs once: 20 of 20 arrive although Pool.__exit__
    SIGTERMs the workers (they drain on SIGTERM, then die of it)."""
    script = tmp_path / "pool_app.py"
    script.write_text(_POOL)
    for _ in range(3):  # the race with terminate() is timing-dependent: win it every time
        before = server.entry_count
        result = subprocess.run([sys.executable, str(script), server.url], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        assert server.wait_entries(before + 20, 5), (server.entry_count - before, result.stderr)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter({f"task {i}": 3 for i in range(20)})
