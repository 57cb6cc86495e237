"""What only one process may own, and what a killed one leaves behind: the flock on a data dir or chDB path
(`exclusive_lock`; the kernel drops it when the process dies, even by `kill -9`, so a restart is never blocked
by a stale lock file), and a nats-server a SIGKILLed supervisor left still flushing its store
(`reap_orphan_nats`). StackError is how a start that cannot proceed is reported.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NATS_PID_NAME", "ORPHAN_WAIT", "StackError", "exclusive_lock", "reap_orphan_nats"]

log = logging.getLogger(__name__)

#: How long a start waits for a nats-server left by a killed supervisor to exit before killing it.
ORPHAN_WAIT = 10.0
#: The file under the NATS store naming the pid of the nats-server that uses it.
NATS_PID_NAME = "nats-server.pid"


class StackError(RuntimeError):
    """The stack could not start (port in use, data dir locked, ...): reported as one line, exit status 1."""


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str, remedy: str = "stop it first") -> Iterator[None]:
    """Hold an flock on `path` for the block; StackError (`{what} is in use ...; {remedy}`) if another live
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StackError(
                f"{what} is in use by another oglog process (pid {holder}); {remedy}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie, which an init that does not reap may leave behind, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def reap_orphan_nats(store_dir: Path, *, wait: float = ORPHAN_WAIT) -> None:
    """If a previous supervisor died by SIGKILL, its nats-server got SIGTERM from the kernel and may still be
    flushing the store: wait for it, then SIGKILL it past `wait`. Only a nats-server on this store is touched.
    """
    pid_file = store_dir / NATS_PID_NAME
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    cmdline = _cmdline(pid)
    if _alive(pid) and "nats-server" in cmdline and str(store_dir) in cmdline:
        log.warning("waiting for nats-server %d left by a previous run to exit", pid)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
