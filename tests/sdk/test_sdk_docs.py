"""The quickstart examples in docs/sdk.md work as written (pointed at a local capture server)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import structlog
from oglogstream import OgLogHandler, OgLogProcessor

from .capture_server import CaptureServer

_DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture
def clean_root():
    """Restore the root logger (handlers, level) after an example reconfigures it."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, OgLogHandler):
            handler.close(2)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    structlog.reset_defaults()


def _run(example: str, url: str) -> dict:
    namespace: dict = {}
    exec(compile(example.replace("http://localhost:8080", url), str(_DOC), "exec"), namespace)
    return namespace


def test_the_doc_has_the_four_quickstarts() -> None:
    """docs/sdk.md has the plain, dictConfig, structlog and asyncio examples this file runs."""
    examples = _examples()
    assert len(examples) == 4
    assert "dictConfig(LOGGING)" in examples[1] and "structlog.configure(" in examples[2]
    assert "AsyncOgLogClient(" in examples[3]


def test_plain_logging_example(server: CaptureServer, clean_root) -> None:
    """The plain logging example delivers its record with the extra fields as attributes."""
    _run(_examples()[0], server.url)
    (entry,) = server.entries
    assert entry["message"] == "added sku-42" and entry["attributes"] == {"user_id": 7, "price": 9.5}


def test_dictconfig_example(server: CaptureServer, clean_root) -> None:
    """The LOGGING dict builds an OgLogHandler that delivers the warning."""
    _run(_examples()[1], server.url)
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, OgLogHandler)]
    assert handler.flush(5)
    (entry,) = server.entries
    assert (entry["level"], entry["service"], entry["attributes"]) == ("warn", "checkout", {"attempt": 2})


def test_structlog_example(server: CaptureServer, clean_root, capsys) -> None:
    """The structlog.configure example ships the event and still prints the JSON line."""
    namespace = _run(_examples()[2], server.url)
    processor = next(p for p in structlog.get_config()["processors"] if isinstance(p, OgLogProcessor))
    assert processor.flush(5)
    (entry,) = server.entries
    assert entry["message"] == "order placed" and entry["attributes"] == {"order_id": 1234, "total": 99.5}
    assert '"order placed"' in capsys.readouterr().out
    assert namespace["log"] is not None
    processor.close(2)


def test_asyncio_example(server: CaptureServer) -> None:
    """The AsyncOgLogClient example delivers both events (with the bound request id) inside asyncio.run."""
    _run(_examples()[3], server.url)
    got = {entry["message"]: entry for entry in server.entries}
    assert got["order placed"]["attributes"] == {"order_id": 1234, "total": 99.5}
    assert got["payment retry"]["level"] == "warn"
    assert got["payment retry"]["attributes"] == {"request_id": "r-1", "attempt": 2}
