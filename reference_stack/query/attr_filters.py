"""Attribute conditions of the query API and live tail: `attr.<key>` parameters, as SQL and in Python.

One `AttrFilter` per parameter; `sql` and `matches` implement the same rule over the typed attribute columns
(`attributes` string form, `attributes_number`, see `migrations.py`) and over a public entry's `attributes`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

import pydantic_core
from oglogstream import _wire

from ..http.params import ParamError

__all__ = ["ATTR_PREFIX", "AttrFilter", "attr_text", "parse_number"]

#: Query parameters naming an attribute condition start with this.
ATTR_PREFIX = "attr."

#: A JSON number (the only form a numeric comparison takes); `int`/`float` alone would also accept
#: "1_000", "nan", "inf" or fullwidth digits.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_Op = Literal["=", "!=", ">", ">=", "<", "<=", "exists", "missing"]
#: Comparison operators -> their SQL spelling and Python function.
_NUMERIC_OPS = {
    ">": (">", float.__gt__),
    ">=": (">=", float.__ge__),
    "<": ("<", float.__lt__),
    "<=": ("<=", float.__le__),
}


def parse_number(value: str, field: str) -> float:
    """A finite JSON number as float, or ParamError naming `field`."""
    text = value.strip()
    if not _JSON_NUMBER.fullmatch(text) or not math.isfinite(number := float(text)):
        raise ParamError(field, f"expected a number, got {value[:40]!r}")
    return number


def attr_text(value: Any) -> str:
    """An attribute value's string form, as the `attributes` column stores it: a string as is, a bool as
    true/false, a number as its JSON text. The stored text is what ingestion's serializer (pydantic-core)
    wrote, and a float parsed back from it serializes to the same text (shortest round-trip form: 1e20,
    not Python's 1e+20)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value).decode()


@dataclasses.dataclass(frozen=True)
class AttrFilter:
    """One attribute condition from a query parameter (`field` is the parameter's `attr.<key>` form).

    - `attr.k=v`: k is present and its string form is v (`attr.status=500` matches 500 and "500" but not
      500.0; `attr.ok=true` matches true and "true"): one map lookup, and old string-only rows answer
      alike (docs/api.md);
    - `attr.k!=v`: the negation (also true where k is absent);
    - `attr.k>n` `>=` `<` `<=`: k is a number (typed storage; rows stored before migration 2 hold strings
      only and never match) and compares so with the number n;
    - `attr.k=*`: k is present; `attr.k!=*`: k is absent.
    """

    key: str
    op: _Op
    value: str = ""
    number: float | None = None

    @property
    def field(self) -> str:
        return f"{ATTR_PREFIX}{self.key}"

    @classmethod
    def parse(cls, name: str, value: str) -> AttrFilter:
        """From one query parameter: `name` starts with ATTR_PREFIX. The query-string splitter leaves the
        operator's first character on the name (`attr.k>=5` -> name `attr.k>`, value `5`), and a strict
        comparison has no `=` at all (`attr.k>5` -> name `attr.k>5`, value "")."""
        rest = name[len(ATTR_PREFIX) :]
        op: _Op = "="
        cut = min((i for i in (rest.find(">"), rest.find("<")) if i >= 0), default=-1)
        if cut >= 0 and cut < len(rest) - 1 and value == "":
            op = ">" if rest[cut] == ">" else "<"
            rest, value = rest[:cut], rest[cut + 1 :]
        elif rest[-1:] in ("!", ">", "<"):
            op = {"!": "!=", ">": ">=", "<": "<="}[rest[-1]]  # type: ignore[assignment]
            rest = rest[:-1]
        field = f"{ATTR_PREFIX}{rest}"
        if not 1 <= len(rest) <= _wire.MAX_ATTRIBUTE_KEY_CHARS:
            raise ParamError(field, f"the key must be 1..{_wire.MAX_ATTRIBUTE_KEY_CHARS} characters")
        if op in _NUMERIC_OPS:
            return cls(rest, op, value, parse_number(value, field))
        if value == "*":
            return cls(rest, "exists" if op == "=" else "missing")
        if len(value) > _wire.MAX_ATTRIBUTE_VALUE_CHARS:
            raise ParamError(field, f"the value must be at most {_wire.MAX_ATTRIBUTE_VALUE_CHARS} characters")
        return cls(rest, op, value)

    def sql(self, n: int, params: dict[str, Any]) -> str:
        """This condition as SQL over the attribute maps; its values bound as `a<n>_*` in `params`."""
        key = f"{{a{n}_k:String}}"
        params[f"a{n}_k"] = self.key
        if self.op in ("exists", "missing"):
            present = f"mapContains(attributes, {key})"
            return present if self.op == "exists" else f"NOT {present}"
        if self.op in _NUMERIC_OPS:
            params[f"a{n}_n"] = self.number
            sign = _NUMERIC_OPS[self.op][0]
            return (
                f"(mapContains(attributes_number, {key}) "
                f"AND attributes_number[{key}] {sign} {{a{n}_n:Float64}})"
            )
        params[f"a{n}_v"] = self.value
        equal = f"attributes[{key}] = {{a{n}_v:String}}"
        if not self.value:  # a missing key reads as "": only then does presence need its own test
            equal = f"(mapContains(attributes, {key}) AND {equal})"
        return equal if self.op == "=" else f"NOT {equal}"

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """The same condition on one entry's `attributes` (typed JSON values, or strings from old rows)."""
        present = self.key in attributes
        if self.op in ("exists", "missing"):
            return present == (self.op == "exists")
        value = attributes.get(self.key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.op in _NUMERIC_OPS:
            assert self.number is not None
            return is_number and _NUMERIC_OPS[self.op][1](float(value), self.number)  # type: ignore[arg-type]
        equal = present and attr_text(value) == self.value
        return equal if self.op == "=" else not equal
