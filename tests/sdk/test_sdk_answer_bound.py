"""The server's answer to a batch is read with bounded memory by both transports: a gzip bomb (a small body
inflating to 64 MiB) costs at most ~MAX_ANSWER_BYTES of decoded bytes whatever its status, and ordinary
gzip / deflate / identity answers are still read in full (their rejections listed). The CLI's `fetch`
decodes the same way: an error answer's bomb costs its 64 KB cap, not the 64 MiB one chunk inflates to."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from oglogstream._answer import MAX_ANSWER_BYTES
from oglogstream._buffer import Batch
from oglogstream._settings import Settings
from oglogstream._transport import AsyncHttpTransport, HttpTransport, Outcome, SendResult
from oglogstream.cli._http import MAX_ERROR_BODY_BYTES, CliError, Target, fetch, problem_line

from .answer_server import AnswerServer

#: What the bomb inflates to: 16x the bound, so reading it whole is unmistakable.
BOMB_BYTES = 64 * 1024 * 1024
#: Peak traced bytes a bounded read may take: the kept answer (MAX_ANSWER_BYTES + 1), its join and the
#: Response's copy, one decoded step, and the test's own objects.
PEAK_LIMIT = 3 * MAX_ANSWER_BYTES + 2 * 1024 * 1024


def _bomb() -> bytes:
    """A 2xx-shaped JSON answer that lists a rejection, padded to BOMB_BYTES, gzip-compressed (~64 KB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"rejected": [{"index": 0, "error": "e"}], "rejected_count": 1, "pad": "')]
    chunk = b"x" * (1 << 20)
    parts += [packer.compress(chunk) for _ in range(BOMB_BYTES >> 20)]
    parts += [packer.compress(b'"}'), packer.flush()]
    return b"".join(parts)


BOMB = _bomb()


@pytest.fixture
def server() -> Iterator[AnswerServer]:
    with AnswerServer() as srv:
        yield srv


def _batch(n: int = 2) -> Batch:
    return Batch("b-1", 1, [b'{"message":"m%d"}\n' % i for i in range(n)])


def _send(srv: AnswerServer, kind: str) -> tuple[SendResult, int]:
    """(the result, the peak traced bytes while sending) through the `kind` transport."""
    settings = Settings.build(srv.url, "svc", read_timeout=10.0)
    tracemalloc.start()
    try:
        if kind == "sync":
            transport = HttpTransport(settings)
            try:
                result = transport.send(_batch())
            finally:
                transport.close()
        else:

            async def go() -> SendResult:
                transport = AsyncHttpTransport(settings)
                try:
                    return await transport.send(_batch())
                finally:
                    await transport.aclose()

            result = asyncio.run(go())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_gzip_bomb_2xx_answer_is_read_only_up_to_the_bound(server: AnswerServer, kind: str) -> None:
    """A 2xx answer inflating past MAX_ANSWER_BYTES is not read whole; the batch counts as accepted in
    full (what docs/sdk.md says of an answer too long to parse)."""
    server.answer = (202, {"Content-Encoding": "gzip"}, BOMB)
    result, peak = _send(server, kind)
    assert (result.outcome, result.rejected_count, result.rejected) == (Outcome.OK, 0, ())
    assert peak < PEAK_LIMIT, f"peak {peak} B while reading a {BOMB_BYTES} B answer"


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("status", [503, 400])
def test_a_gzip_bomb_error_answer_is_read_only_up_to_the_bound(
    server: AnswerServer, kind: str, status: int
) -> None:
    """An error answer's body is quoted (its start), never read whole."""
    server.answer = (status, {"Content-Encoding": "gzip"}, BOMB)
    result, peak = _send(server, kind)
    assert result.outcome is (Outcome.RETRY if status == 503 else Outcome.DROP)
    assert result.error is not None and '{"rejected": [{"index": 0' in result.error
    assert peak < PEAK_LIMIT, f"peak {peak} B while reading a {BOMB_BYTES} B answer"


ANSWER = json.dumps({"rejected": [{"index": 1, "error": "bad level"}], "rejected_count": 1}).encode()


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("", ANSWER),
        ("identity", ANSWER),
        ("gzip", gzip.compress(ANSWER, mtime=0)),
        ("deflate", zlib.compress(ANSWER)),
    ],
    ids=["none", "identity", "gzip", "deflate"],  # gzip's bytes carry a time: ids must not (xdist collection)
)
def test_an_ordinary_answer_is_decoded_and_its_rejections_listed(
    server: AnswerServer, kind: str, encoding: str, body: bytes
) -> None:
    """Every encoding we announce is decoded, so a partial accept still names what was refused."""
    server.answer = (202, {"Content-Encoding": encoding} if encoding else {}, body)
    result, _ = _send(server, kind)
    assert (result.outcome, result.rejected_count, result.rejected) == (Outcome.OK, 1, ((1, "bad level"),))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_answer_that_does_not_decode_counts_as_unparsable(server: AnswerServer, kind: str) -> None:
    """A body that claims gzip and is not: the batch counts as accepted (an unparsable 2xx body)."""
    server.answer = (202, {"Content-Encoding": "gzip"}, b"not gzip at all")
    result, _ = _send(server, kind)
    assert (result.outcome, result.rejected_count) == (Outcome.OK, 0)


def test_the_cli_reads_an_error_bomb_only_up_to_its_cap(server: AnswerServer) -> None:
    """`oglog` commands' `fetch`: a 500 whose gzip body inflates to 64 MiB keeps 64 KB for its problem
    line and never inflates more than that (before: httpx inflated the first network chunk whole)."""
    server.answer = (500, {"Content-Encoding": "gzip"}, BOMB)
    client = Target(server.url, None).client()
    tracemalloc.start()
    try:
        answer = fetch(client, "GET", "/api/logs", deadline=time.monotonic() + 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        client.close()
    assert answer.status_code == 500
    assert len(answer.content) <= MAX_ERROR_BODY_BYTES + 1
    assert "HTTP 500" in problem_line(answer)
    assert peak < 8 * 1024 * 1024, f"peak {peak} B"


def test_the_cli_refuses_a_2xx_that_does_not_decode(server: AnswerServer) -> None:
    """A 2xx claiming gzip that is not: one clear `unexpected answer` line, no traceback."""
    server.answer = (200, {"Content-Encoding": "gzip"}, b"not gzip at all")
    client = Target(server.url, None).client()
    try:
        with pytest.raises(CliError, match="does not decode"):
            fetch(client, "GET", "/api/logs", deadline=time.monotonic() + 30)
    finally:
        client.close()
