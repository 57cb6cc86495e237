"""Every benchmark runs as its documented command runs it (`python -m benchmarks.X`, from the project root,
default SDK and stack settings) at a small size of its own, exits 0 and prints its report: a benchmark that
crashes fails here, not in front of a reader of docs/benchmarks.md. Numbers are not checked (the machine is
shared); targets live in the benchmarks' own output."""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


@dataclass(frozen=True)
class Smoke:
    """One small run of a benchmark: module (below `benchmarks.`), arguments, a line of its report, what it
    imports, how long it may take (seconds, on a loaded 2-core machine; a stack start alone takes 5-10 s)."""

    module: str
    args: tuple[str, ...]
    report: str
    requires: tuple[str, ...] = ()
    timeout: float = 90.0

    @property
    def command(self) -> str:
        return " ".join((f"benchmarks.{self.module}", *self.args))


STACK = ("nats", "chdb", "aiohttp")
#: The handlers sdk_bench compares OgLogHandler with: the `dev` extra, which `make test` installs.
PEERS = ("opentelemetry.sdk", "opentelemetry.instrumentation.logging", "logstash_async", "logtail")

#: One run per benchmark (and per mode that runs other code). Sizes only shrink: every benchmark keeps the
#: default SDK/stack settings.
CASES = (
    # every case, peers included: a peer that raises is printed as `failed` and its row left out
    Smoke("sdk_bench", ("--records", "500", "--rounds", "1"), "| logtail-python |", PEERS),
    Smoke("sdk_bench_shapes", ("--entries", "500", "--rounds", "1"), "structlog event, level/logger/ISO",
          ("structlog",)),
    Smoke("sdk_encode_bench", ("--records", "2000", "--rounds", "1"), "dicts only (no encoding: the floor)",
          ("orjson", "msgspec")),
    Smoke("sdk_burst_bench", ("--rounds", "1", "--records", "2000"), "round 1: delivered"),
    Smoke("sdk_exception_bench", ("--rounds", "1"), "22 frames: median"),
    Smoke("sdk_async_bench", ("--seconds", "0.5"), "AsyncOgLogClient, server down"),
    Smoke("sdk_outage_bench", ("--outage-seconds", "1", "--cap-records", "80000"), "target (outage:"),
    Smoke("integrations_bench", ("--rounds", "1"), "access records delivered to the capture server:",
          ("django", "flask")),
    Smoke("otlp_json_gil_bench", ("--repeats", "1", "--scale", "0.01"), "decode_json (pieces)",
          ("opentelemetry.proto",)),
    # Against HEAD, not the default old revision: a shallow clone (CI) does not have it.
    Smoke("ingest_decode_bench", ("--before", "HEAD", "--rounds", "1"), "peak RSS growth", STACK),
    Smoke("stack_door_bench", ("--repeats", "1", "--only", "typical batch", "--only", "8 MB gzip bomb"),
          "8 MB gzip bomb to /logs", (*STACK, "opentelemetry.proto")),
    Smoke("stack_ingest_bench", ("--repeat", "1", "--rows", "1000"), "of 1 runs stalled (1,000 rows", STACK),
    Smoke("process_drain_bench", ("--rounds", "1", "--rows", "1000"), "one insert in flight", STACK),
    Smoke("stack_query_bench", ("--sizes", "10000", "--runs", "1", "--live-seconds", "5"),
          "live one-second inserts", STACK),
    Smoke("attr_query_bench", ("--rows", "10000", "--runs", "1"), "`/api/stats` (all matching rows)", STACK),
    Smoke("attr_query_bench", ("--inserts", "--runs", "1"), "processing: upgrade of an old message", STACK),
    Smoke("attr_query_bench", ("--rows-before", "HEAD", "--runs", "1"), "| typed attributes |", STACK),
    Smoke("live_latency_bench", ("--phase-seconds", "1"), "Live tail latency (client and stack", STACK),
    Smoke("live_idle_bench", ("0", "2", "--entries", "10000"), "| idle clients | queryable after |", STACK),
    Smoke("deadletter_page_bench", ("--dead-letters", "3"), "slowest /health: idle", STACK),
)
#: Modules of benchmarks/ with a `__main__` block that are not benchmarks, and why.
NOT_BENCHMARKS = {
    "peers.counting_server": "sdk_bench's server: runs in its smoke runs and tests/sdk/test_sdk_bench_peers",
}
#: Benchmarks without a smoke run, and why (each one here can break unseen: keep it short).
NOT_SMOKED = {
    "sdk_caller_instructions": "callgrind: ~45 s of CPU at --records 20, more than this whole file's budget",
}


def _runnable_modules() -> set[str]:
    """Dotted names (below `benchmarks.`) of the modules that run something under `python -m`."""
    found = set()
    for path in BENCHMARKS.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body):
            found.add(".".join(path.relative_to(BENCHMARKS).with_suffix("").parts))
    return found


def run_benchmark(module: str, args: tuple[str, ...], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` from the project root, in its own process group: on a timeout the group is
    killed (stacks, nats-servers and capture servers the benchmark started included)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{module} {' '.join(args)} still running after {timeout:.0f} s\n"
                    f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # what it left behind; a clean exit leaves nothing
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("case", CASES, ids=[case.command.removeprefix("benchmarks.") for case in CASES])
def test_benchmark_runs_and_reports(case: Smoke) -> None:
    """The benchmark's command at a small size exits 0 and prints its report's key line."""
    for name in case.requires:
        require(name)
    done = run_benchmark(f"benchmarks.{case.module}", case.args, case.timeout)
    shown = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{case.command} exited {done.returncode}\n{shown}"
    assert case.report in done.stdout, f"{case.command}: report line {case.report!r} missing\n{shown}"
    # a part that failed but let the run go on (sdk_bench's peers) or raised somewhere it was caught
    assert " failed: " not in done.stdout, shown
    assert "Traceback" not in done.stdout + done.stderr, shown


def test_every_benchmark_has_a_smoke_run_and_is_in_make_bench() -> None:
    """A new benchmark cannot be added without a smoke run here and a place in `make bench`'s SUITES."""
    from benchmarks.__main__ import SUITES

    runnable = _runnable_modules() - set(NOT_BENCHMARKS)
    assert runnable - set(NOT_SMOKED) == {case.module for case in CASES}
    assert {suite.removeprefix("benchmarks.") for suite in SUITES} == runnable


def test_make_bench_gives_each_suite_its_own_command_line() -> None:
    """`python -m benchmarks NAME ...` runs each suite with no arguments of its own (the names used to reach
    the suite's argparse, which refused them) and goes on past a failing suite, whose name it prints on
    stderr, ending with status 1. sdk_bench_shapes runs at its defaults here (~3 s)."""
    done = run_benchmark("benchmarks", ("sdk_bench_shapes", "no_such_bench"), 90.0)
    shown = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 1, shown
    assert "structlog event, level/logger/ISO" in done.stdout, shown
    assert done.stderr.rstrip().endswith("failed: benchmarks.no_such_bench"), shown
