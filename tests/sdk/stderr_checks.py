"""What the SDK's stderr lines say about loss, read one way by every test (the recovery line's "none lost"
must not read as a loss)."""

from __future__ import annotations

import re

__all__ = ["reports_loss"]

#: The loss line (`[svc] lost 3 record(s), reason 'overflow': ...`) and the recovery line naming losses
#: (`... lost meanwhile: 300 overflow`).
_LOSS = re.compile(r"\blost (\d|meanwhile)")


def reports_loss(stderr: str) -> bool:
    """Whether the SDK's stderr announces any lost record."""
    return _LOSS.search(stderr) is not None
