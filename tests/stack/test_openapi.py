"""GET /openapi.json on a real stack (every role, auth on): a valid OpenAPI 3.1 document listing exactly the
routes served, the query parameters each route really accepts, and answer shapes real answers match."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from oglogstream.stack.http import openapi
from oglogstream.stack.ingestion import schema
from openapi_spec_validator import validate

from .auth_helpers import AuthStack, auth_stack
from .helpers import count_rows, wait_for

pytestmark = pytest.mark.timeout(120)

_ALLOWED = re.compile(r"unknown parameter \(allowed: (.*)\)")


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def fetch_document(stack: AuthStack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(stack.base + openapi.OPENAPI_PATH) as resp:
        assert resp.status == 200, await resp.text()  # open: the description holds no data
        return await resp.json()  # type: ignore[no-any-return]


def scope_of(operation: dict[str, Any]) -> str:
    """The key scope an operation documents (the first security alternative), "query" for open ones."""
    security = operation.get("security")
    return security[0]["bearer"][0] if security else "query"


def check_answer(document: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """`body` matches the document's schema for this operation's `status` answer (problems: 4XX/5XX)."""
    responses = document["paths"][path][method]["responses"]
    answer = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    media = answer["content"]
    root = {**next(iter(media.values()))["schema"], "components": document["components"]}
    jsonschema.Draft202012Validator(root).validate(body)


async def test_document_is_valid_openapi_and_lists_exactly_the_served_routes(stack: AuthStack) -> None:
    """The document passes the OpenAPI 3.1 validator, and its (method, path) pairs are the router's."""
    document = await fetch_document(stack)
    validate(document)
    assert document["openapi"] == "3.1.0"
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in stack.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == served and document["x-oglog-undocumented"] == []
    assert ("get", "/api/attributes") in documented and ("get", "/api/keys") in documented
    # The body /log is validated with is the model's own JSON Schema.
    body = document["paths"]["/log"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewEntry"}
    expected = schema.ENTRY.json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs", None)
    assert document["components"]["schemas"]["NewEntry"] == expected
    # Scopes come from the access policy.
    assert document["paths"]["/log"]["post"]["security"][0] == {"bearer": ["ingest"]}
    assert document["paths"]["/api/keys"]["get"]["security"][0] == {"bearer": ["admin"]}
    assert "security" not in document["paths"]["/health"]["get"]


def test_a_route_the_table_does_not_know_is_named_not_fatal() -> None:
    """An app extended with its own route still starts; the route is listed as undocumented."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/health", answer)
    app.router.add_get("/boom", answer)
    document = openapi.build_document(app)
    assert list(document["paths"]) == ["/health"] and document["x-oglog-undocumented"] == ["GET /boom"]


async def test_each_route_documents_the_parameters_the_server_accepts(stack: AuthStack) -> None:
    """For every GET route taking query parameters, the names the server lists in its 400 for an unknown one
    are the names the document lists (`attr.{key}` standing for `attr.*`)."""
    document = await fetch_document(stack)
    checked = 0
    async with aiohttp.ClientSession() as session:
        for path, item in document["paths"].items():
            operation = item.get("get", {})
            query_params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if not query_params:
                continue
            url = stack.base + path.replace("{id}", "abc").replace("{seq}", "1") + "?zz_unknown=1"
            headers = stack.headers(scope_of(operation)) | {"Origin": stack.base}
            async with session.get(url, headers=headers) as resp:
                assert resp.status == 400, (path, resp.status, await resp.text())
                problem = await resp.json()
            check_answer(document, path, "get", 400, problem)
            match = _ALLOWED.search(problem["reason"])
            assert match, problem
            allowed = {name.replace("attr.*", "attr.{key}") for name in match.group(1).split(", ")}
            assert allowed == set(query_params), path
            checked += 1
    assert checked >= 7  # logs, stats, histogram, attributes, context, live, dead letters


async def test_real_answers_match_the_documented_shapes(stack: AuthStack) -> None:
    """Ingest one entry and a batch, then every read route's answer validates against the document."""
    document = await fetch_document(stack)
    service = f"openapi-{uuid.uuid4().hex[:8]}"
    entry = {"level": "info", "message": "described", "service": service, "attributes": {"n": 5, "ok": True}}
    async with aiohttp.ClientSession() as session:
        async with session.post(stack.base + "/log", json=entry, headers=stack.headers("ingest")) as resp:
            assert resp.status == 202
            check_answer(document, "/log", "post", 202, accepted := await resp.json())
        lines = "\n".join(json.dumps(entry | {"message": f"batch {i}"}) for i in range(3))
        headers = stack.headers("ingest") | {"Content-Type": "application/x-ndjson"}
        async with session.post(stack.base + "/logs", data=lines, headers=headers) as resp:
            assert resp.status == 202
            check_answer(document, "/logs", "post", 202, await resp.json())
        bad = {"level": "info"}
        async with session.post(stack.base + "/log", json=bad, headers=stack.headers("ingest")) as resp:
            assert resp.status == 400
            check_answer(document, "/log", "post", 400, await resp.json())
        await wait_for(lambda: _stored(stack, service, 4), timeout=30)

        reads = {
            "/api/logs": f"/api/logs?service={service}",
            "/api/stats": f"/api/stats?service={service}",
            "/api/histogram": f"/api/histogram?service={service}",
            "/api/attributes": f"/api/attributes?service={service}",
            "/api/logs/{id}/context": f"/api/logs/{accepted['id']}/context",
            "/api/dead-letters": "/api/dead-letters",
            "/api/keys": "/api/keys",
            "/health": "/health",
        }
        for path, url in reads.items():
            headers = stack.headers(scope_of(document["paths"][path]["get"]))
            async with session.get(stack.base + url, headers=headers) as resp:
                assert resp.status == 200, (url, await resp.text())
                check_answer(document, path, "get", 200, await resp.json())


async def _stored(stack: AuthStack, service: str, expected: int) -> bool:
    return await count_rows(stack.app, f"service = '{service}'") >= expected


async def test_documented_bounds_are_the_bounds_the_server_enforces(stack: AuthStack) -> None:
    """Every integer parameter's documented maximum is accepted and one more is a 400 naming it; the same for
    the documented number of `service` values."""
    document = await fetch_document(stack)
    checked = 0
    async with aiohttp.ClientSession() as session:
        for path, item in document["paths"].items():
            operation = item.get("get")
            if operation is None or path == "/ws/live":
                continue
            url = stack.base + path.replace("{id}", "no-such-id")
            headers = stack.headers(scope_of(operation))
            for parameter in operation["parameters"]:
                bound = parameter["schema"].get("maximum", parameter["schema"].get("maxItems"))
                if parameter["in"] != "query" or bound is None:
                    continue
                name = parameter["name"]
                for count, refused in ((bound, False), (bound + 1, True)):
                    params: Any = (
                        [(name, f"s{i}") for i in range(count)] if name == "service" else {name: str(count)}
                    )
                    async with session.get(url, params=params, headers=headers) as resp:
                        answer = await resp.json()
                    if refused:
                        assert resp.status == 400 and answer["field"] == name, (path, name, answer)
                    else:
                        assert resp.status != 400, (path, name, answer)
                checked += 1
    assert checked >= 10
