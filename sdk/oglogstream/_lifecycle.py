"""Process-wide hooks shared by every pipeline: the atexit drain, fork, and the SIGTERM drain.

* **atexit**: `drain_all` closes every live pipeline within one budget (the largest `shutdown_timeout`).
  `Exit.started` is then set: a record logged later (by an atexit hook registered before `import oglogstream`,
  which runs after ours) reopens its pipeline; those late records share a deadline of `shutdown_timeout` of
  their own, after the drain's (docs/sdk.md "Records after the atexit drain"). A logging handler's
  records then wait in its buffer, batched, for `logging.shutdown` (registered before our hook, so it runs
  later) to close the handler; any other record, or one after that, waits for its own delivery.
* **fork**: every pipeline is reset in the child (`Pipeline.after_fork_in_child`). A `multiprocessing` child
  ends with `os._exit` (no atexit), so a multiprocessing finalizer drains it on a normal end.
* **a pipeline built inside a multiprocessing child** (a Pool initializer under spawn or forkserver, the
  default start method from Python 3.14, or under fork when the parent had no handler):
  `adopt_child_exit_path` installs the same finalizer and SIGTERM drain at creation (no fork hook ran for it).
* **SIGTERM** (`drain_on_sigterm`, on by default): `docker stop`, systemd and Kubernetes end a process with
  SIGTERM, and `multiprocessing.Pool.__exit__` (terminate) ends children with it right after their work
  returned; with the default disposition the process dies at once and everything buffered is lost. So when a
  pipeline is built on the main thread (or inherited by a forked child) and SIGTERM still has its default
  disposition, a handler first drains every pipeline (within the largest `shutdown_timeout`; in a child
  FORK_TERM_BUDGET), then restores the default and re-raises the signal, so the process still dies of SIGTERM
  (exit status 143). An application's own SIGTERM handler is never replaced, and one installed later simply
  replaces ours (gunicorn's and uvicorn's do; uvicorn re-raises the signal to the previous handler, ours).
"""

from __future__ import annotations

import atexit
import logging  # before our atexit hook (the package __init__ already did, for app hooks)
import os
import signal
import sys
import threading
import time
import weakref
from typing import Any, Protocol

__all__ = [
    "FORK_TERM_BUDGET",
    "PIPELINES",
    "WORKER_THREADS",
    "Exit",
    "adopt_child_exit_path",
    "adopt_sigterm_drain",
    "drain_all",
    "join_sdk_threads",
]

#: Seconds a forked (or multiprocessing) child ended by SIGTERM spends delivering what it holds before it dies
#: of the signal (any other process: the largest `shutdown_timeout`).
FORK_TERM_BUDGET = 1.0

#: Thread idents of running workers: a record created on one of these threads is never shipped.
WORKER_THREADS: set[int] = set()


class _Drainable(Protocol):
    settings: Any

    def begin_close(self, deadline: float) -> None: ...

    def finish_close(self, deadline: float) -> bool: ...

    def after_fork_in_child(self) -> None: ...

    def sigterm_locks(self) -> tuple[Any, ...]: ...


class _Term:
    """Where the SIGTERM drain runs: a child (multiprocessing/fork) has FORK_TERM_BUDGET, since its parent
    (Pool.terminate, a supervisor) waits for it; any other process the largest `shutdown_timeout`."""

    child = False
    #: A forked child whose fork hook held the inherited drain back: armed on its first record
    #: (`arm_child_drain`).
    held_back = False


#: Every live pipeline (weakly: a handler that is garbage collected is not kept alive by this).
PIPELINES: weakref.WeakSet[_Drainable] = weakref.WeakSet()


class Exit:
    """Set by the atexit drain; `deadline` is the one budget of every record logged after it."""

    started = False
    deadline = float("inf")
    #: The atexit drain is running on the main thread (a SIGTERM then waits for it, see `_drain_on_sigterm`).
    draining = False
    #: A SIGTERM arrived during that drain: re-raised once the drain is over.
    terminate = False
    #: The drain runs from the interpreter's atexit (not a multiprocessing finalizer followed by os._exit):
    #: `logging.shutdown`, registered before it, runs later and closes every logging handler again.
    logging_shutdown_follows = False


