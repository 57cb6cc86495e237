"""A small Django URLconf and views for the middleware tests (settings come from the conftest fixture)."""

from __future__ import annotations

import asyncio
import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

log = logging.getLogger("tests.integrations.app")


def hello(request: HttpRequest, pk: int) -> JsonResponse:
    log.info("hello %d", pk)
    return JsonResponse({"pk": pk})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def unavailable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("down", status=503)


def boom(request: HttpRequest) -> HttpResponse:
    log.info("about to fail")
    raise RuntimeError("kaboom")


async def ahello(request: HttpRequest, pk: int) -> JsonResponse:
    await asyncio.sleep(0)
    log.info("async hello %d", pk)
    return JsonResponse({"pk": pk})


async def aboom(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    raise ValueError("async kaboom")


urlpatterns = [
    path("hello/<int:pk>/", hello),
    path("health/", health),
    path("unavailable/", unavailable),
    path("boom/", boom),
    path("ahello/<int:pk>/", ahello),
    path("aboom/", aboom),
]
