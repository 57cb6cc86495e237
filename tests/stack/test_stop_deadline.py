"""Every stop ends within its documented deadline whatever state NATS is in (CI: `serve ingest` with NATS
unreachable did not exit within 40 s of SIGTERM).

The root cause: nats-py retries a connect forever, and on Python <= 3.11 asyncio.wait_for swallows a
cancellation that arrives as the attempt it wraps fails (CPython gh-86296), so a close that cancelled the
connect loop once and awaited it waited forever (5 of 200 closes at random moments, on 2 loaded cores). The
fault is injected at the client boundary, made certain: nats-py's TCP connect stays in flight until cancelled
and then fails as "connection refused", as that race makes it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.transport import TcpTransport
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.broker.live_connection import CLOSE_TIMEOUT, open_live_subscription
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.server.stop_deadline import EXIT_STOP_DEADLINE, stop_deadline

pytestmark = pytest.mark.timeout(180)

#: The injected fault, also run in the `oglog serve` subprocesses (SWALLOW_FAULT names the attempt after
#: which it starts; earlier attempts are refused at once, as by a port nobody listens on).
FAULT = '''
import asyncio, os
from nats.aio.transport import TcpTransport

_attempts = [0]
swallowing = [True]  # the test's teardown clears it: a stop that hangs on it must not hang the test run

async def _connect(self, uri, buffer_size, connect_timeout):
    _attempts[0] += 1
    if _attempts[0] <= int(os.environ.get("SWALLOW_FAULT", "0")):
        raise ConnectionRefusedError(111, "Connect call failed (injected)")
    try:
        await asyncio.Event().wait()  # in flight: a SYN nobody answers
    except asyncio.CancelledError:  # the attempt failed as the stop cancelled it: the cancel is lost
        if not swallowing[0]:
            raise
        raise ConnectionRefusedError(111, "Connect call failed (injected, cancel swallowed)") from None

TcpTransport.connect = _connect
'''


@pytest.fixture
def swallowing_connect() -> Iterator[list[bool]]:
    """nats-py's TCP connect, in this process, with FAULT injected from the first attempt; yields the flag
    that lifts it."""
    original = TcpTransport.connect
    fault: dict[str, object] = {}
    exec(FAULT, fault)  # the same text the subprocesses run
    swallowing: list[bool] = fault["swallowing"]  # type: ignore[assignment]
    try:
        yield swallowing
    finally:
        swallowing[0] = False
        TcpTransport.connect = original  # type: ignore[method-assign]


async def _unstick(task: asyncio.Task[Any] | None, swallowing: list[bool]) -> None:
    """A connect task a failed stop left running: cancelled with the fault lifted, so the loop can close."""
    swallowing[0] = False
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=5)


async def _ended_within(coro: object, seconds: float) -> asyncio.Task[object]:
    task: asyncio.Task[object] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
    await asyncio.wait({task}, timeout=seconds)
    assert task.done(), f"still running {seconds:g}s later"
    return task


async def test_broker_close_ends_when_the_connect_loop_swallows_its_cancel(
    swallowing_connect: list[bool],
) -> None:
    """Broker.close() on a connection whose connect attempt swallows the cancellation returns within its
    documented bound (each of its steps within drain_timeout), and no connect task is left running."""
    broker = Broker(f"nats://127.0.0.1:{free_port()}")
    await broker.start()
    await asyncio.sleep(0.2)  # the first attempt is in flight
    drain = 1.0
    try:
        await _ended_within(broker.close(drain_timeout=drain), 4 * drain)
        assert broker._connect_task is not None and broker._connect_task.done()
    finally:
        await _unstick(broker._connect_task, swallowing_connect)


async def test_live_subscription_timeout_ends_when_the_connect_swallows_its_cancel(
    swallowing_connect: list[bool],
) -> None:
    """open_live_subscription against an attempt that never ends raises TimeoutError within `timeout` plus
    its close bounds, instead of waiting for the swallowed cancellation."""
    opening = asyncio.ensure_future(open_live_subscription(
        [f"nats://127.0.0.1:{free_port()}"], name="t", connect_timeout=2, reconnect_wait=0.5,
        timeout=0.5, cb=_ignore, on_gap=lambda *_: None,
    ))
    try:
        await _ended_within(opening, 0.5 + 2 * CLOSE_TIMEOUT)
        assert isinstance(opening.exception(), asyncio.TimeoutError)
    finally:
        await _unstick(opening, swallowing_connect)


async def _ignore(_payload: bytes) -> None:
    return None


# -- the process: oglog serve ingest, SIGTERM, exit within stop_deadline -------------------------------------
SHUTDOWN_TIMEOUT = 2.0
_LISTENING = r"listening on http://127\.0\.0\.1:\d+"
_UNREACHABLE = "cannot reach NATS"


def _serve_ingest(tmp: Path, *, fault: str | None) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`oglog serve ingest` against a port nobody listens on; with `fault`, FAULT injected from attempt
    int(fault) + 1."""
    out, err = tmp / "out.log", tmp / "err.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "HTTP_PORT": "0", "SHUTDOWN_TIMEOUT": f"{SHUTDOWN_TIMEOUT:g}s"}
    code = "import runpy; runpy.run_module('oglogstream.cli', run_name='__main__', alter_sys=True)"
    if fault is not None:
        env["SWALLOW_FAULT"] = fault
        code = FAULT + "\n" + code
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "ingest"], stdout=o, stderr=e, env=env)
    return proc, out, err


