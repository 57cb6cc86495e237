"""GET /openapi.json: an OpenAPI 3.1 description of the routes this app serves, built from what serves them.

Nothing here is a second copy of a rule the server enforces:
* the paths and methods are read from the app's router (a role that does not serve a route does not list it);
* request bodies are the JSON Schema of the pydantic model ingestion validates with (`schema.ENTRY`), public
  entries are derived from the entry table (`oglogstream.wire.FIELDS`);
* each route's query parameters are the tuple the handler itself passes to `filters.check_known`, so a
  parameter the server accepts cannot be missing here (tests/stack/test_openapi.py compares them with the
  `allowed:` list of a live 400);
* the security requirement of each operation comes from the access policy (`auth.middleware.required_scope`).
What is written here is prose (summaries, parameter descriptions) and the shape of the answers, which the same
test checks against real answers of a running stack.
The tables (parameters, error statuses, operations) are openapi_tables.py; this module builds and serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from oglogstream._version import VERSION
from oglogstream.wire import PROBLEM_CONTENT_TYPE

from ..auth.middleware import required_scope
from ..ingestion import row_codec, schema
from ..query.filters import ATTR_PREFIX
from .openapi_tables import (
    ERRORS,
    OPENAPI_PATH,
    OPERATIONS,
    PARAMETERS,
    PROBLEM_SCHEMA,
    ROUTE_PARAMETERS,
    entry_schema,
)

__all__ = ["OPENAPI_PATH", "OPENAPI_VERSION", "OPERATIONS", "build_document", "setup"]

OPENAPI_VERSION = "3.1.0"
_PROBLEM = {"$ref": "#/components/schemas/Problem"}

def _parameters(names: tuple[str, ...], path: str) -> list[dict[str, Any]]:
    out = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path.split("/")
        if name.startswith("{")
    ]
    for name in names:
        schema_, description = ROUTE_PARAMETERS.get((path, name)) or PARAMETERS[name]
        parameter: dict[str, Any] = {
            "name": name, "in": "query", "schema": schema_, "description": description,
        }
        if name == f"{ATTR_PREFIX}*":
            parameter["name"] = f"{ATTR_PREFIX}{{key}}"
            parameter["x-oglog-name-pattern"] = rf"^{ATTR_PREFIX.replace('.', '[.]')}.+$"
        out.append(parameter)
    return out


def _operation(method: str, path: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    status, answer = spec["ok"]
    ok: dict[str, Any] = {"description": spec["summary"]}
    if answer is not None:
        ok["content"] = {"application/json": {"schema": answer}}
    content = {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM}}
    scope = required_scope(path)
    responses: dict[str, Any] = {status: ok}
    for code in ERRORS[scope]:
        if code != "404" or "{" in path:
            responses[code] = {"description": HTTPStatus(int(code)).phrase, "content": content}
    responses["4XX"] = responses["5XX"] = {"description": "An error (RFC 9457 problem)", "content": content}
    operation: dict[str, Any] = {
        "summary": spec["summary"],
        "operationId": f"{method.lower()}{path.replace('/', '_').replace('{', '').replace('}', '')}",
        "parameters": _parameters(tuple(spec.get("params") or ()), path),
        "responses": responses,
    }
    if "body" in spec:
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": s} for media, s in spec["body"].items()},
        }
    if scope is not None:
        operation["security"] = [{"bearer": [scope]}, {"apiKeyHeader": [scope]}, {}]
        operation["description"] = f"Needs a key with the `{scope}` scope when auth is on."
    return operation


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes `app` serves. A route missing from OPERATIONS (an app a test or
    an embedder extended) is left out and named under `x-oglog-undocumented`: never a failed start."""
    paths: dict[str, dict[str, Any]] = {}
    undocumented: list[str] = []
    for route in app.router.routes():
        method, path = route.method, route.resource.canonical if route.resource else ""
        if method == "HEAD" or not path:
            continue
        spec = OPERATIONS.get((method, path))
        if spec is None:
            undocumented.append(f"{method} {path}")
            continue
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, spec)
    new_entry = schema.ENTRY.json_schema(ref_template="#/components/schemas/{model}")
    definitions = new_entry.pop("$defs", {})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "OgLogStream",
            "version": VERSION,
            "description": "The reference log stack's HTTP API (docs/api.md).",
        },
        "paths": dict(sorted(paths.items())),
        "x-oglog-undocumented": undocumented,
        "components": {
            "schemas": {
                **definitions,
                "NewEntry": new_entry,
                "Entry": entry_schema(),
                "Problem": PROBLEM_SCHEMA,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("oglog_openapi", dict)


async def _serve(request: web.Request) -> web.Response:
    return web.Response(body=row_codec.dumps(request.app[_DOCUMENT]), content_type="application/json")


async def _freeze(app: web.Application) -> None:
    app[_DOCUMENT] = build_document(app)


def setup(app: web.Application) -> None:
    """Add GET /openapi.json; the document is built once the app's routes are final (on startup)."""
    app.router.add_get(OPENAPI_PATH, _serve)
    app.on_startup.append(_freeze)
