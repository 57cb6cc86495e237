"""The client commands (and `oglog dead-letters`) against servers that answer the hostile or odd way: bounded
memory, a total deadline per request, one clear line and a documented exit code, never a traceback, and
server text escaped for the terminal."""

from __future__ import annotations

import asyncio
import json
import re
import sys

import pytest
from aiohttp import web
from oglogstream.cli._http import MAX_PAGE, MAX_RESPONSE_BYTES, REQUEST_DEADLINE, Target
from oglogstream.wire import MAX_SINGLE_BODY_BYTES

from tests.stack.helpers import running_app

from .helpers import Result, oglog
from .hostile import HEALTH, Odd, odd_server, raw_server, streaming_server

pytestmark = pytest.mark.timeout(120)

#: Exit codes docs/cli.md documents for a command that did not succeed.
DOCUMENTED_FAILURES = {1, 2, 3}
#: A bound on any one run here: a command that hangs is killed and fails the test (helpers.oglog).
BOUND = 40.0
#: Raw control characters a server could use to drive the terminal (every C0 but the newline ending a line).
_RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
#: Every command that reads an answer, as run against an odd server.
COMMANDS: dict[str, tuple[str, ...]] = {
    "query": ("query",),
    "query --json": ("query", "--json"),
    "stats": ("stats",),
    "stats --json": ("stats", "--json"),
    "doctor": ("doctor", "--timeout", "10"),
    "tail": ("tail", "--count", "1"),
    "dead-letters list": ("dead-letters", "list"),
    "bench": ("bench", "--rate", "20", "--duration", "0.5", "--batch-size", "10"),
    "send": ("send", "--timeout", "3", "hello"),
}


def assert_clean_failure(result: Result, name: str, *, accepted: bool = False) -> None:
    """Exit code in the documented set (0 too when the command may take the answer as a success:
    `accepted`), no traceback, no raw control character on stderr or stdout."""
    assert result.code in DOCUMENTED_FAILURES | ({0} if accepted else set()), (name, result)
    assert "Traceback" not in result.err, (name, result.err)
    assert not _RAW_CONTROL.search(result.err), (name, result.err)
    assert not _RAW_CONTROL.search(result.out), (name, result.out)


#: The commands that read and print an answer (not bench and send, which post).
READERS = ("query", "query --json", "stats", "stats --json", "doctor", "tail", "dead-letters list")


async def run_everywhere(url: str, names: tuple[str, ...] = tuple(COMMANDS)) -> dict[str, Result]:
    """The commands of COMMANDS called `names` against `url`, all at once."""
    runs = [oglog(*COMMANDS[name], "--url", url, timeout=BOUND) for name in names]
    return dict(zip(names, await asyncio.gather(*runs), strict=True))


