"""The worker's sending thread: one HTTP request at a time, while the worker thread encodes the next batch.

Compressing (zlib) and waiting for the server's answer (socket I/O) release the GIL, so a request on this
thread overlaps the worker's encoding instead of following it. The worker keeps every decision (retries, 413
halves, the ledger, flush waiters): this thread only runs `transport.send(batch, ...)` and hands the
`SendResult` back. One request at a time, so `_delivery.InFlight` still books a single batch in flight.

Made and started by the worker thread as its first act, with `threading` as it is then: under gevent
monkey-patching the sender is a greenlet exactly when the worker is one (a greenlet sender behind a
real-thread worker would never run while the worker waits on a real Event). It ends with the worker
(`close`), and is one of `_lifecycle.WORKER_THREADS`, so what httpx logs while sending is never shipped.
Where no thread can be started (interpreter exit), requests run on the worker thread, one after the other.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable

from ._buffer import Batch
from ._lifecycle import WORKER_THREADS
from ._transport import GoingOut, Outcome, SendResult, Transport

__all__ = ["SENDER_GRACE", "SENDER_IDLE_CHECK", "Meanwhile", "Sender", "WorkerThread"]

#: Seconds the worker waits for an answer beyond the attempt's own total deadline (`attempt_deadline`,
#: enforced by the transport) before it counts the attempt as unanswered and retries.
SENDER_GRACE = 1.0
#: An idle sending thread looks for `close` this often (seconds); a request wakes it at once.
SENDER_IDLE_CHECK = 30.0

#: Work the worker does while a request is on its way: called again and again until the answer is there.
#: Returns seconds to wait for the answer before the next call (0: call again at once), or None when there is
#: nothing to do (then the worker waits for the answer alone).
Meanwhile = Callable[[], "float | None"]

_Job = tuple[Transport, Batch, "float | None", "GoingOut | None"]


#: The interpreter's own lock type: it releases a thread's end-of-life lock of this type itself.
_NATIVE_LOCK = _thread.LockType


class WorkerThread(threading.Thread):
    """A worker or sending thread that also ends cleanly when gevent patched `threading` after it started,
    and that `join()`/`is_alive()` see end when it runs as a greenlet although this class was built before
    the patch (gunicorn `--preload -k gevent`: the SDK is imported in the master, workers patch later)."""

    def _bootstrap_inner(self) -> None:
        try:
            super()._bootstrap_inner()  # type: ignore[misc]
        finally:
            # Started as a greenlet (threading patched by now): its end-of-life lock is gevent's, which only
            # gevent's own Thread class releases (the interpreter never does for a greenlet), so join()
            # waited its whole timeout and is_alive() stayed True. Release it as that class does.
            lock = getattr(self, "_tstate_lock", None)  # Python < 3.13; 3.13's thread handles need nothing
            if lock is not None and type(lock) is not _NATIVE_LOCK and lock.locked():
                lock.release()
                self._stop()  # type: ignore[attr-defined]

    def _delete(self) -> None:
        # threading removes an ending thread from its registry under `get_ident()`; once gevent has patched
        # that, it names a greenlet, not this OS thread, and Python prints a KeyError traceback at exit
        # (the registry entry is keyed by the real ident, `self.ident`).
        try:
            super()._delete()  # type: ignore[misc]
        except KeyError:
            with threading._active_limbo_lock:  # type: ignore[attr-defined]
                threading._active.pop(self.ident, None)  # type: ignore[attr-defined]


class Sender:
    """Runs one `transport.send` at a time on its own thread; `send` returns its `SendResult`.
    Not thread-safe: only the worker thread calls `send` and `close`."""

    def __init__(self, name: str, notify: Callable[[], None]) -> None:
        """`notify()` is called on the sending thread after each answer (it wakes the worker's idle wait)."""
        self._name = name
        self._notify = notify
        self._go = threading.Event()
        self._done = threading.Event()
        self._job: _Job | None = None
        self._result: SendResult | None = None
        #: True from a request's hand-over until its answer is back (also after the worker gave up waiting).
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        #: False once a thread could not be started (interpreter exit): requests then run on the caller.
        self._threaded = True

    def send(
        self, transport: Transport, batch: Batch, timeout: float | None, *, deadline: float,
        meanwhile: Meanwhile, idle: Callable[[float], None], going_out: GoingOut | None = None,
    ) -> SendResult:
        """`transport.send(batch, timeout=timeout, going_out=going_out)` on the sending thread;
        `meanwhile()` runs on this thread until the answer is there, and when it has nothing to do,
        `idle(seconds)` waits until the worker is woken (by `notify` after the answer, or by callers with more
        records). `deadline` (time.monotonic()) bounds the wait: past it the result is a retryable,
        unanswered failure, and the next request first waits for this one's answer."""
        thread = self._thread
        if thread is not None and not thread.is_alive():  # ended by a BaseException: its request is lost
            self._thread = None
            self._busy = False
        if self._busy and not self._wait(deadline, None, None):
            return self._unanswered("the previous request")
        if not self.start():
            return _call(transport, batch, timeout, going_out)
        self._result = None
        self._done.clear()
        self._job = (transport, batch, timeout, going_out)
        self._busy = True
        self._go.set()
        if not self._wait(deadline, meanwhile, idle):
            return self._unanswered("the request")
        result = self._result
        assert result is not None
        return result

    def close(self) -> None:
        """End the thread once its current request (if any) is answered; it is a daemon, nothing waits."""
        self._stop = True
        self._go.set()

    def _wait(
        self, deadline: float, meanwhile: Meanwhile | None, idle: Callable[[float], None] | None
    ) -> bool:
        """Until the answer is there (True) or `deadline` passed (False), running `meanwhile`."""
        done = self._done
        while not done.is_set():
            pause = None if meanwhile is None else meanwhile()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not done.is_set():
                    return False
                break
            if pause is None:
                if idle is None:
                    done.wait(remaining)
                else:
                    idle(remaining)
            elif pause > 0:
                done.wait(min(pause, remaining))
        self._busy = False
        return True

    def _unanswered(self, what: str) -> SendResult:
        return SendResult(
            Outcome.RETRY,
            error=f"{what} got no answer from the sending thread in time",
        )  # it may still go out, and be stored, after we stopped waiting: `GoingOut` tells when it does

    def start(self) -> bool:
        """Start the thread if it is not running; False when no thread can be started (send inline)."""
        if self._thread is not None or not self._threaded:
            return self._threaded
        thread = WorkerThread(target=self._serve, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread" (interpreter exit, or the process's thread limit)
            self._threaded = False
            return False
        self._thread = thread
        return True

    def _serve(self) -> None:
        ident = threading.get_ident()
        WORKER_THREADS.add(ident)
        try:
            while not self._stop:
                if not self._go.wait(SENDER_IDLE_CHECK):
                    continue
                self._go.clear()
                job, self._job = self._job, None
                if job is None:
                    continue  # woken by close()
                self._result = _call(*job)
                self._done.set()
                self._notify()
        finally:
            WORKER_THREADS.discard(ident)


def _call(
    transport: Transport, batch: Batch, timeout: float | None, going_out: GoingOut | None
) -> SendResult:
    try:
        return transport.send(batch, timeout=timeout, going_out=going_out)
    except Exception as exc:  # a transport must translate its errors; if it does not, retry anyway
        return SendResult(Outcome.RETRY, error=f"transport error: {exc!r}")
