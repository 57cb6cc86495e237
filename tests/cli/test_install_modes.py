"""`oglog` with only the SDK installed: client commands and help work, server commands name the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from oglogstream import __version__

pytestmark = pytest.mark.timeout(60)

# A meta-path finder that makes the [stack] extra's packages unimportable, as in `pip install oglogstream`.
SDK_ONLY = """
import sys
from pathlib import Path
class NoStackExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"aiohttp", "nats", "chdb", "pydantic"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoStackExtra())
from oglogstream.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in ("aiohttp", "nats", "chdb", "pydantic") if m in sys.modules)
assert not leaked, leaked
sys.exit(code)
"""


def sdk_only(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SDK_ONLY, *args], capture_output=True, text=True, timeout=30)


def test_client_commands_work_without_the_stack_extra() -> None:
    """--help, --version, send, query and stats run (here against a closed port: exit 3 / 1, no traceback)."""
    top = sdk_only("--help")
    assert top.returncode == 0
    for command in ("send", "tail", "query", "stats", "doctor", "bench", "stack", "serve", "keys"):
        assert command in top.stdout
    assert sdk_only("--version").stdout.strip() == f"oglog {__version__}"
    query = sdk_only("query", "--url", "http://127.0.0.1:9")
    assert query.returncode == 3 and "cannot reach" in query.stderr and "Traceback" not in query.stderr
    stats = sdk_only("stats", "--url", "http://127.0.0.1:9")
    assert stats.returncode == 3 and "Traceback" not in stats.stderr
    send = sdk_only("send", "--url", "http://127.0.0.1:9", "--timeout", "1", "hello")
    assert send.returncode == 3 and "0 of 1 entries accepted" in send.stderr
    assert "Traceback" not in send.stderr


def test_websockets_is_loaded_only_by_tail() -> None:
    """`import oglogstream` and `import oglogstream.cli` do not import websockets (tail imports it itself)."""
    code = "import sys, oglogstream, oglogstream.cli; print('websockets' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("command", [["stack", "up"], ["serve", "ingest"], ["demo"], ["keys", "list"],
                                     ["dead-letters", "list"]])
def test_server_commands_name_the_extra(command: list[str]) -> None:
    """Each server command prints one line naming how to install the extra from the clone and exits 2."""
    result = sdk_only(*command)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "pip install -e '.[stack]' in the oglogstream clone" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_points_at_the_client_cli() -> None:
    """The `oglog` script is oglogstream.cli:main, which hands server commands to the stack's CLI."""
    with open(Path(__file__).parents[2] / "pyproject.toml", encoding="utf-8") as f:
        assert 'oglog = "oglogstream.cli:main"' in f.read()
    result = subprocess.run([sys.executable, "-m", "oglogstream.cli", "serve", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "NATS_URL" in result.stdout
