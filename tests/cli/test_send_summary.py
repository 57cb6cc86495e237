"""`oglog send`'s summary line names what happened to each entry not accepted in plain words, never by the
SDK's internal loss reason (`shutdown`, `client_error`, ...)."""

from __future__ import annotations

import pytest
from oglogstream import DROP_REASONS
from oglogstream.cli.send import PLAIN_REASONS, _plain


def test_every_loss_reason_has_plain_words() -> None:
    """A reason the SDK can count has a phrase of its own (a new reason must get one, not its name)."""
    assert set(PLAIN_REASONS) == set(DROP_REASONS)
    assert all(PLAIN_REASONS.values())


@pytest.mark.parametrize(("reason", "unreachable", "words"), [
    ("shutdown", True, "server unreachable until the --timeout 1.5s deadline"),
    ("shutdown", False, "not delivered before the --timeout 1.5s deadline"),
    ("unconfirmed", False, "sent, but not confirmed before the --timeout 1.5s deadline (no answer, or a 5xx):"
     " the server may have stored them"),
    ("client_error", False, "refused by the server"),
    ("rejected", False, "rejected by the server, entry by entry"),
])
def test_a_reason_in_plain_words(reason: str, unreachable: bool, words: str) -> None:
    """The deadline is the flag the user gave; a deadline reached while nothing answered says so."""
    assert _plain(reason, 1.5, unreachable) == words
