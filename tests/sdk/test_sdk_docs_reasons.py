"""docs/sdk.md's "Loss reasons" table mirrors `oglogstream.DROP_REASONS` and `LOSS_REMEDIES` (the code is the
source; the stderr loss line prints it): the same reasons, and for each the same settings named. Prose may be
worded for the page; the names a user would act on (a setting, `flush()`) may not differ."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from oglogstream import DROP_REASONS, LOSS_REMEDIES
from oglogstream._settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
HEADER = "| reason | what happened | what avoids it |"
#: The names a meaning or remedy can tell a user to look at or change: every setting, and the calls.
NAMES = frozenset(field.name for field in dataclasses.fields(Settings)) | {"flush()", "close()"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\(\))?")


def mentioned(text: str) -> set[str]:
    """The settings and calls `text` names (backticks and prose around them ignored)."""
    return {word for word in _WORD.findall(text.replace("`", "")) if word in NAMES}


def doc_rows() -> list[tuple[str, str, str]]:
    """(reason, what happened, what avoids it) of each row of the table, in order."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER)
    rows = []
    for line in lines[start + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 3, line
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


def test_the_table_is_in_the_stats_section_where_dropped_is_described() -> None:
    """The table sits under "## Stats", with the `dropped` field it explains."""
    text = DOC.read_text(encoding="utf-8")
    stats = text.index("\n## Stats\n")
    end = text.index("\n## ", stats + 1)
    assert stats < text.index(HEADER) < end and "| `dropped` |" in text[stats:end]


def test_the_table_lists_every_reason_in_the_code_and_no_other() -> None:
    """A reason added to DROP_REASONS without a row, a row for one that does not exist, or a row twice."""
    reasons = [row[0] for row in doc_rows()]
    assert len(reasons) == len(set(reasons)), reasons
    assert set(reasons) == set(DROP_REASONS)
    assert set(LOSS_REMEDIES) == set(DROP_REASONS)


@pytest.mark.parametrize(
    ("column", "texts"), [(2, LOSS_REMEDIES), (1, DROP_REASONS)], ids=["what avoids it", "what happened"]
)
def test_each_row_names_the_settings_the_codes_text_names(column: int, texts: Mapping[str, str]) -> None:
    """"What avoids it" tells the user to change the same settings (and make the same calls) as the loss
    line does (LOSS_REMEDIES), e.g. not `spool_max_bytes` in the doc where the code says `spool_max_age`;
    "What happened" names the same settings as DROP_REASONS (the buffer's bounds, the spool's)."""
    differ = {
        row[0]: (mentioned(row[column]), mentioned(texts[row[0]]))
        for row in doc_rows()
        if row[0] in texts and mentioned(row[column]) != mentioned(texts[row[0]])
    }
    assert differ == {}, "reason: (the doc's names, the code's names)"


def test_the_comparison_sees_a_setting_named_in_prose_or_backticks() -> None:
    """The check itself: a remedy naming another setting is told apart, with or without backticks."""
    assert mentioned("raise `spool_max_age`") == mentioned("raise spool_max_age") == {"spool_max_age"}
    assert mentioned("raise `spool_max_bytes`") != mentioned(LOSS_REMEDIES["spool_expired"])
    assert mentioned("call `flush()` earlier, or set `spool_dir`") == {"flush()", "spool_dir"}
    assert "shutdown_timeout" in mentioned(LOSS_REMEDIES["shutdown"])
