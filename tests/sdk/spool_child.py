"""A child process for the spool tests: logs through an OgLogHandler with a spool, as the arguments say.

    python -m tests.sdk.spool_child URL SPOOL_DIR TAG COUNT INTERVAL

Prints each record's number right after logging it (so a parent that kills it knows what was logged), then
"done"; then waits for stdin to close, closes the handler and prints its stats as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time

import oglogstream


def main() -> None:
    url, spool_dir, tag, count, interval = sys.argv[1:6]
    handler = oglogstream.OgLogHandler(
        url,
        "spool-child",
        spool_dir=spool_dir,
        flush_interval=0.1,
        batch_size=100,
        backoff_initial=0.01,
        backoff_max=0.2,
        connect_timeout=0.5,
        shutdown_timeout=10.0,
    )
    log = logging.getLogger("spool-child")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    pause = float(interval)
    out = sys.stdout
    for i in range(int(count)):
        log.info("%s %d", tag, i)
        out.write(f"{i}\n")
        out.flush()
        if pause:
            time.sleep(pause)
    print("done", flush=True)
    sys.stdin.read()
    handler.close(10)
    print(json.dumps(dataclasses.asdict(handler.stats())), flush=True)


if __name__ == "__main__":
    main()