DEEP = b"[" * 100_000
DEEP_VALID = b"[" * 100_000 + b"]" * 100_000
ESCAPES = '{"type":"about:blank","status":500,"detail":"\\u001b]0;pwned\\u0007\\u001b[2Jgone"}'
ODD_ANSWERS = [
    Odd("array of non-entries", body=b'[1,"x"]'),
    Odd("deeply nested, unterminated", body=DEEP),
    Odd("deeply nested, valid JSON", body=DEEP_VALID),
    Odd("300 levels deep inside an entry", body=b'[{"attributes":{"a":' + b"[" * 300 + b"]" * 300 + b"}}]"),
    Odd("not JSON", body=b"<html>\x1b[31mhello\x07</html>", headers=(("Content-Type", "text/html"),)),
    Odd("invalid UTF-8", body=b"\xff\xfe\xfa"),
    Odd("empty 200", body=b""),
    Odd("null", body=b"null"),
    Odd("a string", body=b'"\\u001b[2J"'),
    Odd("an object of odd values", body=b'{"logs_by_level":[1],"logs_by_service":"x","dead_letters":7}'),
    Odd("204", status=204),
    Odd("302 loop", status=302, headers=(("Location", "{path}"),)),
    Odd("302 elsewhere", status=302, headers=(("Location", "ftp://example.invalid/x"),)),
    Odd("500 problem with escapes", status=500, body=ESCAPES.encode(),
        headers=(("Content-Type", "application/problem+json"),)),
    Odd("400 deeply nested", status=400, body=DEEP),
    Odd("200 claiming gzip", body=b"not gzip at all",
        headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip"))),
    Odd("healthy, then an array of non-entries", body=b'[1,"x"]', healthy=True),
    Odd("healthy, then deeply nested", body=DEEP, healthy=True),
    Odd("healthy, then 500 with escapes", status=500, body=ESCAPES.encode(), healthy=True),
    Odd("live: array", ws='[1,"x"]'),
    Odd("live: deeply nested", ws=DEEP.decode()),
    Odd("live: not JSON", ws="\x1b]0;pwned\x07"),
]


class TestOddAnswers:
    @pytest.mark.parametrize("odd", ODD_ANSWERS, ids=[odd.name for odd in ODD_ANSWERS])
    async def test_no_command_shows_a_traceback_or_hangs(self, odd: Odd) -> None:
        """Each odd answer, to each command: one line on stderr (doctor, bench and send: their reports), an
        exit code from the documented set (send: 0 for a 2xx, which the SDK counts as accepted), no
        traceback, no raw control character, done within BOUND."""
        async with odd_server(odd) as url:
            results = await run_everywhere(url)
        for name, result in results.items():
            sent_ok = name == "send" and 200 <= odd.status < 300
            assert_clean_failure(result, f"{odd.name} / {name}", accepted=sent_ok)
            if name not in ("doctor", "bench", "send"):  # these report on several lines by design
                assert result.err.count("\n") == 1, (odd.name, name, result.err)

    async def test_an_array_of_non_entries_is_an_unexpected_answer(self) -> None:
        """`/api/logs` answering `[1,"x"]` (the AttributeError of the report): exit 1 naming what is wrong."""
        async with odd_server(Odd("x", body=b'[1,"x"]')) as url:
            table, as_json = await asyncio.gather(oglog("query", url=url), oglog("query", "--json", url=url))
        for result in (table, as_json):
            assert result.code == 1
            assert result.err == (f"oglog query: error: unexpected answer from {url}/api/logs: entry 0 is a "
                                  f"number, not an object (is {url} an OgLogStream?)\n")
            assert result.out == ""

    async def test_deep_nesting_is_an_unexpected_answer_everywhere(self) -> None:
        """`[` x 100000 (the report's RecursionError): `unexpected answer ... nested too deeply`, exit 1."""
        async with odd_server(Odd("x", body=DEEP, ws=DEEP.decode(), healthy=True)) as url:
            results = await run_everywhere(url, READERS)
        for name, result in results.items():
            assert result.code == 1, (name, result)
            if name == "doctor":  # its POST /log got a 200, not the 202 of an acceptance: ✗ ingestion
                assert "✗ ingestion" in result.out
                continue
            assert "unexpected answer" in (result.out + result.err), (name, result)
            assert "nested too deeply" in (result.out + result.err), (name, result)

    async def test_json_deeper_than_the_limit_is_refused_before_printing(self) -> None:
        """An entry whose attributes nest 300 levels (valid JSON) is refused as a whole: exit 1, one line."""
        body = b'[{"attributes":{"a":' + b"[" * 300 + b"]" * 300 + b"}}]"
        async with odd_server(Odd("x", body=body)) as url:
            result = await oglog("query", url=url)
        assert result.code == 1 and result.out == ""
        assert "unexpected answer" in result.err and "nested deeper than 200 levels" in result.err

    async def test_more_entries_than_asked_for_do_not_stretch_the_limit(self) -> None:
        """A server answering 50 entries (and a cursor) to `limit=3`: query prints 3."""
        body = json.dumps([{"message": f"m{i}"} for i in range(50)]).encode()
        odd = Odd("x", body=body, headers=(("Content-Type", "application/json"), ("X-Next-Cursor", "c")))
        async with odd_server(odd) as url:
            result = await oglog("query", "--limit", "3", "--json", url=url)
        assert result.code == 0, result.err
        assert [json.loads(line)["message"] for line in result.out.splitlines()] == ["m0", "m1", "m2"]

    async def test_a_redirect_loop_ends_tail_with_one_line(self) -> None:
        """A 302 loop on /ws/live (websockets' SecurityError in the report): exit 1, `unexpected answer`."""
        async with odd_server(Odd("x", status=302, headers=(("Location", "{path}"),))) as url:
            result = await oglog("tail", url=url, timeout=BOUND)
        assert result.code == 1
        assert result.err.startswith(f"oglog tail: error: unexpected answer from ws{url[4:]}/ws/live: ")
        assert "redirect" in result.err and result.err.count("\n") == 1

    async def test_dead_letters_list_names_the_unexpected_answer(self) -> None:
        """A 200 with garbage (`Expecting value` / `KeyError: 'dead_letters'` in the report): one line that
        says the answer is unexpected and what is wrong with it, exit 1."""
        cases = {b"garbage": "not JSON", b'{"total":1}': "dead_letters: Field required"}
        for body, why in cases.items():
            async with odd_server(Odd("x", body=body)) as url:
                result = await oglog("dead-letters", "list", "--url", url, timeout=BOUND)
            assert result.code == 1
            assert result.err.startswith(f"oglog: error: GET {url}/api/dead-letters?after=0&limit=50: "
                                         "unexpected answer: ")
            assert why in result.err
            assert "cannot reach" not in result.err and "could not start" not in result.err


class TestEscapedProblems:
    async def test_a_problem_detail_with_escapes_reaches_stderr_escaped(self) -> None:
        """A problem `detail` with ESC/BEL is shown with `\\u001b`, `\\u0007`, as log data is: query, stats,
        dead-letters on stderr, doctor in its report."""
        async with odd_server(Odd("x", status=500, body=ESCAPES.encode(), healthy=True)) as url:
            query, stats, dead, doctor = await asyncio.gather(
                oglog("query", url=url), oglog("stats", url=url),
                oglog("dead-letters", "list", "--url", url), oglog("doctor", url, "--timeout", "5"))
        shown = "HTTP 500: \\u001b]0;pwned\\u0007\\u001b[2Jgone"
        assert query.err == f"oglog query: error: {shown}\n"
        assert stats.err == f"oglog stats: error: {shown}\n"
        assert dead.err == f"oglog: error: GET {url}/api/dead-letters?after=0&limit=50: {shown}\n"
        assert shown in doctor.out and doctor.code == 1
        for result in (query, stats, dead, doctor):
            assert "\x1b" not in result.err + result.out and "\x07" not in result.err + result.out


async def _endless_entries(response: web.StreamResponse) -> None:
    """`[{"message":"AAAA…` for up to 4 GiB, 1 MiB per write (the report's attack)."""
    await response.write(b'[{"message":"')
    chunk = b"A" * 2**20
    for _ in range(4 * 1024):
        await response.write(chunk)


async def _one_byte_a_tick(response: web.StreamResponse) -> None:
    """`[` and then one space every 0.2 s, for up to 60 s: never complete, never idle long enough for a read
    timeout."""
    await response.write(b"[")
    for _ in range(300):
        await asyncio.sleep(0.2)
        await response.write(b" ")


#: The cap as the error line gives it.
CAP_MIB = f"{MAX_RESPONSE_BYTES / 2**20:.1f}"
_MEASURED = """
import resource, subprocess, sys
code = subprocess.run([sys.executable, "-m", "oglogstream.cli", *sys.argv[1:]], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True)
print(code.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code.stderr, sep="\\n", end="")
"""


class TestUnboundedBodies:
    def test_the_cap_is_above_the_largest_legitimate_page(self) -> None:
        """A page of MAX_PAGE entries, each as large as POST /log accepts, fits under the cap."""
        assert MAX_RESPONSE_BYTES > MAX_PAGE * MAX_SINGLE_BODY_BYTES

    @pytest.mark.parametrize("args", [("query",), ("query", "--json"), ("stats",)])
    async def test_an_endless_body_stops_at_the_cap_in_bounded_memory(self, args: tuple[str, ...]) -> None:
        """A 4 GiB answer: exit 1, `larger than 64.5 MiB`, and the command's peak memory stays under twice
        the cap (97 MiB measured; it used 10.7 GB before)."""
        async with streaming_server(_endless_entries) as url:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _MEASURED, *args, "--url", url, stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), BOUND)
        code, max_rss_kib, err = out.decode().split("\n", 2)
        assert int(code) == 1, err
        route = "logs" if args[0] == "query" else "stats"
        assert err == (f"oglog {args[0]}: error: unexpected answer from {url}/api/{route}: larger than "
                       f"{CAP_MIB} MiB, the most one answer may be\n")
        print(f"peak RSS of oglog {' '.join(args)}: {int(max_rss_kib) / 1024:.0f} MiB")
        assert int(max_rss_kib) * 1024 < 2 * MAX_RESPONSE_BYTES

    async def test_doctor_and_dead_letters_stop_at_the_cap_too(self) -> None:
        """The same endless body to doctor's /health and to dead-letters: one clear failure, exit 1."""
        async with streaming_server(_endless_entries) as url:
            doctor, dead = await asyncio.gather(oglog("doctor", url, timeout=BOUND),
                                                oglog("dead-letters", "list", "--url", url, timeout=BOUND))
        assert doctor.code == 1 and f"larger than {CAP_MIB} MiB" in doctor.out
        assert dead.code == 1 and f"larger than {CAP_MIB} MiB" in dead.err and dead.err.count("\n") == 1


