"""One logger naming scheme in the stack: every module logs under its own dotted name
(`oglogstream.stack.<room>.<module>`), also when it runs as `python -m` (where `__name__` is `__main__`), so
operators can filter by room or module and the redaction filter (prefix `oglogstream.stack`) covers it."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from pathlib import Path

import oglogstream.stack
import pytest

STACK_ROOT = Path(oglogstream.stack.__file__).parent
#: `getLogger("oglogstream...")` spelled out in a stack module (only where `__name__` would be `__main__`).
_LITERAL = re.compile(r"""getLogger\(\s*["'](oglogstream[^"']*)["']""")


def stack_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(oglogstream.stack.__path__, "oglogstream.stack.")
    )


@pytest.mark.parametrize("name", stack_modules())
def test_each_module_logger_is_named_after_its_module(name: str) -> None:
    """A module-level `log` logger carries the module's dotted name."""
    module = importlib.import_module(name)
    log = getattr(module, "log", None)
    if isinstance(log, logging.Logger):
        assert log.name == name


def test_spelled_out_logger_names_are_the_module_names() -> None:
    """Every logger name written as a literal (for modules run with -m) is its module's own dotted name."""
    found = {}
    for path in STACK_ROOT.rglob("*.py"):
        module = "oglogstream.stack." + ".".join(path.relative_to(STACK_ROOT).with_suffix("").parts)
        for literal in _LITERAL.findall(path.read_text(encoding="utf-8")):
            found[module] = literal
    assert found, "the -m modules (server.workers, server.cli) spell their names out"
    assert all(literal == module for module, literal in found.items()), found
