"""A SIGTERM whose Python handler cannot run (the main thread blocked in a C call that missed the signal)
still ends the process within the drain budget, with everything buffered delivered: the watchdog of
`_sigterm_watch` re-delivers the signal to the main thread, or drains and dies in its place.

The race is forced deterministically: a helper thread signals itself with `pthread_kill`, so the C-level
handler runs on that thread (the flag is set, the wakeup fd written) while the main thread stays blocked -
exactly what a SIGTERM landing between `sem_trywait` and `sem_wait` leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from .capture_server import CaptureServer

EVENTS = 200

_APP = """
    import sys
    if sys.argv[2].startswith("gevent_"):  # monkey-patched first, as gevent apps do
        from gevent import monkey
        monkey.patch_all()
        start_thread, get_ident, sleep = monkey.get_original("_thread", ["start_new_thread", "get_ident"]) + [
            monkey.get_original("time", "sleep")
        ]
    else:
        from _thread import start_new_thread as start_thread, get_ident
        from time import sleep
    import ctypes, logging, multiprocessing, os, signal, threading, time
    from oglogstream import OgLogHandler

    url, case, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = logging.getLogger("app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(OgLogHandler(url, "sigterm-race"))  # defaults
    for i in range(events):
        log.info("event %d", i)

    def term_off_main(blocked):  # on a real OS thread, also under gevent
        while not blocked:
            sleep(0.01)
        sleep(0.2)  # the main thread is inside the blocking call by now
        signal.pthread_kill(get_ident(), signal.SIGTERM)  # the handler's flag is set, on this thread

    def block_main_thread():
        blocked = []
        start_thread(term_off_main, (blocked,))
        if case == "semlock":  # what a Pool worker idles in (SimpleQueue.get), held by another process
            lock = multiprocessing.get_context("fork").Lock()
            holder = multiprocessing.get_context("fork").Process(target=hold, args=(lock,), daemon=True)
            holder.start()
            holder_ready.wait(30)
            blocked.append(True)
            print("blocking", time.monotonic(), flush=True)
            lock.acquire()
        else:  # a C call that retries EINTR without checking signals: only the watchdog's drain helps
            mutex = ctypes.create_string_buffer(64)  # PTHREAD_MUTEX_INITIALIZER is all zeroes in glibc
            libc = ctypes.CDLL(None)
            libc.pthread_mutex_lock(mutex)  # taken here, so the next lock call blocks in the kernel
            blocked.append(True)
            print("blocking", time.monotonic(), flush=True)
            libc.pthread_mutex_lock(mutex)
        print("still alive", flush=True)

    holder_ready = multiprocessing.get_context("fork").Event()

    def hold(lock):
        parent = os.getppid()
        lock.acquire()
        holder_ready.set()
        deadline = time.monotonic() + 60
        while os.getppid() == parent and time.monotonic() < deadline:  # ends with the process it blocks
            threading.Event().wait(0.1)

    case = case.removeprefix("gevent_")
    if case.startswith("child_"):  # the same inside a forked multiprocessing child (budget FORK_TERM_BUDGET)
        case = case[len("child_"):]
        child = multiprocessing.get_context("fork").Process(target=block_main_thread)
        child.start()
        child.join(60)
        print("child exit", child.exitcode, flush=True)
    else:
        block_main_thread()
"""


def _run(server: CaptureServer, case: str) -> subprocess.CompletedProcess[str]:
    """Run the app in its own process group; on a hang, kill the whole group (its children too)."""
    args = [sys.executable, "-c", textwrap.dedent(_APP), server.url, case, str(EVENTS)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{case}: still alive 60 s after SIGTERM\n{out}{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # a child left behind
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("case", ["semlock", "mutex", "gevent_semlock"])
def test_missed_sigterm_on_a_blocked_main_thread_drains_and_kills(server: CaptureServer, case: str) -> None:
    """Main thread blocked in a SemLock held by another process (the Pool worker's hang) or in a mutex wait
    that never returns EINTR, also gevent-patched; SIGTERM's handler flag set off the main thread: the
    process dies of SIGTERM and all 200 records arrive exactly once (before: it never died)."""
    result = _run(server, case)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "still alive" not in result.stdout
    assert server.entry_count == EVENTS == len(server.ids), result.stderr


@pytest.mark.parametrize("case", ["child_semlock", "child_mutex"])
def test_a_blocked_forked_child_still_dies_of_sigterm(server: CaptureServer, case: str) -> None:
    """The same in a forked multiprocessing child (the watchdog is re-armed after fork with the child's own
    pipe): the child dies of SIGTERM, the parent's `join` returns, the parent's records and the child's
    (inherited buffer: delivered once, by one of them) all arrive once."""
    result = _run(server, case)
    assert f"child exit {-signal.SIGTERM}" in result.stdout, result.stdout + result.stderr
    assert "still alive" not in result.stdout
    assert result.returncode == 0, result.stderr
    assert server.entry_count == EVENTS == len(server.ids), result.stderr


_FORK_WINDOW_APP = """
    import logging, os, signal, sys, threading
    # Registered before the SDK's: runs first in the child, and holds it inside its after-fork hooks.
    os.register_at_fork(after_in_child=lambda: threading.Event().wait(0.5))
    from oglogstream import OgLogHandler

    url, events = sys.argv[1], int(sys.argv[2])
    log = logging.getLogger("app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(OgLogHandler(url, "sigterm-fork-window"))  # defaults
    pid = os.fork()
    if pid == 0:
        threading.Event().wait(10)
        os._exit(0)
    os.kill(pid, signal.SIGTERM)  # lands while the child is still inside its after-fork hooks
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)
    threading.Event().wait(0.5)  # the parent's watchdog would have acted by now
    for i in range(events):
        log.info("event %d", i)
    print("parent alive", flush=True)
"""


def test_sigterm_to_a_child_inside_its_fork_hooks_is_the_childs_alone(server: CaptureServer) -> None:
    """A SIGTERM reaching a forked child before its after-fork hooks re-armed it (a Pool worker terminated
    before it ever ran) kills the child, not the parent: before, the child's C handler wrote the byte to
    the parent's inherited wakeup pipe and the parent's watchdog killed the parent (the soak's hang: the
    parent died in `Pool.__exit__` and left the other worker running). The parent then lives on and
    delivers all 200 records."""
    args = [sys.executable, "-c", textwrap.dedent(_FORK_WINDOW_APP), server.url, str(EVENTS)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert f"child {-signal.SIGTERM}" in result.stdout, result.stdout + result.stderr
    assert "parent alive" in result.stdout and result.returncode == 0, result.stdout + result.stderr
    assert server.entry_count == EVENTS == len(server.ids), result.stderr


_ASYNCIO_APP = """
    import asyncio, logging, os, signal, sys
    from oglogstream import OgLogHandler

    url, events = sys.argv[1], int(sys.argv[2])
    log = logging.getLogger("app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(OgLogHandler(url, "sigterm-asyncio"))  # defaults: our wakeup fd is set now

    async def main():
        got = asyncio.Event()
        # asyncio sets its own wakeup fd over ours
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, got.set)
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(got.wait(), 10)
        print("asyncio got SIGUSR1", flush=True)
        for i in range(events):
            log.info("event %d", i)
        await asyncio.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # still ours: drained, then death by SIGTERM
        await asyncio.sleep(30)
        print("still alive", flush=True)

    asyncio.run(main())
"""


def test_asyncio_signal_handlers_keep_working_next_to_the_watchdog(server: CaptureServer) -> None:
    """asyncio's `add_signal_handler` sets its own wakeup fd over ours: its handlers run as usual, and a
    SIGTERM still drains all 200 records and kills the process."""
    args = [sys.executable, "-c", textwrap.dedent(_ASYNCIO_APP), server.url, str(EVENTS)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert "asyncio got SIGUSR1" in result.stdout, result.stdout + result.stderr
    assert result.returncode == -signal.SIGTERM and "still alive" not in result.stdout, result.stderr
    assert server.entry_count == EVENTS == len(server.ids), result.stderr
