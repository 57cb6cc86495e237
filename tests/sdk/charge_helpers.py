"""The intake's charge rule as the memory tests check it: what waiting items are charged, and the slack a
tracemalloc measure of what they hold is allowed against that charge."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from oglogstream._intake_charge import INTAKE_ITEM_BYTES, WEIGHT_BYTES, large_bytes, record_units

__all__ = ["MEASURE_SLACK", "charge_of"]

#: tracemalloc sees every thread's allocations in the measured window (a previous test's worker or server
#: winding down) and the deques' blocks (64 slots each, allocated as they fill): 5 %. Measured alone the
#: worst snapshot shape is 0.98x its charge.
MEASURE_SLACK = 1.05


def charge_of(items: Iterable[Any]) -> int:
    """What the intake charges for `items` (captured records or events), in bytes: a unit each, the large
    text each carries, and its weights."""
    return sum(INTAKE_ITEM_BYTES + large_bytes(item) + record_units(item) * WEIGHT_BYTES for item in items)
