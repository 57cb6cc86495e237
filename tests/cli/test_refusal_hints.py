"""A 403 for the Host or Origin gets advice about the server's allowed names, not about keys (found by a new
user: the machine's host name, refused by allowed_hosts with auth off, got "create a key with the query
scope"); a 401/403 about the key keeps the key advice. Each command that can meet one: query, send, tail."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from .helpers import oglog

NAME_ADVICE = "whatever the key"
KEY_ADVICE = "oglog keys create"


def _refusing(field: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Refuse(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # websockets (oglog tail) reads only HTTP/1.1 answers

        def _refuse(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = json.dumps({"title": "forbidden", "field": field, "reason": "refused here"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _refuse

        def log_message(self, *args: object) -> None:
            pass

    return Refuse


@pytest.fixture(params=["Host", "Authorization"])
def refusing(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A server answering 403 naming `field` to everything: (its URL, the field)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _refusing(request.param))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", [("query", "--since", "5m"), ("send", "--service", "x", "hi"), ("tail",)])
def test_a_refusal_gets_the_advice_that_fits_its_field(
    refusing: tuple[str, str], command: tuple[str, ...]
) -> None:
    """Host: the allowed-names advice and no key advice; Authorization: the key advice."""
    url, field = refusing
    result = asyncio.run(oglog(*command, url=url))
    assert result.code != 0 and "Traceback" not in result.err
    if field == "Host":
        assert NAME_ADVICE in result.err and KEY_ADVICE not in result.err, result.err
    else:
        assert KEY_ADVICE in result.err and NAME_ADVICE not in result.err, result.err