def drain_all(budget: float) -> None:
    """Close every live pipeline within one shared `budget` (seconds)."""
    _drain_until(time.monotonic() + budget)


def _drain_until(deadline: float) -> None:
    pipelines = list(PIPELINES)
    for pipeline in pipelines:  # start them all first so they drain in parallel
        pipeline.begin_close(deadline)
    for pipeline in pipelines:
        pipeline.finish_close(deadline)


def join_sdk_threads(deadline: float) -> None:
    """Wait until `deadline` (time.monotonic()) for the SDK's own threads that are still alive (a closed
    worker's sending thread ends on its own, nothing else waits for it) to end.

    Why at exit: a thread the process was monkey-patched under after it started (gevent `patch_all()` after
    the handler's worker ran) waits in its own gevent hub, a greenlet. A daemon thread still running when the
    interpreter finalizes is ended with `pthread_exit` as soon as it wakes (CPython < 3.14, gh-87135), which
    unwinds through greenlet's C++ switch frames, whose destructors release Python objects without the GIL
    while the main thread's final garbage collection runs: a SIGSEGV at exit (the exit-drain child of
    `tests/sdk/test_sdk_gevent.py`: 4 of 100 runs, 26 of 200 beside two CPU burners; 0 of 500 so joined). A
    thread still busy at the deadline (a request to a server that never answers) is left as before."""
    from ._sender import WorkerThread  # here: _sender imports this module

    me = threading.current_thread()
    for thread in threading.enumerate():
        if isinstance(thread, WorkerThread) and thread is not me and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))


def _atexit_drain() -> None:
    Exit.started = True
    pipelines = list(PIPELINES)
    if not pipelines:
        return
    Exit.draining = True
    try:
        deadline = time.monotonic() + max(p.settings.shutdown_timeout for p in pipelines)
        _drain_until(deadline)
        join_sdk_threads(deadline)
    finally:
        Exit.draining = False
        if Exit.terminate:
            _die_of_sigterm()


def _interpreter_exit() -> None:
    Exit.logging_shutdown_follows = True
    _atexit_drain()


class _MultiprocessingHook:
    """Registered with multiprocessing's after-fork registry (which must hold a weak-referenceable object)."""

    registered = False
    #: The process whose multiprocessing finalizer registry holds our drain (one drain per process).
    finalizer_pid = -1

    @staticmethod
    def run(_: object) -> None:
        # Runs in a multiprocessing child after it cleared the finalizers it inherited. Such a child ends
        # with os._exit(), which skips atexit, but it does run finalizers with an exit priority.
        _register_finalizer()


def _register_finalizer() -> None:
    if _MultiprocessingHook.finalizer_pid == os.getpid():
        return
    import multiprocessing.util

    _MultiprocessingHook.finalizer_pid = os.getpid()
    multiprocessing.util.Finalize(None, _atexit_drain, exitpriority=0)


def adopt_sigterm_drain(wanted: bool) -> None:
    """Called when a pipeline is built (`wanted` = its `drain_on_sigterm`): install the SIGTERM drain if
    SIGTERM has its default disposition and this is the main thread. Off the main thread Python cannot set
    a signal handler: nothing is installed (a later pipeline built on the main thread still installs it)."""
    if wanted:
        _install_sigterm_drain()


def adopt_child_exit_path(drain_on_sigterm: bool = True) -> bool:
    """Called when a pipeline is built. In a multiprocessing child (any start method) whose pipelines were
    not inherited through a fork hook, install what a forked child gets: the multiprocessing finalizer (the
    child may end with os._exit, which skips atexit) and the SIGTERM drain (`Pool.__exit__` terminates its
    workers). Returns True in such a child, so the pipeline also sends after FORK_LINGER as a forked one does.
    Idempotent; outside multiprocessing children it does nothing and returns False."""
    mp = sys.modules.get("multiprocessing")  # only a process using multiprocessing can be its child
    try:
        in_child = mp is not None and mp.parent_process() is not None
    except Exception:  # an unusual multiprocessing state: behave as a plain process
        return False
    if not in_child:
        return False
    _register_finalizer()
    _Term.child = True
    if drain_on_sigterm:
        _install_sigterm_drain()
    return True