class TestTotalDeadline:
    def test_a_request_has_a_total_deadline_by_default(self) -> None:
        """Without --timeout a request still has its named total deadline."""
        import argparse

        target = Target.from_args(argparse.Namespace(url="http://127.0.0.1:1", api_key=None))
        assert target.deadline == REQUEST_DEADLINE

    @pytest.mark.parametrize("args", [("query",), ("query", "--json"), ("stats",), ("stats", "--json")])
    async def test_a_trickling_body_ends_at_the_timeout(self, args: tuple[str, ...]) -> None:
        """`[` then one byte every 0.2 s (the report's > 75 s): `--timeout 2` ends it in one line, exit 3."""
        async with streaming_server(_one_byte_a_tick) as url:
            result = await oglog(*args, "--timeout", "2", url=url, timeout=BOUND)
        assert result.code == 3
        assert re.fullmatch(rf"oglog {args[0]}: error: {url}/api/\w+: no complete answer within 2 s \(.*\)\n",
                            result.err), result.err

    async def test_doctor_timeout_bounds_the_whole_check(self) -> None:
        """doctor --timeout 2 against a trickling /health, and against a healthy /health whose /api/logs
        trickles: exit 3 with its report, well before the trickle ends (60 s)."""
        async with streaming_server(_one_byte_a_tick) as first, \
                streaming_server(_one_byte_a_tick, healthy=True) as second:
            at_health, later = await asyncio.gather(oglog("doctor", first, "--timeout", "2", timeout=BOUND),
                                                    oglog("doctor", second, "--timeout", "2", timeout=BOUND))
        assert at_health.code == 3 and "✗ reachable" in at_health.out
        assert "no complete answer" in at_health.out
        assert later.code == 3 and "✓ reachable" in later.out and "no complete answer" in later.out

    async def test_doctor_runs_out_of_time_as_a_failed_round_trip(self) -> None:
        """A stack that accepts the probe but never finds it: at --timeout the round trip fails (exit 1),
        it is not reported as a request cut short (exit 3)."""

        async def health(request: web.Request) -> web.Response:
            return web.Response(body=HEALTH, content_type="application/json")

        async def accept(request: web.Request) -> web.Response:
            return web.json_response({"accepted": 1}, status=202)

        async def nothing(request: web.Request) -> web.Response:
            return web.json_response([])

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_post("/log", accept)
        app.router.add_get("/api/logs", nothing)
        async with running_app(None, app=app) as url:  # type: ignore[arg-type]
            result = await oglog("doctor", url, "--timeout", "2", timeout=BOUND)
        assert result.code == 1, result.out
        assert "✗ round trip" in result.out and "not queryable within 2 s" in result.out

    async def test_trickled_headers_end_at_the_timeout(self) -> None:
        """A server that sends its status line and headers one byte every 0.2 s is bounded the same way."""

        async def trickle(writer: asyncio.StreamWriter) -> None:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 300:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)

        async with raw_server(trickle) as url:
            result = await oglog("query", "--timeout", "2", url=url, timeout=BOUND)
        assert result.code == 3 and "no complete answer within 2 s" in result.err

    async def test_an_answer_that_is_not_http_is_one_line(self) -> None:
        """Bytes that are not HTTP at all: one line, a documented code, for every command."""

        async def garbage(writer: asyncio.StreamWriter) -> None:
            writer.write(b"\x00\xff\x1b[2J not http\r\n\r\n")
            await writer.drain()

        async with raw_server(garbage) as url:
            results = await run_everywhere(url)
        for name, result in results.items():
            assert_clean_failure(result, name)


