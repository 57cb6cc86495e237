"""The `attributes` (and trace link) fragments of a stdlib record's entry: its `extra=` fields and the bound
context (`oglogstream.bind`, which the Django and Flask integrations set for every request).

`AttributeFragments` is the part of `_entry.EntryEncoder` that builds them: cached `"key":` openings, and the
last context's encoded body, reused while records carry the same context object (a bound context is a new
read-only mapping per `bind`, so one request's records share it). Anything unusual (a trace/span link among
the extras, an extra overriding a context key, keys the wire would cut, more than MAX_ATTRIBUTES) goes
through `_record_attributes_merged`, the general rule; both give the same text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import wire as _wire
from ._capture import LAST_RECORD_KEY, PLAIN_KEYS, RECORD_BASE_KEYS, SNAPSHOT_KEYS
from ._entry_values import (
    _BASE_KEYS,
    _INT64_MAX,
    _INT64_MIN,
    _LINKS,
    _SKIPPED_KEYS,
    _STANDARD_KEYS,
    _attributes,
    _encode_str,
    _key,
    _value_json,
)
from .wire import clip_chars

__all__ = ["NAME_CACHE_SIZE", "AttributeFragments"]

_SNAPSHOT_SIZE = len(SNAPSHOT_KEYS)
_SNAPSHOT_LAST = SNAPSHOT_KEYS[-1]
#: Entries per fragment cache (logger/thread names, attribute keys, key pairs); a full cache is cleared.
NAME_CACHE_SIZE = 4096
#: Context values whose text cannot change after `bind` (a list bound as a value could): only a context of
#: these is encoded once and reused.
_CACHEABLE_VALUE_TYPES = frozenset({str, int, float, bool, type(None)})


def _plain_key(key: object) -> bool:
    """A str key the wire keeps as it is (not cut, not empty): two such keys never collide."""
    return type(key) is str and 0 < len(key) <= _wire.MAX_ATTRIBUTE_KEY_CHARS


class AttributeFragments:
    """Attribute fragments for one encoder; caches are per instance (one worker thread uses it)."""

    def __init__(self) -> None:
        # Keyed by str keys only (see `_key_prefix`).
        self._key_prefixes: dict[object, str] = {}
        self._attribute_heads: dict[object, str] = {}
        self._attribute_pairs: dict[tuple[object, object], tuple[str, str]] = {}
        # The last context seen (held, so its identity cannot be reused while cached), its keys, its body
        # (`"k":v,...`, None when it must take the general path) and its whole `,"attributes":{...}`.
        self._context: Mapping[str, object] | None = None
        self._context_keys: frozenset[object] = frozenset()
        self._context_body: str | None = None
        self._context_attributes = ""

    def _links(self, extras: dict[str, object]) -> str:
        out = ""
        for name in _LINKS:
            value = extras.get(name)
            if type(value) is str and value:
                del extras[name]
                out += f',"{name}":{_encode_str(clip_chars(value, _wire.MAX_SHORT_FIELD_CHARS))}'
        return out

    def _remember_context(self, context: Mapping[str, object]) -> None:
        """Encode `context` once for the records that carry it (see the module docstring)."""
        self._context = context
        pairs = list(context.items())
        self._context_keys = frozenset(key for key, _ in pairs)
        plain = len(pairs) <= _wire.MAX_ATTRIBUTES and all(
            type(key) is str and 0 < len(key) <= _wire.MAX_ATTRIBUTE_KEY_CHARS
            and type(value) in _CACHEABLE_VALUE_TYPES
            for key, value in pairs
        )
        self._context_attributes = _attributes(pairs) if plain else ""
        self._context_body = self._context_attributes[len(',"attributes":{') : -1] if plain else None

    def _record_attributes(
        self, state: dict[str, Any], context: Mapping[str, object] | None
    ) -> tuple[str, str]:
        """(links, attributes) fragments from a record's extra fields and the context."""
        context_keys: frozenset[object] | None = None
        if context:
            if context is not self._context:
                self._remember_context(context)
            if self._context_body is None:
                return self._record_attributes_merged(state, context)
            context_keys = self._context_keys
        parts: list[str] = []
        prefixes = self._key_prefixes
        try:
            # LogRecord.__init__ sets its own attributes first, so `extra=` fields (and attributes a record
            # factory adds) are at the end of the dict: walk back from the end to the first base attribute
            # instead of diffing every key. (Formatter leftovers such as `message` are skipped on the way.)
            # The base attribute must end a snapshot's SNAPSHOT_KEYS or a plain record's own attributes
            # where they end (`_capture.extra_items`); else (a deleted or re-set attribute, a hand-made
            # record kept whole) extras may precede it: the general rule.
            for walked, key in enumerate(reversed(state)):
                if key in _SKIPPED_KEYS:
                    if key in _BASE_KEYS:
                        before = len(state) - walked
                        if not (
                            (before == _SNAPSHOT_SIZE and key == _SNAPSHOT_LAST and "msg" not in state)
                            or (
                                before == RECORD_BASE_KEYS
                                and key is LAST_RECORD_KEY
                                and [*state][:RECORD_BASE_KEYS] == PLAIN_KEYS
                            )
                        ):
                            return self._record_attributes_merged(state, context)
                        break
                    if key in _LINKS:
                        return self._record_attributes_merged(state, context)
                    continue
                if type(key) is not str or not 0 < len(key) <= _wire.MAX_ATTRIBUTE_KEY_CHARS:
                    # A key the wire spells differently (cut, "" -> "_", 1 -> "1") may collide with
                    # another: the general rule merges them, last wins (as the structlog path and the
                    # server do).
                    return self._record_attributes_merged(state, context)
                if context_keys is not None and key in context_keys:
                    return self._record_attributes_merged(state, context)  # overrides it, in its place
                value = state[key]
                kind = type(value)
                if kind is str and len(value) <= _wire.MAX_ATTRIBUTE_VALUE_CHARS:
                    value_json = _encode_str(value)
                elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
                    value_json = int.__repr__(value)
                else:
                    value_json = _value_json(value)
                prefix = prefixes.get(key)
                if prefix is None:
                    prefix = self._key_prefix(key)
                parts.append(prefix + value_json)
        except (RuntimeError, KeyError, TypeError):  # changed meanwhile by another thread; a non-str key
            return self._record_attributes_merged(state, context)
        if context_keys is not None:
            if not parts:
                return "", self._context_attributes
            if len(parts) + len(context_keys) > _wire.MAX_ATTRIBUTES:
                return self._record_attributes_merged(state, context)
            if len(parts) > 1:
                parts.reverse()
            return "", f',"attributes":{{{self._context_body},{",".join(parts)}}}'
        if not parts:
            return "", ""
        if len(parts) > _wire.MAX_ATTRIBUTES:
            return self._record_attributes_merged(state, context)
        if len(parts) > 1:
            parts.reverse()  # collected from the end: restore the order the app wrote them in
        return "", f',"attributes":{{{",".join(parts)}}}'

    def _attribute_head(self, key: str) -> str:
        """`,"attributes":{"key":` for a record's only attribute (a str key), cached."""
        prefix = self._key_prefixes.get(key)
        if prefix is None:
            prefix = self._key_prefix(key)
        heads = self._attribute_heads
        if len(heads) >= NAME_CACHE_SIZE:
            heads.clear()
        heads[key] = head = f',"attributes":{{{prefix}'
        return head

    def _attribute_pair(self, first: object, second: object) -> tuple[str, str] | None:
        """(`,"attributes":{"first":`, `,"second":`) for a record's only two attributes, cached; None
        unless both are str keys the wire keeps whole (others may collide: `_record_attributes_merged`)."""
        if type(first) is not str or not (_plain_key(first) and _plain_key(second)):
            return None
        pairs = self._attribute_pairs
        if len(pairs) >= NAME_CACHE_SIZE:
            pairs.clear()
        prefix = self._key_prefixes.get(second) or self._key_prefix(second)
        pair = (self._attribute_head(first), f",{prefix}")
        pairs[(first, second)] = pair
        return pair

    def _key_prefix(self, key: object) -> str:
        """`"key":` for an attribute key (cut to the wire limit), cached."""
        prefix = f"{_encode_str(_key(key))}:"
        if type(key) is str:  # never keyed by a non-str: True, 1 and 1.0 are one dict key
            if len(self._key_prefixes) >= NAME_CACHE_SIZE:
                self._key_prefixes.clear()
            self._key_prefixes[key] = prefix
        return prefix

    def _record_attributes_merged(
        self, state: dict[str, Any], context: Mapping[str, object] | None
    ) -> tuple[str, str]:
        """The general case: context + extras (extras win), trace/span links, the attribute-count bound."""
        snapshot = list(state.items())  # atomic: no Python code runs while the list is built
        extras = {key: value for key, value in snapshot[RECORD_BASE_KEYS:] if key not in _STANDARD_KEYS}
        if any(key not in _STANDARD_KEYS for key, _ in snapshot[:RECORD_BASE_KEYS]):  # an unusual record
            extras = {key: value for key, value in snapshot if key not in _STANDARD_KEYS}
        links = self._links(extras)
        pairs: list[tuple[object, object]] = list(context.items()) if context else []
        pairs.extend(extras.items())
        return links, _attributes(pairs)
