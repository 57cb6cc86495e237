"""GET /health: whether this node can take and store logs now, for load balancers and `oglog stack status`.

Healthy means NATS is connected, JetStream answers (an API request within HEALTH_JETSTREAM_TIMEOUT, asked at
most once per HEALTH_JETSTREAM_MAX_AGE and shared), this process's last publish did not fail, storage
answers (roles that use it), and - in a stack with ingest workers (server/workers.py) - no worker reports a
publish failure or an unreachable NATS, and none is alive yet silent on its socket (hung, or never listening:
`worker_failure`). The workers publish every entry while the supervisor, which answers /health, publishes
nothing: without their reports a stopped nats-server or a full stream left /health "ok" while every POST got
503 (review r8 finding 3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from .local_socket import get_over_socket
from .resources import BROKER, CONFIG, STORAGE

__all__ = [
    "HEALTH_FAILURE_STICKS",
    "HEALTH_JETSTREAM_MAX_AGE",
    "HEALTH_JETSTREAM_TIMEOUT",
    "HEALTH_STORAGE_TIMEOUT",
    "HEALTH_WORKER_TIMEOUT",
    "WORKER_START_GRACE",
    "WorkerSockets",
    "health",
    "setup",
    "watch_workers",
    "worker_failure",
]

#: /health gives storage this long to answer `SELECT 1` (chDB runs one statement at a time, so a long query
#: in flight delays the probe; past this the node reports itself degraded).
HEALTH_STORAGE_TIMEOUT = 5.0
#: /health asks JetStream itself (`account_info`, one small API request) and gives it this long: a stopped or
#: wedged nats-server keeps the TCP connection "CONNECTED" for minutes. Under the publish timeout (5 s), so
#: a /health that says ok means a publish would have been answered.
HEALTH_JETSTREAM_TIMEOUT = 2.0
#: Answers (JetStream's, the workers') younger than this many seconds are reused: a /health flood costs at
#: most one JetStream request and one request per worker a second.
HEALTH_JETSTREAM_MAX_AGE = 1.0
#: A failure found at most this many seconds ago is answered at once while the next answer is asked for
#: (`_Shared`): a hung worker costs every probe HEALTH_WORKER_TIMEOUT, so without this each /health took 3 s
#: or more while one was hung, past many callers' deadlines (the test's 4 s under CI load; Kubernetes' 1 s),
#: which then saw no 503 at all before the pool restarted the worker.
HEALTH_FAILURE_STICKS = 10.0
#: How long the supervisor waits for a worker's own /health (over the worker's Unix socket); the worker's
#: answer includes its JetStream probe, so this is that probe's deadline plus a margin. A worker whose
#: process is gone (restarting) reports nothing: the pool restarts it, and the other workers still serve. One
#: that accepts and does not answer in time is hung and reported (review r9: a SIGSTOPped worker hung a share
#: of all requests while /health said ok); so is one alive but not listening past WORKER_START_GRACE.
HEALTH_WORKER_TIMEOUT = HEALTH_JETSTREAM_TIMEOUT + 1.0
#: Seconds a worker process that is alive may go without answering on its socket (refused: not listening
#: yet; missing; full backlog) before it counts as failing - on /health and as a liveness miss, so the pool
#: replaces it. From its start or its last answer: a worker starts (imports, NATS) in 1-5 s, ~10 s on a
#: loaded 2-core machine; one stopped before it listened said "ok" until the start timeout (60 s) or forever.
WORKER_START_GRACE = 20.0


class _Shared:
    """One `ask()` in flight at a time, shared by every caller; its answer reused for
    HEALTH_JETSTREAM_MAX_AGE seconds, and a failure, while a new answer is asked for, for up to
    HEALTH_FAILURE_STICKS seconds (ok again once an answer says so). A caller that gives up does not cancel
    the others' request."""

    def __init__(self, ask: Callable[[], Awaitable[str | None]]) -> None:
        self._ask = ask
        self._answer: tuple[float, str | None] | None = None  # (monotonic time, failure reason or None)
        self._task: asyncio.Future[str | None] | None = None

    async def failure(self) -> str | None:
        answer = self._answer
        age = time.monotonic() - answer[0] if answer is not None else HEALTH_FAILURE_STICKS
        if answer is not None and age < HEALTH_JETSTREAM_MAX_AGE:
            return answer[1]
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        if answer is not None and answer[1] is not None and age < HEALTH_FAILURE_STICKS:
            return answer[1]  # still failing as far as known; the answer asked for now clears it if it passes
        return await asyncio.shield(self._task)

    async def _run(self) -> str | None:
        reason = await self._ask()
        self._answer = (time.monotonic(), reason)
        return reason


@dataclasses.dataclass
class _Probes:
    jetstream: _Shared
    workers: _Shared | None = None


_PROBES: web.AppKey[_Probes] = web.AppKey("oglog_health_probes", _Probes)


