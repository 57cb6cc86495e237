"""SDK burst benchmark, DEFAULT settings: a tight loop of 50,000 distinct 1,000-character messages.

Run from the project root (about 10 s a round):  .venv/bin/python -m benchmarks.sdk_burst_bench [--rounds 3]
Baseline of the same run (the budget before 2026-11-30):  ... --max-buffer-bytes 67108864
Other shapes:  ... --records 100000 --width 300;  with a disk spool (a temp dir per round):  ... --spool

Each round is its own process against one healthy local server (`tests.sdk.capture_server --ids`, a separate
process that parses every entry and counts unique ids). The process creates `OgLogHandler(url, service)` and
nothing else (unless --max-buffer-bytes is given), logs the burst as fast as one thread can, then close().
Reported per round: records delivered (accepted, exactly once: the server's unique ids), lost as `overflow`,
the burst's wall time and the process's peak RSS. The caller outruns the encoder during such a burst, so
what the caller-side intake holds is what `max_buffer_bytes` must cover (docs/sdk.md "Why these defaults").
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

RECORDS = 50_000
WIDTH = 1000
#: Longest one round may take (the burst takes ~1-3 s, delivering it a few more).
ROUND_DEADLINE = 120.0


def _child(url: str, args: argparse.Namespace) -> None:
    from oglogstream import OgLogHandler

    options: dict[str, object] = {}
    if args.max_buffer_bytes is not None:
        options["max_buffer_bytes"] = args.max_buffer_bytes
    spool = tempfile.TemporaryDirectory(prefix="burst-spool-") if args.spool else None
    if spool is not None:
        options["spool_dir"] = spool.name
    handler = OgLogHandler(url, "burst", **options)  # type: ignore[arg-type]
    logger = logging.getLogger("burst")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    filler = "m" * (args.width - 8)
    began = time.perf_counter()
    for i in range(args.records):
        logger.info(f"{i:08d}{filler}")
    burst = time.perf_counter() - began
    handler.close(60.0)
    stats = handler.stats()
    if spool is not None:
        spool.cleanup()
    print(json.dumps({
        "burst_s": burst, "sent": stats.sent, "dropped": dict(stats.dropped),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


def _count(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/count", timeout=10) as answer:
        counts: dict[str, int] = json.load(answer)
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--width", type=int, default=WIDTH, help="characters per message (>= 8)")
    parser.add_argument("--spool", action="store_true", help="set spool_dir (a temp dir per round)")
    parser.add_argument("--max-buffer-bytes", type=int, default=None, help="(baseline only) not the default")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args)
        return
    from oglogstream._settings import DEFAULT_MAX_BUFFER_BYTES

    budget = args.max_buffer_bytes or DEFAULT_MAX_BUFFER_BYTES
    print(f"burst: {args.records:,} x {args.width:,}-character messages, max_buffer_bytes "
          f"{budget / 2**20:g} MiB"
          f"{' (default)' if args.max_buffer_bytes is None else ' (baseline, not the default)'}"
          f"{', spool_dir set' if args.spool else ''}")
    server = subprocess.Popen([sys.executable, "-m", "tests.sdk.capture_server", "--ids"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        before = _count(url)["unique"]
        for number in range(1, args.rounds + 1):
            command = [sys.executable, "-m", "benchmarks.sdk_burst_bench", "--child", url]
            command += ["--records", str(args.records), "--width", str(args.width)]
            if args.max_buffer_bytes is not None:
                command += ["--max-buffer-bytes", str(args.max_buffer_bytes)]
            if args.spool:
                command.append("--spool")
            child = subprocess.run(
                command, capture_output=True, text=True, timeout=ROUND_DEADLINE, check=True
            )
            result = json.loads(child.stdout.splitlines()[-1])
            unique = _count(url)["unique"]
            overflow = result["dropped"].get("overflow", 0)
            print(f"round {number}: delivered {unique - before:,} ({result['sent']:,} counted sent), "
                  f"overflow {overflow:,} ({overflow / args.records:.1%}), other losses "
                  f"{sum(result['dropped'].values()) - overflow}, burst {result['burst_s']:.2f} s, peak RSS "
                  f"{result['peak_rss_mib']:.0f} MiB", flush=True)
            before = unique
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
