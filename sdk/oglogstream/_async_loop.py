"""Which event loop runs the sending task of an `AsyncOgLogClient` (`_async`), and starting it there.

Separate from the client's public API because this is the one part that depends on where the caller is: the
task runs on the running loop of the first event (or flush/aclose); when its loop has ended, the next event
on a running loop starts a new task there. An event logged where no loop runs (a thread, code after
asyncio.run(), a program with no loop) starts the task on the last loop the client used if that loop still
runs (call_soon_threadsafe), else on a loop of the client's own in a daemon thread ("oglogstream-async-loop").
A task whose loop was closed without running it to the end is taken over (`_take_over_from_dead_loop`), and
flush()/aclose() called from another loop run on the task's own (`_loop_of_other_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from . import _diag
from ._async_sender import AsyncSender
from ._transport import AsyncHttpTransport

__all__ = ["LoopBinding"]


class LoopBinding(AsyncSender):
    """The loop side of the client's state: which loop the sending task runs on, and starting it there."""

    #: Serialises starting the task: a thread's scheduled start and a flush/aclose may race.
    _start_lock: threading.RLock
    #: The loop the client last ran (or was created) on: a thread's event starts the task there.
    _home: asyncio.AbstractEventLoop | None
    #: A start is scheduled on `_home` (or on an own loop): two threads logging at once schedule one.
    _start_scheduled: bool
    #: An own loop (`_own_loop`) that is ending: a start scheduled on it goes to a new loop instead.
    _retired: asyncio.AbstractEventLoop | None
    #: The thread whose loop runs the sending task (see `_async_exit`).
    _loop_thread: int | None

    def _start(self, *, exiting: bool = False) -> None:
        """Start the sending task on the running loop (from `log`, `flush` or `aclose`). With no loop in
        this thread, start it on the client's last loop if that still runs; else later (or at exit).
        `exiting`: the exit drain, for which a task on a loop that no longer runs is dead too."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._start_on_home()
            return
        with self._start_lock:
            if self._task is not None:
                old = self._loop
                dead = old is not None and (old.is_closed() or (exiting and not old.is_running()))
                if old is loop or not dead:
                    return  # running here already, or on a loop of another thread (`_signal` reaches it)
                self._take_over_from_dead_loop()
            self._loop = self._home = loop
            self._loop_thread = threading.get_ident()
            self._wake = asyncio.Event()
            if self._transport is None:
                self._transport = AsyncHttpTransport(self.settings)
            self._generation += 1
            self._task = loop.create_task(self._run(self._generation), name="oglogstream-async-sender")

    def _start_on_home(self) -> None:
        if self._task is not None and not self._task_is_dead():
            return
        with self._lock:  # two threads logging at once schedule one start
            if self._start_scheduled:
                return
            self._start_scheduled = True
        home = self._home
        if home is not None and not home.is_closed() and home.is_running():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: use a loop of our own
                home.call_soon_threadsafe(self._scheduled_start)
                return
        threading.Thread(target=self._own_loop, name="oglogstream-async-loop", daemon=True).start()

    def _task_is_dead(self) -> bool:
        loop = self._loop
        return loop is None or loop.is_closed()

    def _scheduled_start(self) -> None:
        retired = asyncio.get_running_loop() is self._retired
        try:
            if not retired and (self._intake or self._pending):
                self._start()
        finally:
            self._start_scheduled = False
        if retired and (self._intake or self._pending):  # the own loop is ending: start on a new one
            self._start_on_home()

    def _own_loop(self) -> None:
        """A daemon thread's loop for the sending task, when no loop of the application can be used. It
        lives until the task ends (aclose, or the exit drain)."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            self._scheduled_start()
            while True:  # a thread's event may start a new task here while the last one ends
                task = self._task
                if task is not None and task.get_loop() is loop and not task.done():
                    await asyncio.wait({task})
                    continue
                with self._lock:  # from now on a thread's event starts another loop, not this one
                    if self._home is loop:
                        self._home = None
                    self._retired = loop
                await asyncio.sleep(0)  # run a start scheduled just before
                task = self._task
                if task is None or task.get_loop() is not loop or task.done():
                    return

        try:
            asyncio.run(main())
        except Exception as exc:
            self._start_scheduled = False
            _diag.report("worker", f"asyncio client's own loop stopped: {exc!r}")

    def _signal(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:  # called from another thread: asyncio.Event is not thread-safe
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(wake.set)

    def _take_over_from_dead_loop(self) -> None:
        """The sending task's loop was closed without running it to the end (no asyncio.run cleanup), at
        exit no longer runs, or is frozen under the SIGTERM handler: that task never runs again
        (`_generation` keeps it off the state). What it had not settled of its batch is sent first by the
        next task (`_carry_over`), then the buffered rest. Its transport belongs to the dead loop: dropped
        unclosed."""
        with self._lock:  # stats() sees the carried records in flight throughout
            self._carry_over()
        self._reset_task()

    def _loop_of_other_thread(self) -> asyncio.AbstractEventLoop | None:
        """The loop the sending task runs on, if that is not the caller's and it runs (in another thread):
        flush() and aclose() then run there, since a task is awaited only on its own loop."""
        loop = self._loop
        if self._task is None or loop is None or loop is asyncio.get_running_loop() or not loop.is_running():
            return None
        return loop
