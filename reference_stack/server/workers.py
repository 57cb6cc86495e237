"""Ingestion worker processes for `oglog stack up --ingest-workers N`.

One event loop validating and publishing is the bound of the single-process stack, while chDB's inserts use
a fraction of a core. With N > 1 the supervisor (nats-server's parent, processing + query + live tail + the
dashboard on chDB, which admits one process per store) listens on a Unix socket under the data dir, and N
ingest-only processes, each `create_app(config)` with the ingest role, listen on the public port with
SO_REUSEPORT: the kernel spreads connections across them. A worker answers POST /log, /logs and /v1/logs
itself and relays every other request to the supervisor (worker_proxy.py).

* Start: the supervisor first checks that nothing listens on the port (a clear StackError otherwise:
  SO_REUSEPORT would let a second stack of the same user share it silently), then starts the workers and
  waits until each listens (WORKER_START_TIMEOUT).
* A worker that exits while the stack runs (crash, OOM kill, `kill -9`) is restarted with the nats-server
  keeper's backoff (healing.py); after DEFAULT_MAX_RESTARTS failed restarts in a row the stack stops (exit 1).
  Nothing acknowledged is lost by a worker's death: a 202 is sent only after JetStream's ack; a request in
  flight on the dead worker gets a reset connection, which the SDK retries with the same batch id.
* Shutdown: SIGTERM to every worker, which stops accepting, lets its in-flight requests finish (their 202s
  are JetStream acks) and exits; past the shutdown timeout a worker is killed. Then the supervisor drains
  processing. Workers ignore SIGINT (Ctrl-C reaches the whole process group; the supervisor decides) and die
  with the supervisor (PR_SET_PDEATHSIG SIGKILL: a dead supervisor's workers never hold the port).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import errno
import logging
import os
import pickle
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from ..config import StackConfig, check_at_least, check_positive
from ..http.health import WorkerSockets, worker_failure
from ..process_death import die_with_parent
from .healing import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_STABLE_AFTER,
    exit_reason,
)
from .worker_metrics import worker_socket_path

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "WORKER_START_TIMEOUT",
    "WorkerPool",
    "check_port_free",
    "default_ingest_workers",
    "internal_socket_path",
]

log = logging.getLogger("oglogstream.stack.server.workers")  # not __name__: "__main__" in a worker (-m)

#: The default worker count is the cores this process may run on, up to this many.
MAX_DEFAULT_WORKERS = 8
#: How long a worker gets to import, connect to NATS and listen.
WORKER_START_TIMEOUT = 60.0
#: Added to the shutdown timeout before a draining worker is killed.
WORKER_STOP_MARGIN = 5.0
#: Seconds between two liveness checks of a worker (its /health over its Unix socket, answered within
#: HEALTH_WORKER_TIMEOUT), and how many missed answers in a row get it killed and restarted: a hung worker
#: (stopped, deadlocked) still holds its share of the port, so the kernel keeps handing it connections that
#: hang (review r9: a SIGSTOPped worker hung 6 of 10 POSTs). About 20-25 s from hang to restart, as
#: Kubernetes' liveness probe defaults (3 failures, 10 s apart) give ~30 s. One alive but not listening misses
#: too once silent past http/health.py's WORKER_START_GRACE: ~35-45 s from its start to its restart.
LIVENESS_INTERVAL = 5.0
LIVENESS_MISSES = 3
_ENV = "OGLOG_INGEST_WORKER"
_PREPARED = b"prepared\n"
_GO = b"go\n"
_READY = b"ready\n"
_SOCKET_NAME = "oglog-supervisor.sock"
#: Longest Unix socket path Linux accepts (sun_path is 108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 107


def default_ingest_workers() -> int:
    """The cores this process may use (sched_getaffinity), 1..MAX_DEFAULT_WORKERS; 1 means one process."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def check_port_free(host: str, port: int) -> int:
    """Bind (host, port) once without SO_REUSEPORT: OSError if anything listens there. Returns the port
    (the kernel's pick when `port` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is fine
        probe.bind((host, port))
        return int(probe.getsockname()[1])


def internal_socket_path(data_dir: Path) -> Path:
    """The supervisor's Unix socket: in the data dir, or in a private temp dir when that path is too long."""
    path = data_dir / _SOCKET_NAME
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="oglog-")) / _SOCKET_NAME


