"""`oglog dead-letters`: usage errors exit 2, an unreachable stack exits 1 with one line, the help says which
scope the routes will need. (Listing and replaying a running stack's: tests/faults/test_storage_faults.py.)"""

from __future__ import annotations

import pytest
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.server import cli


def test_help_names_the_actions_and_the_admin_scope(capsys: pytest.CaptureFixture[str]) -> None:
    """`oglog dead-letters --help` lists list/replay and warns about the coming admin scope."""
    with pytest.raises(SystemExit):
        cli.main(["dead-letters", "--help"])
    out = capsys.readouterr().out
    assert "list" in out and "replay" in out and "admin" in out


@pytest.mark.parametrize(
    "args",
    [["replay"], ["replay", "--all", "3"], ["list", "--limit", "0"], ["list", "--after", "-1"]],
)
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Neither or both of --all/SEQ, or a nonsense page: exit 2 and one line, nothing sent."""
    assert cli.main(["dead-letters", *args, "--url", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oglog: error:") and "\n" not in err


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:99999", "ftp://h", "http://127.0.0.1:1/api/logs", "http://h\n"]
)
def test_a_url_that_cannot_be_used_exits_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """As the client commands do (the attacker's `--url 'http://[::1'`: `could not start: InvalidURL`, 1)."""
    assert cli.main(["dead-letters", "list", "--url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oglog: error: --url / OGLOG_URL:") and "\n" not in err


def test_the_url_comes_from_oglog_url_without_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the client commands, `--url` defaults to $OGLOG_URL (the new user's run: it went to :8080)."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OGLOG_URL", url)
    assert cli.main(["dead-letters", "list"]) == 1
    assert f"GET {url}/api/dead-letters" in capsys.readouterr().err


def test_unreachable_stack_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening at --url: exit 1, the URL and the reason on one line."""
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["dead-letters", "list", "--url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oglog: error: GET {url}/api/dead-letters") and "cannot reach" in err
