"""The one share rule (`http.share.SharePolicy`) that ingestion's body slots and the storage's query queue
and the live tail's sockets apply: a client takes up to its share while any room is free, more only while a
share stays free, and the last free unit only if it holds none."""

from __future__ import annotations

import pytest
from oglogstream.stack.http.share import SharePolicy
from oglogstream.stack.ingestion import slots
from oglogstream.stack.storage import scheduler


def _fill(policy: SharePolicy, takers: list[str]) -> tuple[dict[str, int], list[str | None]]:
    """Each of `takers` asks for one more unit in turn; returns what each then holds and every answer."""
    held: dict[str, int] = {}
    answers: list[str | None] = []
    for client in takers:
        refusal = policy.refusal(held.get(client, 0), sum(held.values()))
        answers.append(refusal)
        if refusal is None:
            held[client] = held.get(client, 0) + 1
    return held, answers


def test_a_lone_client_takes_all_but_one_share() -> None:
    """Capacity 8, share 2: alone, a client gets 6 units; the 7th is refused as past its share."""
    held, answers = _fill(SharePolicy(8, 2), ["a"] * 7)
    assert held == {"a": 6}
    assert answers == [None] * 6 + ["share"]


def test_the_last_free_unit_is_kept_for_a_client_holding_none() -> None:
    """After a lone client took 6 of 8, a second takes one; its second is refused ("reserved"), so a third
    that holds nothing still gets in; then the resource is full."""
    held, answers = _fill(SharePolicy(8, 2), ["a"] * 6 + ["b", "b", "c", "d"])
    assert held == {"a": 6, "b": 1, "c": 1}
    assert answers[-4:] == [None, "reserved", None, "full"]


def test_clients_within_their_shares_cannot_together_keep_a_newcomer_out() -> None:
    """The review's case: the query queue's defaults (32 places, share 8), eight clients each asking in
    turn until refused: they stop at 31, and a ninth client gets the last place."""
    policy = SharePolicy(32, 8)
    clients = [f"addr{k}" for k in range(8)]
    held, answers = _fill(policy, clients * 8)
    assert sum(held.values()) == 31
    assert set(answers) == {None, "reserved"}
    assert policy.refusal(0, 31) is None  # the newcomer
    assert policy.refusal(0, 32) == "full"  # once it took it, the next newcomer waits for a completion


def test_a_client_past_its_share_is_told_so_even_when_the_resource_is_full() -> None:
    """"share" is decided before "full": the flooding client learns it is the one over its share."""
    policy = SharePolicy(4, 2)
    assert policy.refusal(held=3, used=4) == "share"
    assert policy.refusal(held=1, used=4) == "full"
    assert policy.refusal(held=2, used=1) is None  # at its share, with a share still free after it takes one
    assert policy.refusal(held=1, used=3) == "reserved"  # within its share, but only the last unit is free


def test_a_share_equal_to_the_capacity_lets_one_client_fill_it() -> None:
    """Share = capacity: one client may hold all of it (no last unit is kept); one more is refused as past
    its share."""
    held, answers = _fill(SharePolicy(3, 3), ["a"] * 4)
    assert held == {"a": 3} and answers == [None, None, None, "share"]


def test_limits_are_checked_with_the_callers_names() -> None:
    """Below 1, or a share above the capacity, is a ValueError naming the caller's option."""
    with pytest.raises(ValueError, match="share: must be >= 1"):
        SharePolicy(4, 0)
    with pytest.raises(ValueError, match="max_per_client: must be at most the max_waiting"):
        SharePolicy(4, 8, capacity_name="max_waiting", share_name="max_per_client")


def test_ingestion_slots_and_the_query_queue_use_it_with_their_defaults() -> None:
    """Both sides hold a SharePolicy built from their own defaults (64/16 bodies, 32/8 queries)."""
    batch_slots = slots.BatchSlots()
    assert (batch_slots.policy.capacity, batch_slots.policy.share) == (
        slots.DEFAULT_MAX_BATCHES_IN_FLIGHT,
        slots.DEFAULT_MAX_BATCHES_PER_CLIENT,
    )
    queue = scheduler.Scheduler(1)
    try:
        assert (queue.policy.capacity, queue.policy.share) == (
            scheduler.DEFAULT_MAX_WAITING_QUERIES,
            scheduler.DEFAULT_MAX_CLIENT_QUERIES,
        )
    finally:
        assert queue.close(5.0)
