"""Review finding 3: a handler built inside a multiprocessing child (a Pool initializer, as the docs advise
for spawn and forkserver) delivers every record however the pool ends, with default settings."""

from __future__ import annotations

import collections
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .capture_server import CaptureServer

_POOL = textwrap.dedent(
    """
    import logging, multiprocessing, sys
    import oglogstream

    def setup(url):
        log = logging.getLogger("pool")
        log.propagate = False
        log.setLevel(logging.INFO)
        log.addHandler(oglogstream.OgLogHandler(url, "pool-init"))  # defaults

    def f(i):
        logging.getLogger("pool").info("task %d", i)
        return i

    if __name__ == "__main__":
        method, style, url = sys.argv[1:4]
        ctx = multiprocessing.get_context(method)
        if style == "with":  # Pool.__exit__ SIGTERMs the workers as soon as map() returned
            with ctx.Pool(2, initializer=setup, initargs=(url,)) as p:
                assert p.map(f, range(20)) == list(range(20))
        else:  # workers get their sentinel and end normally (os._exit under fork/forkserver: no atexit)
            p = ctx.Pool(2, initializer=setup, initargs=(url,))
            assert p.map(f, range(20)) == list(range(20))
            p.close()
            p.join()
    """
)

_METHODS = [m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()]


@pytest.mark.parametrize("style", ["with", "closejoin"])
@pytest.mark.parametrize("method", _METHODS)
def test_pool_initializer_handler_delivers_all_records(
    server: CaptureServer, tmp_path: Path, method: str, style: str
) -> None:
    """20 tasks each log once in workers whose handler the initializer built: 20 of 20 arrive, once each."""
    script = tmp_path / "pool_init_app.py"
    script.write_text(_POOL)
    result = subprocess.run([sys.executable, str(script), method, style, server.url], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert server.wait_entries(20, 5), (server.entry_count, result.stderr)
    counts = collections.Counter(str(e["message"]) for e in server.entries)
    assert counts == collections.Counter({f"task {i}": 1 for i in range(20)}), result.stderr
