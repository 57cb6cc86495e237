"""Django under ASGI (AsyncClient): the middleware runs as a coroutine, with the records of WSGI."""

from __future__ import annotations

import asyncio
from typing import Any

import oglogstream
import pytest

from .conftest import ACCESS, APP, Shipped

pytestmark = pytest.mark.usefixtures("django_env")


def async_client() -> Any:
    from django.test import AsyncClient

    return AsyncClient(raise_request_exception=False)


async def test_async_view_gets_request_id_and_access_record_on_the_event_loop(shipping: Shipped) -> None:
    """An async request is handled without a thread hop: the access record is written on the loop's thread."""
    response = await async_client().get("/ahello/7/", headers={"X-Request-ID": "async-7"})
    assert response.status_code == 200 and response["X-Request-ID"] == "async-7"
    (access,) = shipping(ACCESS)
    attributes = access["attributes"]
    assert attributes.pop("http.server.request.duration") >= 0
    assert attributes == {
        "request_id": "async-7",
        "http.request.method": "GET",
        "url.path": "/ahello/7/",
        "http.route": "ahello/<int:pk>/",
        "http.response.status_code": 200,
        "client.address": "127.0.0.1",
    }
    assert access["thread"] == "MainThread"  # a sync middleware would run in a sync_to_async worker thread
    (view_log,) = shipping(APP)
    assert view_log["attributes"] == {"request_id": "async-7"}


async def test_middleware_is_a_coroutine_function_in_an_async_chain(django_env: Any) -> None:
    """Given an async get_response the middleware marks itself a coroutine function (Django checks)."""
    from asgiref.sync import iscoroutinefunction
    from oglogstream.integrations.django import RequestLogMiddleware

    async def get_response(request: Any) -> Any:
        return None

    assert iscoroutinefunction(RequestLogMiddleware(get_response))
    assert not iscoroutinefunction(RequestLogMiddleware(lambda request: None))


async def test_async_exception_gives_one_error_record_with_traceback(shipping: Shipped) -> None:
    """An async view that raises yields a 500 and an ERROR access record carrying the traceback: the only
    shipped record (django.request's "Internal Server Error" reaches the root handler, not OgLogStream)."""
    response = await async_client().get("/aboom/", headers={"X-Request-ID": "async-boom"})
    assert response.status_code == 500 and response["X-Request-ID"] == "async-boom"
    (access,) = shipping(ACCESS)
    assert (access["level"], access["attributes"]["http.response.status_code"]) == ("error", 500)
    assert "ValueError: async kaboom" in access["exception"]
    assert [e["logger"] for e in shipping()] == [ACCESS]


async def test_concurrent_requests_keep_their_own_ids(shipping: Shipped) -> None:
    """Twenty concurrent requests on one loop: every view log carries its own request's id, nothing leaks."""
    client = async_client()
    ids = [f"concurrent-{i}" for i in range(20)]
    responses = await asyncio.gather(
        *(client.get(f"/ahello/{i}/", headers={"X-Request-ID": rid}) for i, rid in enumerate(ids))
    )
    assert [r["X-Request-ID"] for r in responses] == ids
    pairs = {(e["message"], e["attributes"]["request_id"]) for e in shipping(APP)}
    assert pairs == {(f"async hello {i}", rid) for i, rid in enumerate(ids)}
    assert dict(oglogstream.get_context()) == {}


async def test_logged_in_user_is_read_without_sync_database_access(shipping: Shipped) -> None:
    """The lazy request.user is resolved with `auser()` on the loop (no SynchronousOnlyOperation)."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User

    user, _ = await User.objects.aget_or_create(username="bob")
    client = async_client()
    await sync_to_async(client.force_login)(user)
    await client.get("/ahello/1/", headers={"X-Request-ID": "async-user"})
    (access,) = shipping(ACCESS)
    assert access["attributes"]["user.id"] == user.pk
