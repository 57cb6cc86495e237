"""Each SDK setting is declared once (`_settings.Options`): the drivers, the validation and the docs agree."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler, OgLogProcessor
from oglogstream._settings import (
    ASYNC_OPTION_NAMES,
    OPTION_DEFAULTS,
    OPTION_NAMES,
    AsyncOptions,
    Options,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:1"
#: driver -> (its own parameters besides the options, the TypedDict its **options unpacks, allowed names)
DRIVERS = {
    OgLogHandler: ({"url", "service", "level"}, "Unpack[Options]", OPTION_NAMES),
    OgLogProcessor: ({"url", "service", "handler"}, "Unpack[Options]", OPTION_NAMES),
    AsyncOgLogClient: ({"url", "service"}, "Unpack[AsyncOptions]", ASYNC_OPTION_NAMES),
}


def test_every_option_has_one_default_and_the_async_options_are_a_subset() -> None:
    """The defaults table covers exactly the declared options; the asyncio client's are a subset."""
    assert set(OPTION_DEFAULTS) == OPTION_NAMES == set(Options.__annotations__)
    assert ASYNC_OPTION_NAMES == set(AsyncOptions.__annotations__) < OPTION_NAMES
    thread_only = {"spool_dir", "spool_max_bytes", "spool_max_age"}
    assert thread_only == OPTION_NAMES - ASYNC_OPTION_NAMES


@pytest.mark.parametrize("driver", list(DRIVERS), ids=lambda d: d.__name__)
def test_each_driver_signature_unpacks_the_declaration(driver: type) -> None:
    """Each public constructor takes its own few parameters plus `**options: Unpack[<the declaration>]`."""
    own, unpacked, _ = DRIVERS[driver]
    params = inspect.signature(driver.__init__).parameters
    var_kw = [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert [p.annotation for p in var_kw] == [unpacked]
    named = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert named == own


@pytest.mark.parametrize("driver", list(DRIVERS), ids=lambda d: d.__name__)
def test_each_declared_option_reaches_validation_in_each_driver(driver: type) -> None:
    """Every option a driver declares is validated by `Settings.build`: a wrong type names that option."""
    for name in sorted(DRIVERS[driver][2]):
        with pytest.raises(ValueError, match=rf"^{name} "):
            driver(URL, "svc", **{name: object()})


@pytest.mark.parametrize("driver", list(DRIVERS), ids=lambda d: d.__name__)
def test_an_unknown_keyword_is_a_type_error_naming_it(driver: type) -> None:
    """A typo is never swallowed by **options: TypeError naming the driver and the keyword."""
    with pytest.raises(TypeError, match=rf"{driver.__name__} got unknown setting\(s\) batch_sise;"):
        driver(URL, "svc", batch_sise=10)


@pytest.mark.parametrize("driver", list(DRIVERS), ids=lambda d: d.__name__)
def test_an_unknown_keyword_error_lists_the_drivers_own_keywords(driver: type) -> None:
    """The TypeError's "valid:" list has every keyword the driver takes: its own (OgLogHandler's `level`,
    OgLogProcessor's `handler`) as well as the options."""
    with pytest.raises(TypeError) as caught:
        driver(URL, "svc", batch_sise=10)
    listed = set(str(caught.value).split("valid: ", 1)[1].split(", "))
    assert listed == DRIVERS[driver][0] | DRIVERS[driver][2]


@pytest.mark.parametrize("name", ["spool_dir", "spool_max_bytes", "spool_max_age"])
def test_the_async_client_refuses_the_thread_only_options(name: str) -> None:
    """The asyncio client has no spool: passing a spool option names it."""
    with pytest.raises(TypeError, match=rf"AsyncOgLogClient got unknown setting\(s\) {name};"):
        AsyncOgLogClient(URL, "svc", **{name: OPTION_DEFAULTS[name]})  # type: ignore[literal-required]


def test_defaults_are_what_build_uses() -> None:
    """`Settings.build` with no options yields exactly the declared defaults."""
    built = Settings.build(URL, "svc", environ={})
    for name, default in OPTION_DEFAULTS.items():
        assert getattr(built, name) == default, name


def test_the_docs_settings_table_lists_exactly_the_declared_options() -> None:
    """docs/sdk.md's settings table: url, service, level, then one row per declared option."""
    text = (ROOT / "docs" / "sdk.md").read_text()
    table = text[text.index("| setting | default | why |") :].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert len(rows) == len(set(rows))
    assert set(rows) == OPTION_NAMES | {"url", "service", "level"}


def test_mypy_sees_every_keyword(tmp_path: Path) -> None:
    """mypy --strict flags a misspelt or wrongly typed keyword of each driver (what IDEs show too)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from oglogstream import AsyncOgLogClient, OgLogHandler, OgLogProcessor
            OgLogHandler("http://h", "s", batch_size=10, spool_dir="/tmp/x")
            OgLogHandler("http://h", "s", batch_sise=10)
            OgLogProcessor("http://h", "s", flush_interval="1")
            AsyncOgLogClient("http://h", "s", spool_dir="/tmp/x")
            OgLogHandler("http://h", "s", overflow="drop")
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "c"),
         str(sample)],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "sdk")},
    ).stdout
    errors = [line for line in out.splitlines() if ": error: " in line]
    lines = sorted(line.split(": error: ")[0].rsplit(":", 1)[1] for line in errors)
    assert lines == ["4", "5", "6", "7"], out
    assert '"batch_sise"' in out and '"flush_interval"' in out and '"spool_dir"' in out
    assert '"overflow"' in out  # a Literal, not any str
