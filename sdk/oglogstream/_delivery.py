"""Delivery policy shared by the worker thread (`_worker`) and the asyncio client (`_async`).

One copy of: what an answer means for a batch and the counters behind `Stats` (`Ledger`), the batch in
flight (`InFlight`), and when to try again (`RetryPolicy`, tenacity-based); encoding the intake is `_ingest`,
the state both drivers hold `_core.DeliveryCore`. The two drivers differ only in how they wait and send (a
thread with `Event.wait`, or a task with `await`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import tenacity

from . import _diag
from ._buffer import Batch, Pending
from ._settings import MAX_RETRY_AFTER, Settings
from ._stats import DROP_REASONS, LOSS_REMEDIES, Stats
from ._transport import Outcome, SendResult

__all__ = ["AnyLock", "GivenUp", "InFlight", "Ledger", "RetryPolicy"]

#: The pipeline's lock: reentrant in both drivers (signal handlers; `_lifecycle._let_go_of_locks`).
AnyLock: TypeAlias = "threading.Lock | threading.RLock"


class GivenUp(Exception):
    """Raised into a request about to be written whose batch was given up (counted lost) meanwhile."""


class InFlight:
    """The batch being sent and the 413 halves still to send: its records count against the buffer's bounds,
    and `flush()` waits until its first seq is settled. Only the delivering thread/task touches it, except
    the callbacks of `going_out` (the sending thread).

    "Unconfirmed" follows the part's requests, not its last attempt: once a request of a part went out
    (its first byte was about to be written) and no 2xx/4xx answer to it was seen, the server may hold the
    part, whatever later attempts meet (a refusal, a 503, a backoff the close deadline falls in), until the
    part is settled or split. Found by review: a request stored whose answer was lost, then a refused retry,
    was counted `shutdown` while the server held every record."""

    __slots__ = ("_out", "_out_part", "_todo", "current", "first_seq", "nbytes", "records", "unconfirmed")

    def __init__(self) -> None:
        self.records = 0
        self.nbytes = 0
        #: Records of the current part the server may have stored (see the class docstring): counted
        #: `unconfirmed` if given up. A part none of whose requests went out stays at 0.
        self.unconfirmed = 0
        self.first_seq: int | None = None
        #: The part being sent (`next()`); None once given up or cleared.
        self.current: Batch | None = None
        self._todo: list[Batch] = []
        #: Requests of `_out_part` that went out and whose answer was not seen (yet, or ever).
        self._out = 0
        self._out_part: Batch | None = None

    def begin(self, batch: Batch, parts: tuple[Batch, Batch] | None = None) -> None:
        """`batch` is in flight; `parts` (its 413 halves) are what to send of it, first half first."""
        self._todo = [batch] if parts is None else [parts[1], parts[0]]
        self.records = len(batch)
        self.nbytes = batch.nbytes

    def next(self) -> Batch | None:
        """The part to send now (the first half of a split goes first, so order is kept)."""
        if not self._todo:
            return None
        current = self._todo.pop()
        self.first_seq = current.first_seq
        self.current = current
        # A part carried over to a new sender (`resume`) keeps what its earlier requests may have stored.
        self.unconfirmed = len(current) if self._out_part is current and self._out else 0
        return current

    def going_out(self, current: Batch, lock: AnyLock) -> Callable[[], None]:
        """The `going_out` callback for one attempt of `current`: the transport calls it just before the
        request's first byte is written (from there on the server may store it). It raises `GivenUp` when
        `current` was given up meanwhile (its records are counted `shutdown`: they must not be sent after
        all). Once per attempt (a proxy's CONNECT request may call it first)."""
        fired = False

        def going_out() -> None:
            nonlocal fired
            with lock:
                if self.current is not current:
                    raise GivenUp("the batch was given up at the close deadline")
                if not fired:
                    fired = True
                    if self._out_part is not current:
                        self._out_part, self._out = current, 0
                    self._out += 1
                self.unconfirmed = len(current)

        return going_out

    def attempted(self, current: Batch, result: SendResult, lock: AnyLock) -> None:
        """After an attempt of `current`: a 2xx or 4xx answer closes the request it answers; a request that
        went out without an answer, or with a 5xx, keeps `current` unconfirmed (see the class docstring). A
        5xx does not say the batch was not stored: the stack's own 503 "the request may have been stored" when
        its broker's acknowledgement is lost, a proxy's 502/504 after it forwarded the body (found by
        review: counted `shutdown` while the server held all 50)."""
        with lock:
            if self.current is not current:
                return
            out = self._out if self._out_part is current else 0
            if result.status is not None and result.status < 500 and out:
                out = self._out = out - 1
            self.unconfirmed = len(current) if out else 0

    def settle(self, current: Batch, result: SendResult, ledger: Ledger) -> None:
        """Book the answer for `current` (under `ledger.lock`: sent/dropped and in flight change together, so
        a `stats()` snapshot counts each record once); a 413 puts its halves back to be sent next."""
        with ledger.lock:
            halves = ledger.settle(current, result)
            if halves is None:
                self.records -= len(current)
                self.nbytes -= current.nbytes
            else:
                first, second = halves
                self._todo.extend((second, first))
            self.first_seq = self._todo[-1].first_seq if self._todo else None
            self.unconfirmed = self._out = 0  # settled, or split into halves with requests of their own
            self._out_part = None

    def take(self, pending: Pending, settings: Settings, batch_id: str, lock: AnyLock) -> Batch:
        """Cut the next batch from `pending` and book it as in flight, in one step under `lock` (so a
        `stats()` snapshot never sees the records in both places, or in neither)."""
        with lock:
            first_seq, lines = pending.cut(settings.batch_size, settings.batch_bytes)
            batch = Batch(batch_id, first_seq, lines)
            self.begin(batch)
            pending.moving = 0
        return batch

    def clear(self) -> None:
        """Nothing in flight any more (reset after fork, or given up at the deadline)."""
        self.records = self.nbytes = self.unconfirmed = self._out = 0
        self.first_seq = self.current = self._out_part = None
        self._todo = []

    def give_up(self, ledger: Ledger, held: int) -> None:
        """Count `held` records (what a pipeline holds, these in flight included) as lost at the close
        deadline, under `ledger.lock`: the in-flight part that may have been stored as `unconfirmed`, the
        rest as `shutdown`."""
        unconfirmed = min(self.unconfirmed, self.records, held)
        self.current = None  # a request of it that is not written yet is not written at all (`going_out`)
        ledger.count("unconfirmed", unconfirmed)
        ledger.count("shutdown", held - unconfirmed)

    def oldest_unsettled(self, pending: Pending) -> int:
        """The seq of the oldest record not yet settled, in flight or pending: flush waits up to it."""
        oldest = pending.first_seq if pending.lines else pending.next_seq
        if self.first_seq is not None:
            oldest = min(oldest, self.first_seq)
        return oldest


class Ledger:
    """The counters behind `Stats`. Written by the delivering thread/task; `dropped` also by callers,
    always under `lock` (a `threading.Lock` or `RLock`, because callers may be on any thread)."""

    def __init__(self, lock: AnyLock, service: str) -> None:
        self.lock = lock
        self.service = service
        self.sent = 0
        self.retried = 0
        self.last_error: str | None = None
        #: When `last_error` was set (Unix time, s), and when the current run of failed requests began (None
        #: while delivery works): `Stats.last_error_at` / `Stats.failing_since`.
        self.last_error_at: float | None = None
        self.failing_since: float | None = None
        #: The run's start on the monotonic clock, whether its "delivery failing" line was printed (only
        #: then is its recovery announced), and the loss counts as of the last accepted batch (the recovery
        #: line's losses: those of an outage before its first failed answer, an overflow, are named too).
        self._failing_clock = 0.0
        self._failure_announced = False
        self._dropped_before: dict[str, int] = {}
        #: Records the pipeline holds (`Stats.queued`), read under `lock`; set by the driver.
        self.queued: Callable[[], int] = lambda: 0
        self.dropped: dict[str, int] = {}
        self._reported: set[str] = set()
        #: Loss is never silent: reasons announced so far, losses since the last summary, when one is due.
        self._announced: set[str] = set()
        self._unreported: dict[str, int] = {}
        self._summary_due = 0.0

    def count(self, reason: str, n: int) -> None:
        """Count `n` lost records; the caller holds `lock`. The first loss of each reason is announced on
        stderr at once (reason, meaning, the setting that avoids it); later ones in a summary at most every
        `_diag.DIAG_INTERVAL` seconds (and at close, see `summarize_losses`)."""
        if not n:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + n
        now = time.monotonic()
        if reason not in self._announced:
            self._announced.add(reason)
            if not self._summary_due:
                self._summary_due = now + _diag.DIAG_INTERVAL
            _diag.write(
                f"[{self.service}] lost {n} record(s), reason {reason!r}: {DROP_REASONS.get(reason, reason)}."
                f" To avoid it: {LOSS_REMEDIES.get(reason, 'see docs/sdk.md')}. Later losses are summarised"
                f" at most every {_diag.DIAG_INTERVAL:g} s; stats().dropped has the exact counts."
            )
            return
        self._unreported[reason] = self._unreported.get(reason, 0) + n
        if now >= self._summary_due:
            message = self._take_summary(now)
            if message:
                _diag.write(message)

    def _take_summary(self, now: float) -> str | None:
        self._summary_due = now + _diag.DIAG_INTERVAL
        if not self._unreported:
            return None
        lost = ", ".join(f"{reason}: {n}" for reason, n in sorted(self._unreported.items()))
        self._unreported.clear()
        return f"[{self.service}] lost more records since the last report ({lost}); totals: {self.dropped}"

    def summarize_losses(self) -> None:
        """Print the losses not yet reported (called when a worker/task stops): nothing goes unmentioned."""
        with self.lock:
            message = self._take_summary(time.monotonic())
        if message:
            _diag.write(message)

    def count_locked(self, reason: str, n: int) -> None:
        with self.lock:
            self.count(reason, n)

    def snapshot(
        self, *, queued: int, buffered_bytes: int, intake_bytes: int, spooled: int = 0, adopted: int = 0
    ) -> Stats:
        """A `Stats`; the caller holds `lock` and computed `queued` under it (one consistent moment)."""
        return Stats(
            intake_bytes=intake_bytes,
            queued=queued,
            sent=self.sent,
            retried=self.retried,
            dropped=dict(self.dropped),
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            failing_since=self.failing_since,
            buffered_bytes=buffered_bytes,
            spooled=spooled,
            adopted=adopted,
        )

    def report_once(self, topic: str, message: str) -> None:
        """`message` on stderr, the first time `topic` comes up, as `[service] message` (whose it is)."""
        if topic not in self._reported:
            self._reported.add(topic)
            _diag.report(topic, f"[{self.service}] {message}")

    def note_error(self, message: str) -> None:
        """`message` is the most recent problem (`Stats.last_error`), as of now (`last_error_at`)."""
        self.last_error = message
        self.last_error_at = time.time()

    def _failing(self) -> None:
        """A request did not deliver its batch (its error just noted): a run of failures begins then, unless
        one is under way. The caller holds `lock`."""
        if self.failing_since is None:
            self.failing_since = self.last_error_at or time.time()
            self._failing_clock = time.monotonic()
            self._failure_announced = False

    def on_retry(self, result: SendResult | None) -> None:
        """A retryable failure: the same batch will be sent again."""
        with self.lock:
            self.retried += 1
            if result is None or not result.error:
                return
            self.note_error(result.error)
            self._failing()
        if _diag.report("retry", f"[{self.service}] delivery failing, will retry: {result.error}"):
            self._failure_announced = True

    def _recovered(self) -> None:
        """A batch was accepted (its refusals counted): a run of failures is over. Announced (one line,
        naming the records lost since the last accepted batch) only when the run's "delivery failing" line
        was printed, so the recovery lines are rate-limited with those and stderr's last word on delivery is
        never a failure that is over. The caller holds `lock`."""
        announce = self.failing_since is not None and self._failure_announced
        self.failing_since = None
        if announce:
            self._announce_recovery()
        if self.dropped != self._dropped_before:
            self._dropped_before = dict(self.dropped)

    def _announce_recovery(self) -> None:
        lost = {
            reason: n - self._dropped_before.get(reason, 0)
            for reason, n in sorted(self.dropped.items())
            if n > self._dropped_before.get(reason, 0)
        }
        losses = (
            "lost meanwhile: " + ", ".join(f"{n} {reason}" for reason, n in lost.items())
            + " (stats().dropped has the totals)"
            if lost
            else "none lost"
        )
        elapsed = time.monotonic() - self._failing_clock
        waiting = self.queued()
        _diag.write(
            f"[{self.service}] delivery recovered after {elapsed:.1f} s; {waiting} records were waiting,"
            f" {losses}"
        )

    def settle(self, batch: Batch, result: SendResult) -> tuple[Batch, Batch] | None:
        """Account for a final (non-RETRY) answer; returns the halves to send instead on a splittable 413.
        The caller holds `lock`."""
        outcome = result.outcome
        if outcome is Outcome.OK:
            # The answer's count, not its list's length: the stack lists only the first refusals.
            rejected = result.rejected_count
            self.sent += len(batch) - rejected
            if rejected:
                self.count("rejected", rejected)
                message = f"server rejected {rejected} of {len(batch)} entries"
                if result.rejected:
                    index, error = result.rejected[0]
                    # repr, as HTTP errors are quoted: the server's text must not forge lines or send
                    # escape sequences to the application's stderr
                    message += f"; first: #{index}: {error!r}"
                self.report_once("rejected", message)
            if result.unread is not None:
                self.report_once(
                    "unread_answer",
                    f"the server accepted a batch of {len(batch)} records with an answer"
                    f" that could not be read ({result.unread}): all counted as sent; entries it may list as"
                    " refused are not counted",
                )
            self._recovered()  # after the refusals: the recovery line names them
            return None
        if outcome is Outcome.TOO_LARGE and len(batch) > 1:
            return batch.halves()
        reason = "too_large" if outcome is Outcome.TOO_LARGE else "client_error"
        self.note_error(result.error or f"HTTP {result.status}")
        if reason == "client_error":  # the whole batch refused (a bad key, ...): delivery is not working
            self._failing()
        self.count(reason, len(batch))
        self.report_once(f"{reason}:{result.status}", f"dropped {len(batch)} records: {result.error}")
        return None


class RetryPolicy:
    """Exponential backoff with full jitter capped at `backoff_max`; a server's Retry-After can lengthen a
    wait (up to `MAX_RETRY_AFTER`) but never shorten it below `backoff_initial` or the jittered backoff."""

    def __init__(self, settings: Settings) -> None:
        self._floor = settings.backoff_initial
        self._jitter = tenacity.wait_random_exponential(
            multiplier=settings.backoff_initial, max=settings.backoff_max
        )

    def delay(self, attempt: int, result: SendResult | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) that answered `result`."""
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # only attempt_number is read
        state.attempt_number = attempt
        backoff = float(self._jitter(state))
        if result is not None and result.retry_after is not None:
            # A Retry-After of 0 (or nan, negative, a past date: all parse to <= 0) repeated by a server
            # would otherwise make a tight request loop: the server may ask us to wait longer, not less.
            return max(min(result.retry_after, MAX_RETRY_AFTER), self._floor, backoff)
        return backoff

    def tenacity_arguments(
        self, ledger: Ledger, stop: Callable[[tenacity.RetryCallState], bool]
    ) -> dict[str, Any]:
        """Keyword arguments for `tenacity.Retrying` / `AsyncRetrying` (the caller adds its own `sleep`)."""

        def wait(state: tenacity.RetryCallState) -> float:
            outcome = state.outcome
            result = outcome.result() if outcome is not None and not outcome.failed else None
            return self.delay(state.attempt_number, result)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            ledger.on_retry(outcome.result() if outcome is not None and not outcome.failed else None)

        return {
            "stop": stop,
            "wait": wait,
            "retry": tenacity.retry_if_result(lambda result: result.outcome is Outcome.RETRY),
            "before_sleep": before_sleep,
            "retry_error_callback": lambda state: state.outcome.result() if state.outcome else None,
        }