def setup(app: web.Application) -> None:
    """Add GET /health to `app` (a `create_app` app: BROKER, CONFIG and, for process/query, STORAGE)."""

    async def ask_jetstream() -> str | None:
        try:
            await asyncio.wait_for(app[BROKER].js.account_info(), HEALTH_JETSTREAM_TIMEOUT)
        except asyncio.TimeoutError:
            return f"no answer to a JetStream request within {HEALTH_JETSTREAM_TIMEOUT:g} s"
        except Exception as exc:  # any refusal (JetStream disabled, connection closing) is the same verdict
            return f"JetStream request failed: {type(exc).__name__}: {exc}"[:200]
        return None

    app[_PROBES] = _Probes(_Shared(ask_jetstream))
    app.router.add_get("/health", health)


@dataclasses.dataclass(frozen=True)
class WorkerSockets:
    """The ingest workers' Unix sockets (`paths[k]`: worker k's) with what the pool running them knows:
    `silent_for(k)`, seconds since worker k started or last answered on its socket, None while no process of
    it is alive (gone: being restarted); `answered(k)`, told each time it answers."""

    paths: list[Path]
    silent_for: Callable[[int], float | None]
    answered: Callable[[int], None]


def watch_workers(app: web.Application, sockets: WorkerSockets) -> None:
    """Make `app`'s /health degraded while an ingest worker (answering its own /health on one of `sockets`)
    reports itself degraded for NATS or JetStream, or fails to answer (`worker_failure`). Call before the
    app starts serving."""

    async def ask_workers() -> str | None:
        count = len(sockets.paths)
        answers = await asyncio.gather(*(worker_failure(sockets, k) for k in range(count)))
        failures = [f"ingest-{k}: {reason}" for k, (_, reason) in enumerate(answers) if reason is not None]
        return "; ".join(failures)[:400] if failures else None

    app[_PROBES].workers = _Shared(ask_workers)


async def worker_failure(sockets: WorkerSockets, index: int) -> tuple[bool, str | None]:
    """Ask worker `index`'s /health over its socket: (whether it answered, what is wrong or None).
    Wrong: it did not answer within HEALTH_WORKER_TIMEOUT (hung: the kernel still hands it its share of the
    port's connections, which then hang); or its process is alive yet its socket refused (not listening,
    backlog full) or is missing and it has been silent past WORKER_START_GRACE (stopped or stuck before it
    listened: it used to count as healthy, "gone", and was never restarted); or it answered that NATS
    or its publishes fail. Not wrong: healthy, starting (within the grace), or gone (the pool restarts it and
    the others serve). The pool's liveness check counts a failure without an answer as a miss."""
    try:
        answer = await get_over_socket(sockets.paths[index], "/health", timeout=HEALTH_WORKER_TIMEOUT)
    except asyncio.TimeoutError:
        return False, f"no answer to /health within {HEALTH_WORKER_TIMEOUT:g} s (hung?)"
    if answer is None:
        silent = sockets.silent_for(index)  # asked after the refusal: a process reaped meanwhile is gone
        if silent is None or silent <= WORKER_START_GRACE:
            return False, None
        return False, f"no answer to /health for {silent:.0f} s: alive, but its socket refuses or is missing"
    sockets.answered(index)
    try:
        body = json.loads(answer[1])
    except ValueError:
        return True, None
    if not isinstance(body, dict) or body.get("status") != "degraded":
        return True, None
    reason = body.get("jetstream_status")
    if reason is None and body.get("nats_status") != "CONNECTED":
        reason = f"NATS {body.get('nats_status')}"
    return True, None if reason is None else str(reason)


async def health(request: web.Request) -> web.Response:
    """200 `{"status": "ok", "service", "nats_status", "timestamp", ...}` when all of the module docstring
    holds; else 503 with "status": "degraded" and `jetstream_status` (JetStream or a worker's publishes
    failing while NATS is connected) or `storage_status` ("error", "timeout") saying why."""
    app = request.app
    config = app[CONFIG]
    broker = app[BROKER]
    probes = app[_PROBES]
    body: dict[str, str] = {"status": "ok", "service": "+".join(config.roles), "nats_status": broker.status}
    healthy = broker.is_connected
    storage_ok = _storage_status(app) if "process" in config.roles or "query" in config.roles else None
    failure = broker.publish_failure
    if failure is None and healthy:
        failure = await probes.jetstream.failure()
    if failure is None and probes.workers is not None:
        failure = await probes.workers.failure()
    if failure is not None:  # connected, but JetStream cannot take writes (store full, stream unavailable)
        body["jetstream_status"] = failure
        healthy = False
    if storage_ok is not None:
        ok, body["storage_status"] = await storage_ok
        healthy = healthy and ok
    if not healthy:
        body["status"] = "degraded"
    body["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return web.json_response(body, status=200 if healthy else 503)


def _storage_status(app: web.Application) -> asyncio.Future[tuple[bool, str]]:
    """Storage's check, started now so it runs while JetStream is asked: (ok, "ok" | "error" | "timeout")."""

    async def check() -> tuple[bool, str]:
        try:
            ok = await asyncio.wait_for(app[STORAGE].checked(), HEALTH_STORAGE_TIMEOUT)
        except asyncio.TimeoutError:
            return False, "timeout"
        return ok, "ok" if ok else "error"

    return asyncio.ensure_future(check())