class TestSendTrustsTheSdk:
    async def test_a_2xx_with_any_body_counts_as_accepted(self) -> None:
        """`send` reports what the SDK counts: a 2xx is accepted whatever its body (docs/cli.md says so and
        points to `doctor`), a 2xx listing the entry as rejected is not, a 400 with garbage is a refusal."""
        async with odd_server(Odd("x", body=b"\x1b[2Jgarbage")) as garbage_200, \
                odd_server(Odd("x", status=202, body=json.dumps(
                    {"accepted": 0, "rejected": [{"index": 0, "reason": "nope"}]}).encode())) as rejecting, \
                odd_server(Odd("x", status=400, body=b"\x1b[2Jgarbage")) as refusing:
            ok, rejected, refused = await asyncio.gather(
                oglog("send", "--timeout", "5", "hello", url=garbage_200, timeout=BOUND),
                oglog("send", "--timeout", "5", "hello", url=rejecting, timeout=BOUND),
                oglog("send", "--timeout", "5", "hello", url=refusing, timeout=BOUND))
        assert ok.code == 0 and ok.err == ""
        summary = "0 of 1 entries accepted; not accepted: 1"
        assert rejected.code == 1 and f"{summary} (rejected by the server, entry by entry)" in rejected.err
        assert refused.code == 1 and f"{summary} (refused by the server)" in refused.err
        assert_clean_failure(refused, "send to a 400 with garbage")


