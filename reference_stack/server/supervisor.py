"""Single-node supervisor: run one `create_app` in this process until SIGINT/SIGTERM, then shut down cleanly.

`run_stack` (`oglog stack up`, `oglog demo`) also starts nats-server as a child (unless given a NATS URL) and
keeps storage in chDB under the data dir. `run_roles` (`oglog serve`) runs the roles of a config read from the
environment. Both:

* take an exclusive lock (flock) on what only one process may own (the data dir; a chDB path), so a second
  instance fails with a clear message instead of corrupting a store (datadir.py);
* stop in order on the first SIGINT/SIGTERM: stop accepting connections, answer the queries still waiting
  for storage with 503 (`http.resources.refuse_queries`), close live-tail sockets, let in-flight requests
  finish, let the processor flush and ack its batch (bounded by SHUTDOWN_TIMEOUT), close
  storage and NATS, and stop nats-server last. A second signal exits at once: nothing accepted is lost even
  then, because JetStream keeps every batch the processor has not acked and redelivers it on the next start.

nats-server is tied to this process with PR_SET_PDEATHSIG (natsd.py) and restarted with backoff when it dies
while the stack runs (healing.py; past its retries the stack stops with exit status 1). Its pid is recorded
under the data dir so that, if a `kill -9` left it still shutting down, the next start waits for it (and kills
it past a deadline) before reusing the store (datadir.py). The banner and port errors: banner.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from aiohttp import web

from ..broker.natsd import NatsServer
from ..config import DEFAULT_RETENTION_DAYS, DEFAULT_SHUTDOWN_TIMEOUT, ROLES, StackConfig
from ..http.app import create_app
from ..http.health import watch_workers
from ..http.resources import refuse_queries
from ..ingestion.ingest import DEFAULT_MAX_BATCHES_IN_FLIGHT
from ..query.live import MAX_CLIENTS
from .banner import display_host, listen_error, print_urls
from .datadir import NATS_PID_NAME, ORPHAN_WAIT, StackError, exclusive_lock, reap_orphan_nats
from .healing import NatsKeeper
from .stop_deadline import StopDeadline
from .workers import WorkerPool, check_port_free, internal_socket_path

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ORPHAN_WAIT",
    "SUPERVISOR_BACKLOG",
    "StackError",
    "StackOptions",
    "exclusive_lock",
    "listen_error",
    "print_urls",
    "reap_orphan_nats",
    "run_roles",
    "run_stack",
]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./oglog-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Added to SHUTDOWN_TIMEOUT for closing storage and NATS after the processor's flush.
SHUTDOWN_MARGIN = 10.0
#: Listen backlog of the Unix socket the ingest workers relay every non-ingest request to. Every live-tail
#: client reconnects at once after a NATS restart or a 1013 close (query/live.py), each one a new connection
#: from a worker: the default 128 made 210-357 of 1,010 such clients get 502. Room for MAX_CLIENTS plus a
#: burst of other requests; the kernel caps it at net.core.somaxconn (4096 on current Linux).
SUPERVISOR_BACKLOG = MAX_CLIENTS + DEFAULT_MAX_BATCHES_IN_FLIGHT
_LOCK_NAME = "oglog.lock"


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackOptions:
    """`oglog stack up` flags. `nats_url`/`clickhouse_url` None means the embedded nats-server / chDB."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    nats_url: str | None = None
    clickhouse_url: str | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    log_level: str = "info"
    #: Access control (docs/security.md): keys come from `keys_file` (default `<data_dir>/keys.json`,
    #: `oglog keys create`) and `api_keys` (`["SCOPES:KEY", ...]`, from OGLOG_API_KEYS).
    require_auth: bool = False
    insecure: bool = False
    keys_file: str | None = None
    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    #: Ingestion processes sharing the port (workers.py); 0 or 1 runs every role in this one process.
    ingest_workers: int = 0

    def config(self, nats_url: str) -> StackConfig:
        """The StackConfig for all roles in one process (raises ValueError naming the bad field)."""
        if self.ingest_workers < 0:
            raise ValueError(f"ingest_workers: must be >= 0, got {self.ingest_workers}")
        dsn = self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
        return StackConfig(
            roles=ROLES,
            host=self.host,
            http_port=self.port,
            nats_url=nats_url,
            clickhouse_dsn=dsn,
            retention_days=self.retention_days,
            shutdown_timeout=self.shutdown_timeout,
            log_level=self.log_level,
            require_auth=self.require_auth,
            insecure=self.insecure,
            keys_file=self.keys_file or str((self.data_dir / "keys.json").resolve()),
            api_keys=self.api_keys,
            allowed_hosts=self.allowed_hosts,
            allowed_origins=self.allowed_origins,
        )


