"""`oglog demo` (`make run`): the single-node stack plus a small app that logs through the SDK.

The app is four pretend services (web API, auth, payments, a job worker), each an ordinary stdlib logger with
an `oglogstream.OgLogHandler`, producing a realistic mix: access lines with timings, logins and failed
passwords, payments and declines, worker jobs with an occasional exception traceback. Access lines carry the
attributes the Django/Flask integrations write (OpenTelemetry names: http.request.method, url.path,
http.response.status_code, http.server.request.duration in seconds, user.id), and their message states the
same status and duration as those attributes. It runs in a thread of
the supervisor's process and is stopped and flushed (handler.close) before the stack shuts down, so every
line it logged is in storage when the command exits.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from oglogstream.integrations._common import ATTR_DURATION, ATTR_METHOD, ATTR_PATH, ATTR_STATUS, ATTR_USER

from ..auth.keys import KeyStore, parse_env_keys
from .supervisor import StackOptions, run_stack

__all__ = ["DEFAULT_RATE", "ENV_DEMO_KEY", "DemoApp", "demo_key", "links_text", "run_demo"]

#: Where the demo app finds its key when auth is on: the variable the `oglog` client commands read.
ENV_DEMO_KEY = "OGLOG_API_KEY"

DEFAULT_RATE = 20.0
#: How long Ctrl-C waits for the demo's handlers to deliver what they buffered.
FLUSH_TIMEOUT = 10.0

_PATHS = ("/api/orders", "/api/orders/{id}", "/api/cart", "/api/products/{id}", "/api/checkout", "/health")
_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")


def _web(rng: random.Random, log: logging.Logger) -> None:
    path = rng.choice(_PATHS).format(id=rng.randint(1000, 9999))
    method = "POST" if path.endswith(("checkout", "cart")) else "GET"
    seconds = rng.lognormvariate(3.2, 0.8) / 1000  # ~25 ms typical
    roll = rng.random()
    # (level, status, extra seconds, what happened): the message and the attributes come from the same values.
    level, status, added, what = (
        (logging.ERROR, 502, 5.0, "upstream timeout after")
        if roll < 0.03
        else (logging.WARNING, 200, 0.8, "slow response in")
        if roll < 0.10
        else (logging.DEBUG, 200, 0.0, "cache hit in")
        if roll < 0.25
        else (logging.INFO, 200, 0.0, "in")
    )
    seconds = round(seconds + added, 6)
    extra = {
        ATTR_METHOD: method,
        ATTR_PATH: path,
        ATTR_STATUS: status,
        ATTR_DURATION: seconds,
        ATTR_USER: rng.choice(_USERS),
    }
    log.log(level, "%s %s %d %s %.0f ms", method, path, status, what, seconds * 1000, extra=extra)


def _auth(rng: random.Random, log: logging.Logger) -> None:
    user = rng.choice(_USERS)
    if rng.random() < 0.15:
        extra = {ATTR_USER: user, "attempt": rng.randint(1, 5)}
        log.warning("invalid password for user %s", user, extra=extra)
    else:
        log.info("user %s logged in", user, extra={ATTR_USER: user, "mfa": rng.random() < 0.5})


def _payments(rng: random.Random, log: logging.Logger) -> None:
    order = rng.randint(100000, 999999)
    amount = round(rng.uniform(5, 400), 2)
    roll = rng.random()
    if roll < 0.005:
        log.critical("payment provider unreachable, circuit breaker open", extra={"provider": "acme-pay"})
    elif roll < 0.06:
        log.error(
            "card declined for order %d (%.2f EUR)", order, amount, extra={"order": order, "code": "05"}
        )
    else:
        log.info("charged %.2f EUR for order %d", amount, order, extra={"order": order, "amount": amount})


def _worker(rng: random.Random, log: logging.Logger) -> None:
    job = rng.randint(1, 10**6)
    queue = rng.choice(("emails", "invoices", "thumbnails"))
    if rng.random() < 0.04:
        try:
            raise ValueError(f"cannot parse payload of job {job}")
        except ValueError:
            log.exception("job %d on queue %s failed", job, queue, extra={"job": job, "queue": queue})
    else:
        log.debug("picked job %d from queue %s", job, queue, extra={"job": job, "queue": queue})
        log.info("job %d done", job, extra={"job": job, "queue": queue})


_SERVICES: dict[str, tuple[float, Callable[[random.Random, logging.Logger], None]]] = {
    "web-api": (0.55, _web),
    "auth-service": (0.15, _auth),
    "payment-service": (0.15, _payments),
    "worker": (0.15, _worker),
}


class DemoApp:
    """Logs `rate` lines per second across the pretend services until `stop()`."""

    def __init__(self, url: str, *, rate: float = DEFAULT_RATE, seed: int | None = None,
                 api_key: str | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate: must be > 0, got {rate}")
        from oglogstream import OgLogHandler  # the SDK: imported here so the stack never needs it otherwise

        self.rate = rate
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handlers: list[logging.Handler] = []
        self.loggers: dict[str, logging.Logger] = {}
        for service in _SERVICES:
            handler = OgLogHandler(url, service, api_key=api_key)
            logger = logging.getLogger(f"oglog.demo.{service}")
            logger.setLevel(logging.DEBUG)
            logger.propagate = False  # the demo's lines go to OgLogStream, not the terminal
            logger.addHandler(handler)
            self.handlers.append(handler)
            self.loggers[service] = logger

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="oglog-demo", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        names = list(_SERVICES)
        weights = [_SERVICES[name][0] for name in names]
        while not self._stop.wait(self._rng.expovariate(self.rate)):
            name = self._rng.choices(names, weights)[0]
            _SERVICES[name][1](self._rng, self.loggers[name])

    def stop(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Stop logging, then deliver what the handlers still buffer (bounded by `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for logger, handler in zip(self.loggers.values(), self.handlers, strict=True):
            logger.removeHandler(handler)
            handler.close(timeout)  # type: ignore[call-arg]


def demo_key(options: StackOptions, environ: Mapping[str, str] | None = None) -> str | None:
    """The key the demo app sends: None when auth is off, else $OGLOG_API_KEY, which must be a key this stack
    accepts with the ingest scope. ValueError (naming the variable and how to make a key) otherwise: a demo
    whose every line is refused would only look like an empty dashboard."""
    config = options.config("nats://127.0.0.1:4222")
    if not config.auth_enabled:
        return None
    key = (os.environ if environ is None else environ).get(ENV_DEMO_KEY, "").strip()
    create = f"`oglog keys create --data-dir {options.data_dir} --scope ingest,query`"
    if not key:
        raise ValueError(f"authentication is on, so the demo app needs an ingest key in {ENV_DEMO_KEY}: "
                         f"create one with {create} and export {ENV_DEMO_KEY}=ogl_...")
    store = KeyStore(Path(config.keys_file) if config.keys_file else None, parse_env_keys(config.api_keys))
    record = store.verify(key)
    if record is None:
        raise ValueError(f"{ENV_DEMO_KEY}: not a key this stack accepts (unknown or revoked in "
                         f"{config.keys_file}); create one with {create}")
    if "ingest" not in record.scopes:
        raise ValueError(f"{ENV_DEMO_KEY}: key {record.id!r} lacks the ingest scope the demo app needs; "
                         f"create one with {create}")
    return key


def run_demo(options: StackOptions, *, rate: float = DEFAULT_RATE, out: TextIO = sys.stdout) -> None:
    """Run the stack (as `oglog stack up`) with the demo app logging into it, until Ctrl-C/SIGTERM.
    ValueError before anything starts when auth is on and $OGLOG_API_KEY is no ingest key (`demo_key`)."""
    demo: list[DemoApp] = []
    api_key = demo_key(options)

    def on_ready(base: str) -> None:
        app = DemoApp(base, rate=rate, api_key=api_key)
        app.start()
        demo.append(app)
        print(
            f"\nDemo app logging ~{rate:g} lines/s as web-api, auth-service, payment-service, worker. Open:\n"
            f"{links_text(base)}",
            file=out,
            flush=True,
        )

    def before_shutdown() -> None:
        if demo:
            demo[0].stop()

    run_stack(options, out=out, on_ready=on_ready, before_shutdown=before_shutdown)


def links_text(base: str) -> str:
    """The URLs worth opening under `base` (http://host:port), one a line, descriptions in one column."""
    ws = base.replace("http://", "ws://", 1)
    links = [
        (f"{base}/", "the dashboard: live tail, search, overview"),
        (f"{base}/api/logs", "latest 100 entries"),
        (f"{base}/api/logs?level=error,fatal", "only errors"),
        (f"{base}/api/logs?q=timeout", "full-text search"),
        (f"{base}/api/stats", "counts by level and service"),
        (f"{base}/api/histogram", "counts per minute and level"),
        (f"{base}/health", "health"),
        (f"{ws}/ws/live", "live tail (WebSocket), e.g. ?level=error"),
    ]
    width = max(len(url) for url, _ in links) + 3  # one column for every description, ws:// included
    return "".join(f"  {url:<{width}}{what}\n" for url, what in links)
