"""`oglog send` reading a file larger than the SDK's default budget (max_buffer_bytes) delivers every line:
it stops reading while the handler holds half its budget in bytes, so a file sender never reaches the
overflow policy (before: paced by a 50,000-record count, a file of 1,000-character lines lost 21-29 % as
`overflow`, one of 10,000-character lines ~40 %). Real `oglog send` process, real local HTTP server that
parses and validates every entry, all settings at their defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .capture_server import CaptureServer

pytestmark = pytest.mark.timeout(120)

#: Longest one `oglog send` may run here (it takes a few seconds; the default --timeout is 15 s).
SEND_DEADLINE = 90.0


def _send(path: Path, url: str) -> subprocess.CompletedProcess[str]:
    with path.open("rb") as stdin:
        return subprocess.run(
            [sys.executable, "-m", "oglogstream.cli", "send", "--url", url, "--service", "x"],
            stdin=stdin, capture_output=True, text=True, timeout=SEND_DEADLINE, check=False,
        )


@pytest.mark.parametrize(
    ("lines", "width"),
    [
        # The reviewer's file (8-digit number + 992 characters a line), scaled up past the default budget:
        # 100,000 records charged ~1.8 KB each while captured are ~180 MB, more than 128 MiB.
        (100_000, 1000),
        # Large messages (charged their text): 20,000 x 10,000 characters are ~200 MB, and 1,000 of them
        # (one look of the old pacing) ~10 MB.
        (20_000, 10_000),
    ],
)
def test_a_file_larger_than_the_budget_is_delivered_entirely(tmp_path: Path, lines: int, width: int) -> None:
    """Every line is accepted exactly once, exit 0, nothing on stderr."""
    path = tmp_path / "big.txt"
    with path.open("w") as out:
        filler = "w" * (width - 8)
        for i in range(lines):
            out.write(f"{i:08d}{filler}\n")
    with CaptureServer(keep_entries=False) as server:
        result = _send(path, server.url)
        assert server.wait_entries(lines, timeout=10)
        count, unique, problems = server.entry_count, len(server.ids), server.problems
    assert (result.returncode, result.stderr) == (0, "")
    assert (count, unique, problems) == (lines, lines, [])
