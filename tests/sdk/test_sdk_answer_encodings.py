"""Answers are decoded as httpx decoded them before `_answer.AnswerReader` (raw deflate, Content-Encoding
lists, several gzip members), reading stops where the compressed stream ends, and a 2xx whose body cannot be
read (an encoding we do not decode, a cut-short or corrupt body) counts as accepted AND says so on stderr.
Real local HTTP servers; both transports."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import zlib
from collections.abc import Iterator

import pytest
from oglogstream import OgLogHandler, _diag
from oglogstream._answer import MAX_GZIP_MEMBERS
from oglogstream._buffer import Batch
from oglogstream._settings import Settings
from oglogstream._transport import AsyncHttpTransport, HttpTransport, Outcome, SendResult

from .answer_server import AnswerServer

ANSWER = json.dumps({"rejected": [{"index": 1, "error": "bad level"}], "rejected_count": 1}).encode()


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@pytest.fixture
def server() -> Iterator[AnswerServer]:
    with AnswerServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_diag_topic() -> None:
    """An earlier test's announcement would rate-limit this test's."""
    _diag._last.pop("unread_answer", None)


def send(url: str, kind: str) -> SendResult:
    """One 2-entry batch through the `kind` transport with default settings."""
    settings = Settings.build(url, "svc")
    batch = Batch("b-1", 1, [b'{"message":"m0"}\n', b'{"message":"m1"}\n'])
    if kind == "sync":
        transport = HttpTransport(settings)
        try:
            return transport.send(batch)
        finally:
            transport.close()

    async def go() -> SendResult:
        client = AsyncHttpTransport(settings)
        try:
            return await client.send(batch)
        finally:
            await client.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("deflate", raw_deflate(ANSWER)),
        ("gzip, gzip", gz(gz(ANSWER))),
        ("gzip, identity", gz(ANSWER)),
        ("x-gzip", gz(ANSWER)),
        ("deflate, gzip", gz(zlib.compress(ANSWER))),
        ("gzip", gz(ANSWER[:20]) + gz(ANSWER[20:])),
    ],
    ids=["raw-deflate", "gzip-gzip", "gzip-identity", "x-gzip", "deflate-gzip", "two-gzip-members"],
)
def test_what_httpx_decoded_is_decoded(server: AnswerServer, kind: str, encoding: str, body: bytes) -> None:
    """A partial accept in any encoding httpx decodes without extra packages still names its refusal
    (before: counted as accepted in full, the refused entry as sent)."""
    server.answer = (202, {"Content-Encoding": encoding}, body)
    result = send(server.url, kind)
    assert (result.outcome, result.rejected_count, result.rejected, result.unread) == (
        Outcome.OK, 1, ((1, "bad level"),), None
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("encoding", "body", "problem"),
    [
        ("br", b"\x8b\x03\x80{}\x03", "Content-Encoding 'br' is not one we decode"),
        ("gzip, br", b"xx", "Content-Encoding 'gzip, br' is not one we decode"),
        ("gzip", gz(ANSWER)[:-12], "truncated"),
        ("gzip", b"not gzip at all", "does not decode as 'gzip'"),
    ],
    ids=["br", "gzip-br", "truncated-gzip", "corrupt-gzip"],
)
def test_an_unreadable_2xx_counts_as_accepted_and_says_why(
    server: AnswerServer, kind: str, encoding: str, body: bytes, problem: str
) -> None:
    """An answer we cannot read: accepted in full (the server took the batch), with the reason kept for
    the announcement (a truncated gzip used to decode its prefix silently)."""
    server.answer = (200, {"Content-Encoding": encoding}, body)
    result = send(server.url, kind)
    assert (result.outcome, result.rejected_count) == (Outcome.OK, 0)
    assert result.unread is not None and problem in result.unread


def test_the_handler_announces_an_unreadable_answer_once(
    server: AnswerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Default handler, two batches answered in `br`: both count as sent, nothing as dropped, and stderr
    says once that the answers could not be read (before: silent)."""
    server.answer = (200, {"Content-Encoding": "br"}, b"\x8b\x03\x80{}\x03")
    handler = OgLogHandler(server.url, "answers")
    logger = logging.getLogger("sdktest.unread_answer")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(2):
            logger.warning("record %d", i)
            assert handler.flush(10)
        stats = handler.stats()
    finally:
        logger.removeHandler(handler)
        handler.close(5)
    assert stats.sent == 2 and stats.dropped == {}
    lines = [line for line in capsys.readouterr().err.splitlines() if "could not be read" in line]
    assert lines == [
        "oglogstream: [answers] the server accepted a batch of 1 records with an answer that could not be"
        " read (Content-Encoding 'br' is not one we decode): all counted as sent; entries it may list as"
        " refused are not counted"
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("status", "encoding", "body"),
    [(401, "deflate", raw_deflate(b'{"title":"bad key"}')), (503, "gzip, gzip", gz(gz(b"bad key, busy")))],
    ids=["401-raw-deflate", "503-gzip-gzip"],
)
def test_an_error_answer_keeps_its_text(
    server: AnswerServer, kind: str, status: int, encoding: str, body: bytes
) -> None:
    """The text of an error answer in any encoding httpx decodes is quoted (before: an empty quote)."""
    server.answer = (status, {"Content-Encoding": encoding}, body)
    result = send(server.url, kind)
    assert result.outcome is (Outcome.DROP if status == 401 else Outcome.RETRY)
    assert result.error is not None and "bad key" in result.error


class EndlessServer:
    """Answers each POST with a chunked 200 (Content-Encoding: gzip) that starts with `head` and then sends
    `tail` until the client hangs up (or the test ends): an answer with no end."""

    def __init__(self, head: bytes, tail: bytes) -> None:
        self._head, self._tail = head, tail
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1]) for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                conn.sendall(b"%x\r\n%s\r\n" % (len(self._head), self._head))
                frame = b"%x\r\n%s\r\n" % (len(self._tail), self._tail)
                while not self._stop.is_set():
                    conn.sendall(frame)
            except OSError:  # the client hung up: what a reader that stops does
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("head", "tail", "unread"),
    [
        (gz(ANSWER), b"\0" * 65536, None),
        (gz(ANSWER), gz(b"") * 100, f"more than {MAX_GZIP_MEMBERS} gzip members"),
    ],
    ids=["bytes-after-the-end", "endless-empty-members"],
)
def test_reading_stops_at_the_end_of_the_compressed_stream(
    kind: str, head: bytes, tail: bytes, unread: str | None
) -> None:
    """A complete gzip answer followed by endless bytes is read up to its end (its refusal listed), and
    endless empty gzip members stop at MAX_GZIP_MEMBERS (before: every attempt ran into its deadline and
    was retried, with the bytes after the end kept in memory)."""
    server = EndlessServer(head, tail)
    try:
        result = send(server.url, kind)
    finally:
        server.close()
    assert result.outcome is Outcome.OK and result.error is None
    assert result.unread == unread
    if unread is None:
        assert (result.rejected_count, result.rejected) == (1, ((1, "bad level"),))
