"""A forked child's SIGTERM drain is armed by its first record: until then SIGTERM keeps its default
disposition, so a child with nothing to drain dies at once whatever its main thread is blocked in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from .capture_server import CaptureServer

_SCRIPT = textwrap.dedent(
    """
    import logging, os, signal, sys, time, multiprocessing
    import oglogstream

    log = logging.getLogger("fork-sigterm")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "fork-sigterm"))
    log.info("parent")
    print("parent", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, flush=True)

    held = multiprocessing.get_context("fork").Lock()
    held.acquire()  # the child blocks on it in sem_wait, as an idle Pool worker does
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, b"1" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else b"0")
        held.acquire()
        os._exit(0)
    assert os.read(read, 1) == b"1", "SIGTERM is not at its default in a child that never logged"
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    print("idle child", os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM,
          round(time.monotonic() - started, 2), flush=True)

    pid = os.fork()
    if pid == 0:
        log.info("child")  # the first record arms the drain
        os.write(write, b"1" if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL else b"0")
        time.sleep(30)
        os._exit(0)
    armed = os.read(read, 1) == b"1"
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    died = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    print("logging child", armed, died, flush=True)
    """
)


def test_a_child_arms_the_drain_with_its_first_record(server: CaptureServer) -> None:
    """The parent's drain is held back in a forked child until it logs: a child that never logged dies of
    SIGTERM at once while blocked in a multiprocessing lock; one that logged drains its record, then dies."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, server.url], capture_output=True, text=True, timeout=60
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    assert lines[0] == "parent True"
    assert lines[1].startswith("idle child True ")
    assert lines[2] == "logging child True True"
    assert server.wait_entries(2, timeout=10)
    assert sorted(str(e["message"]) for e in server.entries) == ["child", "parent"]