class WorkerPool:
    """`count` ingest worker processes on `config.host:config.http_port`, relaying other paths to the
    supervisor's `socket_path`. `config` is the supervisor's; workers get it with roles ("ingest",).
    Restarts wait `backoff_base` seconds, doubling per quick failure up to `backoff_max`; a worker that dies
    within `stable_after` seconds of its start, or cannot start, counts as a failure, and more than
    `max_restarts` in a row stop the stack (defaults: the nats-server keeper's, healing.py).
    Raises ValueError when count < 2 (fewer is the single-process stack) or a setting is out of range."""

    def __init__(
        self,
        config: StackConfig,
        socket_path: Path,
        count: int,
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        stable_after: float = DEFAULT_STABLE_AFTER,
    ) -> None:
        if count < 2:
            raise ValueError(f"ingest_workers: a pool needs at least 2 workers, got {count}")
        check_positive(backoff_base=backoff_base, backoff_max=backoff_max, stable_after=stable_after)
        check_at_least(0, max_restarts=max_restarts)
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.max_restarts, self.stable_after = max_restarts, stable_after
        self.config = dataclasses.replace(config, roles=("ingest",))
        self.socket_path = socket_path
        self.count = count
        self.restarts = 0
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._started = [0.0] * count
        self._answered = [0.0] * count  # monotonic time of each worker's last answer on its socket
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        """Pids of the workers running now (for tests and the operator)."""
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    @property
    def health_sockets(self) -> WorkerSockets:
        """The Unix sockets on which the workers answer their own /health (http/health.watch_workers)."""
        paths = [worker_socket_path(self.socket_path, k) for k in range(self.count)]
        return WorkerSockets(paths, self.silent_for, self._heard)

    def silent_for(self, index: int) -> float | None:
        """Seconds since worker `index` started or last answered on its socket; None while no process of it
        is alive (exited, being restarted) or the pool is stopping."""
        proc = self._procs[index]
        if proc is None or proc.returncode is not None or self._stopping:
            return None
        return time.monotonic() - max(self._started[index], self._answered[index])

    def _heard(self, index: int) -> None:
        self._answered[index] = time.monotonic()

    @property
    def pids_by_index(self) -> list[int]:
        """Each worker slot's current pid (0 while it is being restarted)."""
        return [p.pid if p is not None else 0 for p in self._procs]

    async def start(self) -> None:
        """Start every worker and wait until each listens; RuntimeError (and no worker left) if one cannot."""
        try:
            # Two steps, so that the port opens once every worker is ready to listen (imports and the NATS
            # connection take seconds) and the banner follows within milliseconds, as it does without workers.
            await asyncio.gather(*(self._spawn(k) for k in range(self.count)))
            await asyncio.gather(*(self._listen(k) for k in range(self.count)))
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, index: int) -> None:
        place = (self.config, str(self.socket_path), index, self.count)
        payload = base64.b64encode(pickle.dumps(place)).decode()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "oglogstream.stack.server.workers",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, _ENV: payload},
            # Killed when the supervisor's thread that started it exits.
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        self._procs[index] = proc
        self._started[index] = time.monotonic()
        if self._stopping:  # a restart that raced stop(): stop() did not see this process
            proc.send_signal(signal.SIGTERM)
        await self._expect(index, _PREPARED)

    async def _listen(self, index: int) -> None:
        """Let spawned worker `index` open the port; RuntimeError if it does not report listening."""
        proc = self._procs[index]
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(_GO)
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        await self._expect(index, _READY)

    async def _expect(self, index: int, word: bytes) -> None:
        proc = self._procs[index]
        assert proc is not None and proc.stdout is not None
        timed_out = False
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), WORKER_START_TIMEOUT)
        except asyncio.TimeoutError:
            line, timed_out = b"", True
        if line != word:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            why = _start_failure(proc.returncode, timed_out)
            raise RuntimeError(f"ingest worker {index} did not start ({why})")

    async def watch(self, stop: asyncio.Event) -> str | None:
        """Restart workers that exit until `stop` is set (returns None) or one failed more than
        `max_restarts` times in a row (returns why, one line)."""
        keepers = [asyncio.create_task(self._keep(k, stop)) for k in range(self.count)]
        probes = [asyncio.create_task(self._probe(k, stop)) for k in range(self.count)]
        try:
            done, _ = await asyncio.wait(keepers, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in keepers + probes:
                task.cancel()
            await asyncio.gather(*keepers, *probes, return_exceptions=True)

    async def _probe(self, index: int, stop: asyncio.Event) -> None:
        """Kill worker `index` once it missed LIVENESS_MISSES liveness answers in a row (`_keep` restarts it).
        A miss: no answer in time (hung), or alive but silent past WORKER_START_GRACE (http/health.py
        worker_failure). A worker that is gone (restarting) or still starting is not a miss."""
        misses, watched = 0, None
        sockets = self.health_sockets
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), LIVENESS_INTERVAL)
                return
            proc = self._procs[index]
            if proc is None or proc.returncode is not None or self._stopping:
                misses = 0
                continue
            misses = misses if proc is watched else 0  # a new process: the old one's misses are not its own
            watched = proc
            answered, failure = await worker_failure(sockets, index)
            misses = 0 if answered or failure is None else misses + 1
            if misses >= LIVENESS_MISSES and proc is self._procs[index] and not self._stopping:
                log.error(
                    "ingest worker %d (pid %d) missed its liveness check %d times in a row (last: %s); "
                    "killing it to restart it", index, proc.pid, misses, failure,
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                misses = 0

    async def _keep(self, index: int, stop: asyncio.Event) -> str | None:
        failures = 0  # deaths within stable_after of a start, and failed starts, in a row
        while True:
            proc = self._procs[index]
            if proc is not None:
                status = await proc.wait()
                if stop.is_set() or self._stopping:
                    return None
                log.error("ingest worker %d (pid %d) is down (%s)", index, proc.pid, _ended(status))
                short = time.monotonic() - self._started[index] < self.stable_after
                failures = failures + 1 if short else 0
            if failures > self.max_restarts:
                return f"ingest worker {index} kept failing ({failures} times in a row); stopping the stack"
            delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, failures - 1))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
                return None
            try:
                await self._spawn(index)
                await self._listen(index)
            except RuntimeError as exc:
                failures += 1
                self._procs[index] = None
                log.error("%s; retrying", exc)
                continue
            self.restarts += 1
            log.warning("ingest worker %d restarted (pid %d)", index, self.pids_by_index[index])

    async def stop(self) -> None:
        """SIGTERM every worker and wait for its drain; kill it past shutdown_timeout + WORKER_STOP_MARGIN."""
        self._stopping = True
        procs = [p for p in self._procs if p is not None and p.returncode is None]
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF for a worker still waiting for its go line
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + WORKER_STOP_MARGIN
        for proc in procs:  # one deadline for all: they drain at the same time
            try:
                await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                log.error("ingest worker pid %d did not drain in time; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.socket_path.unlink(missing_ok=True)
        for k in range(self.count):
            worker_socket_path(self.socket_path, k).unlink(missing_ok=True)
        if self.socket_path.parent.parent == Path(tempfile.gettempdir()):
            with contextlib.suppress(OSError):
                self.socket_path.parent.rmdir()  # internal_socket_path's private dir


#: The returncode asyncio reports for a child whose status it could not collect (its watcher logs "Unknown
#: child process pid N, will report returncode 255"). A worker itself exits with 0 or 1.
_UNKNOWN_STATUS = 255


def _ended(returncode: int | None) -> str:
    """How a worker process ended, as far as is known: `killed by SIGKILL`, `exit status 1`, or that its
    status could not be collected."""
    if returncode is None or returncode == _UNKNOWN_STATUS:
        return "exit status unknown: reaped before asyncio could collect it, most likely killed from outside"
    return exit_reason(returncode)


def _start_failure(returncode: int | None, timed_out: bool) -> str:
    """Why a worker did not report ready, saying only what is known: no answer in time, the signal that
    killed it, or its exit status (only then may it have printed an error)."""
    if timed_out:
        return f"no ready line within {WORKER_START_TIMEOUT:g} s; killed"
    if returncode is not None and returncode > 0 and returncode != _UNKNOWN_STATUS:
        return f"{exit_reason(returncode)} before it reported ready; the error it printed, if any, is above"
    return f"{_ended(returncode)}, before it reported ready"


# -- the worker process --------------------------------------------------------------------------------------
async def _serve_worker(config: StackConfig, socket_path: Path, index: int, workers: int) -> None:
    from ..http.app import create_app
    from .worker_metrics import worker_socket_path
    from .worker_proxy import install

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    app = create_app(config)
    install(app, socket_path, index=index, workers=workers)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout
    )
    await runner.setup()
    try:
        os.write(1, _PREPARED)
        if not await _told_to_listen(stop):
            return  # stopped, or the supervisor went away, before the port opened
        await web.TCPSite(runner, config.host, config.http_port, reuse_port=True).start()
        await web.UnixSite(runner, str(worker_socket_path(socket_path, index))).start()
        os.write(1, _READY)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the supervisor reads only the ready line
        await stop.wait()
    finally:
        await runner.cleanup()  # stop listening, finish in-flight requests, close NATS


async def _told_to_listen(stop: asyncio.Event) -> bool:
    """Wait for the supervisor's go line on stdin; False on SIGTERM or EOF first."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    go = asyncio.ensure_future(reader.readline())
    halt = asyncio.ensure_future(stop.wait())
    await asyncio.wait({go, halt}, return_when=asyncio.FIRST_COMPLETED)
    for task in (go, halt):
        task.cancel()
    return go.done() and not go.cancelled() and go.result() == _GO


def main() -> int:
    """Entry point of a worker process (started by WorkerPool with its config in the environment)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config, socket_path, index, workers = pickle.loads(base64.b64decode(os.environ.pop(_ENV)))
    from .cli import _configure_logging

    _configure_logging(config.log_level)
    try:
        asyncio.run(_serve_worker(config, Path(socket_path), index, workers))
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, "")
        print(f"oglog ingest worker {index}: cannot serve: {code} {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