def _wait_for(proc: subprocess.Popen[bytes], path: Path, pattern: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, path.read_text(errors="replace")):
        assert proc.poll() is None, f"exited {proc.returncode} before {pattern!r}"
        assert time.monotonic() < deadline, f"{pattern!r} not seen in {timeout:g}s"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("fault", "after", "pause"),
    [
        (None, _LISTENING, 0.0),  # just listening: a connect attempt every 0.5 s, none answered
        (None, _UNREACHABLE, 1.3),  # several failed attempts later, mid reconnect wait
        ("0", _LISTENING, 0.0),  # the first connect attempt still in flight, and it swallows the cancel
        ("1", _UNREACHABLE, 0.8),  # one refused, the next in flight and swallowing the cancel
    ],
    ids=["refused-at-listen", "refused-later", "first-attempt-swallows", "later-attempt-swallows"],
)
def test_sigterm_with_nats_unreachable_exits_cleanly_within_the_deadline(
    tmp_path: Path, fault: str | None, after: str, pause: float
) -> None:
    """SIGTERM to `serve ingest` whose NATS is unreachable, at several moments of its connect loop: it exits
    0 within stop_deadline(SHUTDOWN_TIMEOUT), its last line `stopped`, with no shutdown-timeout error."""
    proc, out, err = _serve_ingest(tmp_path, fault=fault)
    try:
        _wait_for(proc, out if after == _LISTENING else err, after)
        time.sleep(pause)
        proc.send_signal(signal.SIGTERM)
        proc.wait(stop_deadline(SHUTDOWN_TIMEOUT))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = err.read_text()
    assert proc.returncode == 0, errors
    assert out.read_text().splitlines()[-1] == "stopped"
    assert "did not finish" not in errors and "did not stop" not in errors


def test_a_stop_that_hangs_past_the_deadline_kills_the_children_and_says_so(tmp_path: Path) -> None:
    """A stop still running at its deadline: SIGKILL to each child, one stderr line naming the deadline, exit
    status EXIT_STOP_DEADLINE (the margin is set to 0 here so the deadline is 0.5 s)."""
    script = (
        "import subprocess, sys, time\n"
        "from oglogstream.stack.server import stop_deadline as sd\n"
        "sd.STOP_MARGIN = 0.0\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "sd.StopDeadline(0.5, lambda: [child.pid]).arm()\n"
        "time.sleep(60)  # a stop that hangs\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == EXIT_STOP_DEADLINE
    child = int(proc.stdout.split()[0])
    assert proc.stderr == (
        "oglog: error: shutdown did not finish within 0.5s (shutdown timeout 0.5s + 0s); killing children "
        f"(pids [{child}]); exiting now (unacked batches are redelivered on the next start)\n"
    )
    deadline = time.monotonic() + 10
    while _alive(child):  # SIGKILLed; reaped by init once its parent is gone
        assert time.monotonic() < deadline, f"child {child} still alive"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_nats_server_being_stopped_is_still_named_for_the_deadline_to_kill(tmp_path: Path) -> None:
    """Review: `NatsServer.stop()` forgot its process before waiting for it, so when a hung (SIGSTOPped)
    nats-server made the stop pass its deadline, the deadline found no nats pid to kill and the server
    outlived the stack as an orphan. The process stays named until it has exited."""
    from oglogstream.stack.broker.natsd import NatsServer

    server = NatsServer(tmp_path / "nats").start()
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)  # SIGTERM stays pending: stop() waits out its timeout
    stopping = threading.Thread(target=server.stop, kwargs={"timeout": 30.0}, daemon=True)
    try:
        stopping.start()
        time.sleep(0.5)  # stop() is waiting now; what it names is what the deadline kills
        assert server.process is not None and server.process.pid == pid
    finally:
        os.kill(pid, signal.SIGKILL)  # what the deadline does
        stopping.join(30)
    assert not stopping.is_alive() and server.process is None


def test_a_second_signal_kills_a_hung_nats_server_instead_of_leaving_it(tmp_path: Path) -> None:
    """Review: a second Ctrl-C exits at once, relying on the kernel's parent-death SIGTERM to end the bundled
    nats-server; a SIGSTOPped (hung) one never acts on it and outlived the stack. The second signal now
    SIGKILLs the children first."""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oglogstream.cli", "stack", "up", "--data-dir", str(tmp_path / "data"),
             "--port", "0", "--ingest-workers", "1"],
            stdout=o, stderr=e, env=env,
        )
    nats_pid = 0
    try:
        _wait_for(proc, out, r"http://127\.0\.0\.1:\d+")
        nats_pid = int((tmp_path / "data" / "nats" / "nats-server.pid").read_text())
        os.kill(nats_pid, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, out, "shutting down")
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.read_text()
    deadline = time.monotonic() + 10
    while _alive(nats_pid):  # SIGKILLed by the second signal; reaped by init
        assert time.monotonic() < deadline, f"nats-server {nats_pid} outlived the stack"
        time.sleep(0.05)


def test_a_child_whose_parent_is_gone_before_it_asks_for_the_parent_death_signal_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review: a SIGTERM while nats-server was forking killed the stack before the child asked the kernel for
    its parent-death signal, and nats-server ran on as an orphan. The child now checks its parent after
    asking, and exits if it is not the one that started it (simulated here by another parent pid)."""
    from oglogstream.stack.process_death import die_with_parent

    monkeypatch.setattr(os, "getpid", lambda: 1)  # the "parent" the child will not find
    orphaned = die_with_parent(signal.SIGTERM)
    monkeypatch.undo()
    child = subprocess.Popen(["sleep", "30"], preexec_fn=orphaned)
    assert child.wait(10) == 1
    kept = subprocess.Popen(["sleep", "30"], preexec_fn=die_with_parent(signal.SIGTERM))
    try:
        with pytest.raises(subprocess.TimeoutExpired):  # running: its parent is the one that started it
            kept.wait(0.5)
    finally:
        kept.kill()
        kept.wait()