class TestBenchAgainstOddAnswers:
    @pytest.mark.parametrize("odd", [
        Odd("202 deeply nested", status=202, body=DEEP, healthy=True),
        Odd("202 claiming more than was sent", status=202, body=b'{"accepted": 1000000000}', healthy=True),
        Odd("202 not JSON", status=202, body=b"\x1b[2Jok", healthy=True),
    ], ids=lambda odd: odd.name)
    async def test_bench_counts_an_odd_202_and_never_overcounts(self, odd: Odd) -> None:
        """A 202 whose body is not `{"accepted": N}` counts no entry (`202 (unexpected body)`, exit 1); a
        count larger than the batch counts the batch. No traceback from a worker thread."""
        async with odd_server(odd) as url:
            result = await oglog("bench", url, "--rate", "20", "--duration", "0.5", "--batch-size", "10",
                                 timeout=BOUND)
        assert "Traceback" not in result.err and not _RAW_CONTROL.search(result.err + result.out)
        if odd.name.startswith("202 claiming"):
            assert result.code == 0 and "refused    0" in result.out and "(10 accepted in" in result.out
        else:
            assert result.code == 1 and "202 (unexpected body): 1" in result.out

    async def test_bench_stops_reading_an_endless_answer(self) -> None:
        """An endless body to /health: bench ends with one line (exit 1) instead of filling memory."""
        async with streaming_server(_endless_entries) as url:
            result = await oglog("bench", url, "--duration", "0.5", timeout=BOUND)
        assert result.code == 1 and f"larger than {CAP_MIB} MiB" in result.err
        assert result.err.count("\n") == 1