_MP_HOOK = _MultiprocessingHook()


def _drain_on_sigterm(signum: int, frame: object) -> None:
    if Exit.draining:
        # The interrupted main thread is inside the exit drain (e.g. a multiprocessing child that got its
        # sentinel just before terminate()): a second drain would wait for locks that drain holds. Let it
        # finish within its own deadline, then die of the signal.
        Exit.terminate = True
        return
    budget = _term_budget()
    _let_go_of_locks()
    # Drained on a helper thread and waited for with a deadline: this handler may have interrupted the main
    # thread inside one of logging's locks, or one of another library the drain needs.
    drainer = threading.Thread(target=drain_all, args=(budget,), daemon=True)
    drainer.start()
    drainer.join(budget + 0.2)
    _die_of_sigterm()


def _let_go_of_locks() -> None:
    """Release every lock the drain may need that the interrupted main thread holds: each pipeline's, and
    logging's module lock and handler locks (a worker takes the first on a level-cache miss, and the second
    when its HTTP client's log lines reach a console handler). All are reentrant, so `_is_owned` says whether
    this thread holds one. The interrupted frame never resumes (the process dies of the signal after the
    drain): without this, a SIGTERM inside `handle`, `stats()`, `flush()`, the asyncio task's bookkeeping,
    `dictConfig()` or a console handler's `emit` waited out the whole budget and lost everything buffered.
    The frame was inside a short critical section: what it had half done is at worst one record or one
    batch's bookkeeping."""
    locks: list[Any] = [getattr(logging, "_lock", None)]
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        locks.append(getattr(handler, "lock", None))
    for pipeline in list(PIPELINES):
        locks.extend(pipeline.sigterm_locks())
    for lock in locks:
        owned = getattr(lock, "_is_owned", None)
        release = getattr(lock, "_release_save", None)
        try:
            if owned is not None and release is not None and owned():
                release()  # every level of a nested hold, as threading.Condition.wait does
        except Exception:  # a lock of another kind (a custom createLock): the drain keeps its deadline
            pass


def arm_child_drain() -> None:
    """A forked child's pipeline starts its worker (its first record): install the SIGTERM drain its fork
    hook held back. Only from the main thread (Python sets signal handlers there alone): a child whose first
    record comes from another thread arms it on a later worker start from the main thread, if any."""
    if _Term.held_back and threading.current_thread() is threading.main_thread():
        _Term.held_back = False
        _install_sigterm_drain()


def _term_budget() -> float:
    """Seconds the SIGTERM drain may take (see `_Term`)."""
    if _Term.child:
        return FORK_TERM_BUDGET
    return max((p.settings.shutdown_timeout for p in list(PIPELINES)), default=0.0)


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # die of the signal, as without this handler


def _install_sigterm_drain() -> None:
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _drain_on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM on this platform
        pass


def _after_fork_in_child() -> None:
    WORKER_THREADS.clear()
    Exit.started = Exit.draining = Exit.terminate = Exit.logging_shutdown_follows = False
    Exit.deadline = float("inf")
    pipelines = list(PIPELINES)
    for pipeline in pipelines:
        pipeline.after_fork_in_child()
    if not pipelines:
        return
    _Term.child = True
    if any(p.settings.drain_on_sigterm for p in pipelines):
        # A child with no record has nothing to drain: until its first record (`arm_child_drain`) SIGTERM
        # keeps its default disposition, so it dies at once whatever the main thread is blocked in. The
        # drain handler runs only when the main thread next checks for signals: a Pool worker blocked in
        # `SemLock.acquire` when terminate() came could miss it and hang the parent's `Pool.__exit__`
        # (docs/sdk.md "A SIGTERM the main thread misses").
        _Term.held_back = True
        try:
            if signal.getsignal(signal.SIGTERM) is _drain_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM here
            pass
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and not _MultiprocessingHook.registered:
        # Not imported by us: only a process using multiprocessing has it, and only a multiprocessing child
        # runs this registry (in Process._bootstrap, right after this hook); it is inherited by later forks.
        _MultiprocessingHook.registered = True
        mp_util.register_after_fork(_MP_HOOK, _MultiprocessingHook.run)


atexit.register(_interpreter_exit)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
