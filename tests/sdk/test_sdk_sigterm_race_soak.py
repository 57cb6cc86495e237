"""Soak script for the SIGTERM race in Pool workers (not part of the test suite: it holds no test; about
1 s a run):

    .venv/bin/python -m tests.sdk.test_sdk_sigterm_race_soak 300

Runs `with multiprocessing.get_context("fork").Pool(2) as p: p.map(f, range(20))`, where `f` logs once
through a handler with the default settings, N times against a local capture server. A run still going
after 20 s is a hang (`Pool.__exit__` waiting for a worker that never died): its processes are listed, and
its process group is killed. Prints runs, hangs, failed runs, the slowest run and the records delivered.
The numbers are the soak in docs/sdk.md (*SIGTERM the main thread misses*).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

from .capture_server import CaptureServer

HANG_AFTER = 20.0

_POOL_APP = """
    import logging, multiprocessing, sys
    import oglogstream

    log = logging.getLogger("pool")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(oglogstream.OgLogHandler(sys.argv[1], "pool-soak"))  # defaults

    def f(i):
        log.info("task %d", i)
        return i

    if __name__ == "__main__":
        with multiprocessing.get_context("fork").Pool(2) as p:  # __exit__ SIGTERMs the workers at once
            assert p.map(f, range(20)) == list(range(20))
"""


def _one_run(url: str) -> tuple[str, float]:
    """('ok' | 'hang' | 'rc N: stderr', seconds)."""
    started = time.monotonic()
    args = [sys.executable, "-c", textwrap.dedent(_POOL_APP), url]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(args, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=HANG_AFTER)
        outcome = "ok" if proc.returncode == 0 else f"rc {proc.returncode}: {err[-1000:]}"
    except subprocess.TimeoutExpired:
        ps = ["ps", "-o", "pid,ppid,stat,wchan:30,cmd", "-s", str(proc.pid)]
        print(subprocess.run(ps, capture_output=True, text=True).stdout, flush=True)
        outcome = "hang"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the hung run, or a worker left behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return outcome, time.monotonic() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    hangs = fails = 0
    slowest = 0.0
    with CaptureServer() as server:
        for i in range(runs):
            outcome, seconds = _one_run(server.url)
            if outcome == "hang":
                hangs += 1
            elif outcome != "ok":
                fails += 1
            if outcome != "ok":
                print(f"run {i}: {outcome}", flush=True)
            else:
                slowest = max(slowest, seconds)
        delivered = server.entry_count
    print(f"runs {runs} hangs {hangs} fails {fails} slowest run {slowest:.2f} s", flush=True)
    print(f"records delivered {delivered} of {runs * 20} logged", flush=True)


if __name__ == "__main__":
    main()
