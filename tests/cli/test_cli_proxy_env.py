"""The `oglog` commands route as the SDK does: through the proxies the environment names (found by a new
user's review: `query`, `stats` and `doctor` went direct, so `oglog doctor` passed where the handler, which
uses the proxy, could not deliver), with the request deadline on every pool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from oglogstream._deadline import DeadlineBackend
from oglogstream.cli._http import Target

from ..sdk.proxy_helpers import FixedAnswer, dead_port
from .helpers import Result, oglog


@pytest.fixture
def stack_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A live local HTTP server, and no proxy settings inherited from the machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = FixedAnswer(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
    yield server.url
    server.close()


def test_a_command_client_goes_through_the_environments_proxy(
    stack_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY naming a port nothing listens on: the request fails at the proxy, it does not go direct."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with Target(stack_url, None).client() as client, pytest.raises(httpx.ConnectError):
        client.get("/health")


def test_no_proxy_lets_a_command_client_go_direct(stack_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_PROXY naming the host wins, as for the SDK."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with Target(stack_url, None).client() as client:
        assert client.get("/health").status_code == 200


def test_every_pool_of_a_command_client_has_the_request_deadline(
    stack_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct pool and the proxy's carry the DeadlineBackend that bounds a whole request."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with Target(stack_url, None).client() as client:
        pools = [client._transport._pool, *(t._pool for t in client._mounts.values() if t is not None)]
        assert len(pools) >= 2 and all(isinstance(p._network_backend, DeadlineBackend) for p in pools)


def _run(*args: str, url: str, env: dict[str, str]) -> Result:
    return asyncio.run(oglog(*args, url=url, env=env))


def test_doctor_and_query_name_the_proxy_that_fails_and_hide_its_password(stack_url: str) -> None:
    """Review: with the proxy refusing, `oglog doctor` said "cannot reach http://...: Connection refused",
    fix "start the stack", and `query` alike: the word proxy never appeared, so the user looked at the wrong
    machine. Now both name the proxy and its variable (redacted) and doctor's fix points at it."""
    port = dead_port()
    env = {"HTTP_PROXY": f"http://bob:S3cretPW@127.0.0.1:{port}"}
    named = f"via proxy http://[REDACTED]@127.0.0.1:{port} (HTTP_PROXY)"
    doctor = _run("doctor", url=stack_url, env=env)
    query = _run("query", url=stack_url, env=env)
    assert doctor.code == query.code == 3
    assert named in doctor.out + doctor.err and "check the proxy the environment names" in doctor.out
    assert named in query.err
    assert "S3cretPW" not in doctor.out + doctor.err + query.out + query.err


def test_a_proxys_407_is_said_to_be_the_proxys(stack_url: str) -> None:
    """Review: `oglog query` printed `HTTP 407: <html>...` and doctor advised "check --url"; the 407 is the
    proxy's, asking for credentials, and both now say so."""
    proxy = FixedAnswer(407, {"Proxy-Authenticate": 'Basic realm="corp"', "Content-Type": "text/html"},
                           b"<html>proxy 407</html>")
    try:
        env = {"HTTP_PROXY": proxy.url}
        query = _run("query", url=stack_url, env=env)
        doctor = _run("doctor", url=stack_url, env=env)
    finally:
        proxy.close()
    assert query.code == 1 and "HTTP 407" in query.err and "asks for credentials" in query.err
    assert doctor.code == 1 and "asks for credentials" in doctor.out
    assert "check the proxy the environment names" in doctor.out