# -- running -----------------------------------------------------------------------------------------------
async def serve(
    config: StackConfig,
    *,
    out: TextIO = sys.stdout,
    on_ready: Callable[[str], None] | None = None,
    before_shutdown: Callable[[], None] | None = None,
    keeper: NatsKeeper | None = None,
    workers: WorkerPool | None = None,
) -> None:
    """Run `create_app(config)` until SIGINT/SIGTERM; `on_ready(base_url)` runs once it listens, and the
    blocking `before_shutdown()` (in a thread) while it still serves, e.g. to flush a demo's handler.
    `keeper` restarts the bundled nats-server; if it gives up, the stack shuts down and StackError says why.
    With `workers`, this process listens on their Unix socket and they own the public port (workers.py); they
    are drained before this process's own shutdown.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    gave_up: list[str] = []
    # Every stop ends within stop_deadline(shutdown_timeout), whatever hangs (stop_deadline.py).
    deadline = StopDeadline(config.shutdown_timeout, lambda: _children(workers, keeper))

    def first_signal() -> None:
        deadline.arm()
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, second_signal)

    def second_signal() -> None:
        print("second signal: exiting now (unacked batches stay in JetStream)", file=out, flush=True)
        deadline.kill_children()  # not left behind: a hung nats-server would ignore the parent-death SIGTERM
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first_signal)

    app = create_app(config)
    if workers is not None:  # they publish, this process does not: /health asks them (http/health.py)
        watch_workers(app, workers.health_sockets)
    # aiohttp waits this long for in-flight requests after it stops accepting new connections.
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=config.shutdown_timeout
    )
    try:
        await runner.setup()
        site: web.BaseSite = web.TCPSite(runner, config.host, config.http_port)
        if workers is not None:
            site = web.UnixSite(runner, str(workers.socket_path), backlog=SUPERVISOR_BACKLOG)
        try:
            await site.start()
        except OSError as exc:
            raise StackError(listen_error(config, exc)) from None
        if workers is None and config.http_port == 0:
            # `--port 0`: the kernel picked the port; the banner and on_ready must name the one bound.
            config = dataclasses.replace(config, http_port=int(runner.addresses[0][1]))
        extra = ""
        if workers is not None:
            try:
                await workers.start()
            except RuntimeError as exc:
                raise StackError(str(exc)) from None
            pooled = asyncio.create_task(workers.watch(stop), name="oglog-ingest-workers")
            pooled.add_done_callback(lambda task: _give_up(task, gave_up, stop))
            extra = f"  ingestion  {workers.count} worker processes (pids {workers.pids})"
        print_urls(config, out, extra=extra)
        if on_ready is not None:
            on_ready(f"http://{display_host(config.host)}:{config.http_port}")
        if keeper is not None:
            watching = asyncio.create_task(keeper.watch(stop), name="oglog-nats-keeper")
            watching.add_done_callback(lambda task: _give_up(task, gave_up, stop))
        await stop.wait()
        print("shutting down: draining in-flight batches...", file=out, flush=True)
        refuse_queries(app)  # waiting queries get 503 now, not after the queue is served
        if before_shutdown is not None:
            await asyncio.to_thread(before_shutdown)
    finally:
        deadline.arm()  # also a stop no signal began: workers or nats-server given up, a failed start
        refuse_queries(app)  # idempotent; also when the start failed
        if workers is not None:
            await workers.stop()  # their in-flight requests may still need this process's socket
        try:
            await asyncio.wait_for(runner.cleanup(), 2 * config.shutdown_timeout + SHUTDOWN_MARGIN)
        except asyncio.TimeoutError:
            log.error(
                "shutdown did not finish in time; unacked batches will be redelivered on the next start"
            )
    print("stopped", file=out, flush=True)
    if gave_up:
        raise StackError(gave_up[0])


def _children(workers: WorkerPool | None, keeper: NatsKeeper | None) -> list[int]:
    """Pids of the processes this one started and must not leave behind: ingest workers, nats-server."""
    pids = list(workers.pids) if workers is not None else []
    process = keeper.server.process if keeper is not None else None
    if process is not None and process.poll() is None:
        pids.append(process.pid)
    return pids


def _give_up(task: asyncio.Task[str | None], gave_up: list[str], stop: asyncio.Event) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    reason = f"{task.get_name()} failed: {type(exc).__name__}: {exc}" if exc else task.result()
    if reason:
        gave_up.append(reason)
        stop.set()


def run_stack(
    options: StackOptions,
    *,
    out: TextIO = sys.stdout,
    on_ready: Callable[[str], None] | None = None,
    before_shutdown: Callable[[], None] | None = None,
) -> None:
    """`oglog stack up`: nats-server (unless `options.nats_url`) + every role in this process, until a signal.

    Raises ValueError (bad option, naming it) or StackError (could not start)."""
    data_dir = options.data_dir.resolve()
    probe = options.config("nats://127.0.0.1:4222")  # validate every option before touching anything
    if probe.http_port:  # a port in use fails now, before a data dir is created or migrated for nothing
        try:
            check_port_free(probe.host, probe.http_port)
        except OSError as exc:
            raise StackError(listen_error(probe, exc)) from None
    try:
        # 0700: the data dir holds every log (chDB files), the keys file and the NATS token; other local
        # users must not read them. Created so here (an existing directory keeps the mode its owner chose).
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if options.clickhouse_url is None:
            (data_dir / "clickhouse").mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StackError(f"cannot create data dir {data_dir}: {exc.strerror or exc}") from None
    with exclusive_lock(data_dir / _LOCK_NAME, f"data dir {data_dir}",
                        "stop it, or pass --data-dir DIR (and --port N) to run a second stack (`make run "
                        "DATA_DIR=DIR PORT=N` for the demo)"):
        nats: NatsServer | None = None
        keeper: NatsKeeper | None = None
        nats_url = options.nats_url
        if nats_url is None:
            store = data_dir / "nats"
            reap_orphan_nats(store)
            # Started from the main thread: PR_SET_PDEATHSIG fires when the forking *thread* exits.
            try:
                # A fresh token per start: any local user can reach 127.0.0.1 (natsd.py); every role and
                # ingest worker gets it inside nats_url.
                nats = NatsServer(store, token=secrets.token_hex(32)).start()
            except (OSError, RuntimeError) as exc:
                raise StackError(f"cannot start nats-server: {exc}") from None
            pid_file = store / NATS_PID_NAME
            pid_file.write_text(f"{nats.process.pid if nats.process else ''}\n")
            nats_url = nats.url
            keeper = NatsKeeper(nats, on_restart=lambda pid: pid_file.write_text(f"{pid}\n"))
        try:
            config = options.config(nats_url)
            workers: WorkerPool | None = None
            if options.ingest_workers > 1:
                try:
                    port = check_port_free(config.host, config.http_port)
                except OSError as exc:
                    raise StackError(listen_error(config, exc)) from None
                config = dataclasses.replace(config, http_port=port)
                workers = WorkerPool(config, internal_socket_path(data_dir), options.ingest_workers)
            asyncio.run(
                serve(
                    config,
                    out=out,
                    on_ready=on_ready,
                    before_shutdown=before_shutdown,
                    keeper=keeper,
                    workers=workers,
                )
            )
        finally:
            if nats is not None:
                nats.stop()  # last: the processor has acked everything it stored
                (data_dir / "nats" / NATS_PID_NAME).unlink(missing_ok=True)


def run_roles(config: StackConfig, *, out: TextIO = sys.stdout) -> None:
    """`oglog serve ROLE...`: the roles of `config` in this process (NATS, ClickHouse external or chDB)."""
    lock: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    parts = urlsplit(config.clickhouse_dsn)
    if parts.scheme == "chdb" and ("process" in config.roles or "query" in config.roles):
        path = Path(parts.path or ".").resolve()
        lock = exclusive_lock(path.with_name(path.name + ".lock"), f"chDB store {path}")
    with lock:
        asyncio.run(serve(config, out=out))
