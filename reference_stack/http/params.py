"""`ParamError`: a bad query-string parameter, shared by the filter parsers (`filters`, `attr_filters`)."""

from __future__ import annotations

__all__ = ["ParamError"]


class ParamError(ValueError):
    """A bad query-string parameter: answered with 400 naming `field` and `reason`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
