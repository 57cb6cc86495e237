"""Spool x 413 x close(): every record is delivered once or counted lost, never both, never twice under two
batch ids; a 413's halves live in the spool (a split record once anything of the frame settled), so a close
that gives up, a restart, or a kill -9 at any point leaves them spooled for the next process."""

from __future__ import annotations

import collections
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from oglogstream._buffer import Batch
from oglogstream._spool import Spool

from .capture_server import BlackHoleServer

ROOT = Path(__file__).resolve().parents[2]
#: (phase, batch id, entries) -> HTTP status, and seconds to wait before answering.
Policy = Callable[[int, str, int], int]


class SplitServer:
    """A real local HTTP server whose answers a test decides per request; records what it stored."""

    def __init__(self) -> None:
        self.phase = 1
        self.policy: Policy = lambda phase, bid, n: 200
        self.delay = 0.0
        self.rows: collections.Counter[str] = collections.Counter()
        self.batch_ids: dict[str, set[str]] = collections.defaultdict(set)
        self.requests: list[tuple[int, str, int, int]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                bid = str(self.headers.get("X-Oglog-Batch-Id"))
                messages = [json.loads(line)["message"] for line in body.splitlines() if line.strip()]
                if owner.delay and owner.phase == 1:
                    time.sleep(owner.delay)
                status = owner.policy(owner.phase, bid, len(messages))
                with owner.lock:
                    owner.requests.append((owner.phase, bid, len(messages), status))
                    if status == 200:
                        for message in messages:
                            owner.rows[message] += 1
                            owner.batch_ids[message].add(bid)
                out = json.dumps({"accepted": len(messages)}).encode() if status == 200 else b'{"error":"x"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, predicate: Callable[[tuple[int, str, int, int]], bool]) -> int:
        with self.lock:
            return sum(1 for request in self.requests if predicate(request))

    def assert_once_each(self, count: int) -> None:
        """Every message stored, and each under one batch id only (a resend under the same id is the
        server's to de-duplicate; one under another id would be a duplicate row)."""
        assert set(self.rows) == {f"m{i}" for i in range(count)}
        assert [m for m, ids in self.batch_ids.items() if len(ids) > 1] == []


@pytest.fixture
def split_server() -> Iterator[SplitServer]:
    server = SplitServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


CHILD = r"""
import json, logging, os, signal, sys, threading, time
from oglogstream import OgLogHandler
url, spool, n, mode, close_t, batch = sys.argv[1:7]
n, close_t, batch = int(n), float(close_t), int(batch)
h = OgLogHandler(url, "split", spool_dir=spool, flush_interval=0.02, batch_size=batch)
log = logging.getLogger("split"); log.propagate = False; log.setLevel(20); log.addHandler(h)
calls = [0]; worst = [0]; stop = [False]
def sample():  # every snapshot between the calls made before and after it
    # Own spooled records are queued (and spooled) while the spool is open, only spooled after a clean
    # close; adopted ones only spooled. A process here either logs or adopts, never both: max() is exact.
    while not stop[0]:
        before = calls[0]; s = h.stats(); after = calls[0]
        total = s.sent + sum(s.dropped.values()) + max(s.queued, s.spooled) - s.adopted
        if s.queued < 0 or not before <= total <= after:
            worst[0] += 1
        time.sleep(0.001)
if mode.startswith(("log", "burst")):
    threading.Thread(target=sample, daemon=True).start()
    def work(k, step, pause):
        for i in range(k, n, step):
            log.info("m%d", i); calls[0] += 1; time.sleep(pause)
    if mode.startswith("burst"):  # one thread, no pause: one batch of up to batch_size records
        work(0, 1, 0)
    else:
        threads = [threading.Thread(target=work, args=(k, 3, 0.002)) for k in range(3)]
        [t.start() for t in threads]; [t.join() for t in threads]
    print("LOGGED", flush=True)
    if mode.endswith("-kill"):
        sys.stdin.readline()
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
    ok = h.close(close_t)
    stop[0] = True
elif mode == "adopt-close":  # adopt, let the parent watch, close when told
    threading.Thread(target=sample, daemon=True).start()
    print("LOGGED", flush=True)
    sys.stdin.readline()
    ok = h.close(close_t)
    stop[0] = True
else:  # drain: wait until what was adopted is sent
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (h.stats().adopted and not h.stats().spooled):
        time.sleep(0.05)
    ok = h.close(close_t)
s = h.stats()
print(json.dumps({"ok": ok, "sent": s.sent, "dropped": s.dropped, "queued": s.queued, "spooled": s.spooled,
                  "adopted": s.adopted, "bad_snapshots": worst[0]}), flush=True)
"""


class Child:
    """One real process logging through a spooled handler (see CHILD); `go()` lets it close (or die)."""

    def __init__(
        self, server: SplitServer | BlackHoleServer, spool: Path, n: int, mode: str, close: float, batch: int
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.url, str(spool), str(n), mode, str(close), str(batch)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if mode != "drain":
            assert self.proc.stdout.readline().strip() == "LOGGED"

    def go(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.result()

    def result(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        try:
            out = self.proc.stdout.read()
            self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else None


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _too_big_over(limit: int) -> Policy:
    return lambda phase, bid, n: 413 if n > limit else 200


def _half_then_outage(phase_of_split: int) -> Policy:
    """413 for the whole batch, 200 for its first half (`<id>a`), 503 for the second (`<id>b`)."""

    def policy(phase: int, bid: str, n: int) -> int:
        if phase != phase_of_split:
            return 503 if phase < phase_of_split else 200
        if bid.endswith("a"):
            return 200
        if bid.endswith("b"):
            return 503
        return 413

    return policy


@pytest.mark.parametrize("second_server", ["accepts all", "413 over 8 entries too"])
def test_413_halves_in_flight_at_the_close_deadline_stay_spooled_not_lost(
    split_server: SplitServer, tmp_path: Path, second_server: str
) -> None:
    """spool_slow.py 413 300 1.0: a close that gives up during 413 halves counts nothing lost; the next
    process sends exactly the rest (before: 20 records counted lost AND delivered)."""
    split_server.policy = _too_big_over(8)
    split_server.delay = 0.04  # as the reviewer's server answered: the deadline falls amid the halves
    first = Child(split_server, tmp_path, 300, "log", 1.0, 20).go()
    assert first is not None and first["bad_snapshots"] == 0
    assert first["dropped"] == {}
    assert first["sent"] + first["spooled"] == 300 and first["spooled"] > 0
    split_server.phase = 2
    if second_server == "accepts all":
        split_server.policy = lambda phase, bid, n: 200
    second = Child(split_server, tmp_path, 0, "drain", 3.0, 20).result()
    assert second is not None and second["dropped"] == {}
    assert second["adopted"] == first["spooled"] and second["sent"] == first["spooled"]
    split_server.assert_once_each(300)


@pytest.mark.parametrize("ending", ["close", "kill -9"])
def test_a_settled_half_is_recorded_in_the_spool_and_never_resent_whole(
    split_server: SplitServer, tmp_path: Path, ending: str
) -> None:
    """spool413.py 200: 413, `<id>a` 200, `<id>b` 503, then close(0.5) or SIGKILL: the next process sends
    only `<id>b`, under that id (before: the whole frame again under `<id>`, 300 rows for 200 records)."""
    split_server.policy = _half_then_outage(1)
    child = Child(split_server, tmp_path, 200, "burst" if ending == "close" else "burst-kill", 0.5, 200)
    assert _wait(lambda: split_server.seen(lambda r: r[1].endswith("b") and r[3] == 503) >= 2)
    first = child.go()
    # (The burst is one batch of 200 as a rule, or a few: the first split into `a` stored, `b` refused.)
    stored = sum(split_server.rows.values())
    assert stored > 0
    if ending == "close":
        assert first is not None and first["bad_snapshots"] == 0
        assert (first["sent"], first["dropped"], first["queued"]) == (stored, {}, 0)
        assert first["spooled"] == 200 - stored
    split_server.phase = 2
    second = Child(split_server, tmp_path, 0, "drain", 3.0, 200).result()
    assert second is not None and second["dropped"] == {}
    assert second["adopted"] == second["sent"] == 200 - stored
    assert sum(split_server.rows.values()) == 200
    split_server.assert_once_each(200)
    def ids(phase: int, *statuses: int) -> set[str]:
        return {bid for p, bid, _, status in split_server.requests if p == phase and status in statuses}

    resent = ids(2, 200)
    assert ids(1, 503) <= resent  # the refused halves, each under the id it was refused with
    assert not resent & ids(1, 200, 413)  # never a stored half again, nor a split batch whole


def test_an_adopted_frame_split_by_413_keeps_stats_exact(split_server: SplitServer, tmp_path: Path) -> None:
    """spool_adopt413.py 200: a frame adopted from a killed process, split by 413 with one half settled:
    queued never goes below 0 (before: -100), adopted = sent + spooled, and a third process sends the rest."""
    split_server.policy = _half_then_outage(2)
    first = Child(split_server, tmp_path, 200, "burst-kill", 0.5, 200)
    assert _wait(lambda: split_server.seen(lambda r: r[3] == 503) >= 2)  # spooled, and refused twice
    first.go()
    split_server.phase = 2
    second_child = Child(split_server, tmp_path, 0, "adopt-close", 0.5, 200)
    assert _wait(lambda: split_server.seen(lambda r: r[0] == 2 and r[1].endswith("b") and r[3] == 503) >= 2)
    second = second_child.go()
    stored = sum(split_server.rows.values())
    assert stored > 0
    assert second is not None and second["bad_snapshots"] == 0 and second["dropped"] == {}
    assert (second["adopted"], second["sent"], second["queued"], second["spooled"]) == (
        200, stored, 0, 200 - stored
    )
    split_server.phase = 3
    third = Child(split_server, tmp_path, 0, "drain", 3.0, 200).result()
    assert third is not None and third["dropped"] == {}
    assert third["adopted"] == third["sent"] == 200 - stored
    assert sum(split_server.rows.values()) == 200
    split_server.assert_once_each(200)


def test_close_with_a_slow_server_spools_everything_unsent(split_server: SplitServer, tmp_path: Path) -> None:
    """spool_slow.py slow 300 0.3: every answer takes 0.3 s; at close's deadline everything unconfirmed is
    in the spool, counted spooled, not lost (before: `{shutdown: 260}`, 20 spooled)."""
    split_server.delay = 0.3
    first = Child(split_server, tmp_path, 300, "log", 0.3, 20).go()
    assert first is not None and first["bad_snapshots"] == 0
    assert first["dropped"] == {}
    assert first["sent"] + first["spooled"] == 300
    split_server.phase = 2
    second = Child(split_server, tmp_path, 0, "drain", 3.0, 20).result()
    assert second is not None and second["dropped"] == {} and second["sent"] == first["spooled"]
    # A batch whose answer came after the deadline is sent again under the same batch id (de-duplicated).
    split_server.assert_once_each(300)


def test_close_with_a_server_that_never_answers_spools_everything(
    split_server: SplitServer, tmp_path: Path
) -> None:
    """A server that hangs: close(0.5) gives up on the stuck request on time, yet nothing is lost - all 300
    records are spooled (the one batch on its way included), and the next process delivers each once."""
    hole = BlackHoleServer()
    try:
        first = Child(hole, tmp_path, 300, "log", 0.5, 20).go()
    finally:
        hole.close()
    assert first is not None and first["bad_snapshots"] == 0
    assert (first["sent"], first["dropped"], first["spooled"]) == (0, {}, 300)
    second = Child(split_server, tmp_path, 0, "drain", 3.0, 20).result()
    assert second is not None and (second["adopted"], second["sent"], second["dropped"]) == (300, 300, {})
    split_server.assert_once_each(300)
    assert sum(split_server.rows.values()) == 300


def _spool(directory: Path, lost: collections.Counter[str] | None = None) -> Spool:
    """A Spool as the worker makes one; `lost` collects what it counts as dropped, by reason."""
    lost = collections.Counter() if lost is None else lost

    def count(reason: str, n: int) -> None:
        lost[reason] += n

    return Spool(str(directory), max_bytes=1 << 30, max_age=3600.0, memory_mark=0, count=count)


def _lines(n: int) -> list[bytes]:
    return [b'{"message":"m%d"}\n' % i for i in range(n)]


def test_split_records_survive_a_restart_and_a_torn_one_leaves_the_state_before(tmp_path: Path) -> None:
    """The disk side of a kill -9 at any point: a complete split record is what the next process sends
    (the parts left, under their ids); a torn one is ignored, so the state before it stands (nothing is
    ever sent under an id other than the one it may already have been stored with)."""
    first = _spool(tmp_path)
    assert first.append(Batch("X-1", 0, _lines(8)))
    frame = first.head()
    assert frame is not None
    whole = Batch("X-1", 0, _lines(8))
    a, b = whole.halves()
    first.progress(frame, [a, b], 0)  # a 413: both halves left
    _aa, ab = a.halves()
    first.progress(frame, [ab, b], 2)  # X-1a got 413, X-1aa was stored
    assert first.records == 6 and first.own_records == 6
    size = os.path.getsize(frame.segment.path)
    first.close()  # releases the owner's lock: the next Spool adopts its segment, as after a kill -9

    adopting = _spool(tmp_path)
    adopting.scan(time.monotonic())
    assert adopting.records == 6 and adopting.adopted_total == 6
    head = adopting.head()
    assert head is not None
    parts = adopting.load(head)
    assert parts is not None
    assert [(p.batch_id, p.lines) for p in parts] == [("X-1ab", ab.lines), ("X-1b", b.lines)]
    adopting.close()

    [segment] = list(tmp_path.glob("*.seg"))
    with open(segment, "r+b") as f:  # the last split record torn by a kill -9 mid-write
        f.truncate(size - 5)
    lost: collections.Counter[str] = collections.Counter()
    torn = _spool(tmp_path, lost)
    torn.scan(time.monotonic())
    head = torn.head()
    assert head is not None
    parts = torn.load(head)
    assert parts is not None and [(p.batch_id, len(p)) for p in parts] == [("X-1a", 4), ("X-1b", 4)]
    assert torn.records == 8 and torn.adopted_total == 8 and not lost  # the state before; nothing lost
    torn.progress(head, parts[1:], 4)  # X-1a stored now: recorded after the cut-off torn tail
    torn.close()
    last = _spool(tmp_path, lost)
    last.scan(time.monotonic())
    head = last.head()
    assert head is not None
    parts = last.load(head)
    assert parts is not None and [(p.batch_id, len(p)) for p in parts] == [("X-1b", 4)]
    assert last.records == 4 and not lost
    last.close()


def test_a_split_frame_settled_to_the_end_is_gone_after_a_restart(tmp_path: Path) -> None:
    """Once every part is settled the frame is acked: its split records are dead and nothing is resent."""
    first = _spool(tmp_path)
    assert first.append(Batch("Y-1", 0, _lines(4)))
    assert first.append(Batch("Y-2", 4, _lines(2)))
    frame = first.head()
    assert frame is not None
    a, b = Batch("Y-1", 0, _lines(4)).halves()
    first.progress(frame, [a, b], 0)
    first.progress(frame, [b], 2)
    first.settle(frame)
    first.close()
    again = _spool(tmp_path)
    again.scan(time.monotonic())
    head = again.head()
    assert head is not None and again.records == 2
    parts = again.load(head)
    assert parts is not None and [p.batch_id for p in parts] == ["Y-2"]
    again.close()


def test_kill_9_right_after_the_413_resends_the_whole_batch_under_its_own_id(tmp_path: Path) -> None:
    """Killed between the 413 and its split record: nothing of the batch was stored, so the next process
    sends it whole, under its own id (the state before the torn record)."""
    first = _spool(tmp_path)
    assert first.append(Batch("Z-1", 0, _lines(4)))
    frame = first.head()
    assert frame is not None
    size = os.path.getsize(frame.segment.path)
    first.progress(frame, list(Batch("Z-1", 0, _lines(4)).halves()), 0)
    first.close()
    [segment] = list(tmp_path.glob("*.seg"))
    with open(segment, "r+b") as f:
        f.truncate(size + 10)
    again = _spool(tmp_path)
    again.scan(time.monotonic())
    head = again.head()
    assert head is not None
    parts = again.load(head)
    assert parts is not None and [(p.batch_id, len(p)) for p in parts] == [("Z-1", 4)]
    again.close()
