"""App composition: `create_app(config)` builds one aiohttp app serving the configured roles.

Every role gets GET /health and GET /metrics. Resources are cleanup contexts, in dependency order: the broker
(every role needs NATS: ingestion publishes, processing consumes, the live tail subscribes), then storage
(processing and query), then each role's own contexts. Shutdown runs them in reverse, so the processor flushes
its in-flight batch while storage and the broker are still open.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .. import dashboard
from ..auth import startup as auth
from ..config import StackConfig
from ..ingestion import ingest
from ..ingestion.otlp import receiver as otlp
from ..processing import deadletter, process
from ..query import explore, live, query
from . import health, openapi, parser_errors
from .boundary import HANDLER_ARGS, problem_middleware
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .resources import CONFIG, METRICS, broker_ctx, refuse_queries_on_shutdown, storage_ctx

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(config: StackConfig) -> web.Application:
    """The aiohttp application for `config.roles` (any non-empty subset of ingest, process, query)."""
    # One error middleware for every route; aiohttp leaves request bodies compressed (read_body inflates and
    # verifies them) and closes connections idle past IDLE_TIMEOUT (see http/boundary.py).
    app = web.Application(
        client_max_size=1024**2, middlewares=[problem_middleware], handler_args=HANDLER_ARGS
    )
    parser_errors.install()  # requests aiohttp's parser refuses: problem+json too (http/parser_errors.py)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    # API keys, scopes, rate limits, Host/Origin checks, secret-free logs (auth/; docs/security.md).
    auth.setup(app, config)
    app.cleanup_ctx.append(broker_ctx)
    if "process" in config.roles or "query" in config.roles:
        app.cleanup_ctx.append(storage_ctx)
        # Runs before aiohttp waits for in-flight requests: waiting queries get 503 at once, inserts go on.
        app.on_shutdown.append(refuse_queries_on_shutdown)
    if "ingest" in config.roles:
        ingest.setup(app)
        otlp.setup(app)  # POST /v1/logs: OpenTelemetry exporters, same path as POST /logs
    if "process" in config.roles:
        process.setup(app)
    if "query" in config.roles:
        query.setup(app)
        explore.setup(app)  # GET /api/attributes, /api/logs/{id}/context (after query: shared metrics)
        live.setup(app)
        dashboard.setup(app)  # GET /: the web dashboard, same origin as the API it calls
        deadletter.setup(app)  # GET /api/dead-letters, POST /api/dead-letters/replay
    health.setup(app)  # GET /health: NATS, JetStream, storage and the ingest workers' publishes
    app.router.add_get("/metrics", metrics)
    openapi.setup(app)  # GET /openapi.json, built from the routes above once they are final
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this app's registry."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
