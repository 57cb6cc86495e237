"""API keys: generation, hashing, the keys file and the live key store.

A key is `ogl_<id>_<secret>`: `id` is 8 hex characters (public: shown by `oglog keys list`, used to find the
record), `secret` is `secrets.token_urlsafe(SECRET_BYTES)` (256 random bits). Only SHA-256 of the whole key
is stored (a slow hash buys nothing for 256-bit random secrets: nobody can enumerate them; docs/security.md).
Keys may also come from the environment (`OGLOG_API_KEYS="ingest:KEY,query+admin:KEY2"`), for per-role
deployments whose secrets are injected rather than created on disk.

The keys file (`<data-dir>/keys.json`, mode 0600) is JSON: `{"version": 1, "keys": [{"id", "name", "scopes",
"sha256", "created", "revoked"}]}`. Writers take an flock on `keys.json.lock` and replace the file atomically;
servers re-read it when its mtime/size changes (checked at most every RELOAD_INTERVAL seconds), so a
revocation takes effect within about a second without a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "KEYS_FILE_NAME",
    "KEY_PREFIX",
    "MIN_ENV_KEY_LENGTH",
    "RELOAD_INTERVAL",
    "SCOPES",
    "SECRET_BYTES",
    "KeyFile",
    "KeyRecord",
    "KeyStore",
    "digest",
    "generate",
    "parse_env_keys",
    "parse_scopes",
]

log = logging.getLogger(__name__)

#: What a key may be allowed to do: send logs, read logs (API, live tail, metrics), operate (dead-letter
#: replay, key listing). A key holds one or more; none implies another.
SCOPES = ("ingest", "query", "admin")
KEY_PREFIX = "ogl_"
KEYS_FILE_NAME = "keys.json"
#: Random bytes in a generated key's secret (256 bits).
SECRET_BYTES = 32
#: Seconds between two stat() calls of the keys file by a server (revocation delay upper bound).
RELOAD_INTERVAL = 1.0
#: Keys given in the environment must be at least this long (a short one could be guessed).
MIN_ENV_KEY_LENGTH = 24
_KEY = re.compile(r"^ogl_([0-9a-f]{8})_[A-Za-z0-9_-]{16,}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: An environment key's characters: RFC 6750's b64token (base64, base64url, `.~`), so a generated secret fits
#: `Authorization: Bearer`. Browsers take only HTTP tokens as WebSocket subprotocols: a key with `/` or `=`
#: works from programs, not from the dashboard (docs/security.md).
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """One key as stored: no secret, only its SHA-256 (`sha256`, hex)."""

    id: str
    name: str
    scopes: frozenset[str]
    sha256: str
    created: str = ""
    revoked: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "sha256": self.sha256,
            "created": self.created,
            "revoked": self.revoked,
        }


def digest(key: str) -> str:
    """SHA-256 of the key's UTF-8 bytes, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate() -> tuple[str, str]:
    """A new (id, key) pair: `ogl_<8 hex>_<43 url-safe characters>`."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse_scopes(text: str) -> frozenset[str]:
    """`ingest`, `query,admin` or `query+admin` -> a set of scopes; ValueError naming an unknown one."""
    scopes = frozenset(part.strip().lower() for part in re.split(r"[,+]", text) if part.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scope: expected one or more of {', '.join(SCOPES)}, got {text!r}")
    return scopes


def parse_env_keys(entries: Sequence[str]) -> list[tuple[frozenset[str], str]]:
    """`["ingest:KEY", "query+admin:KEY2"]` -> [(scopes, key)]; ValueError (never quoting a key) when an entry
    is malformed, a key is shorter than MIN_ENV_KEY_LENGTH or not an HTTP token (it must fit in a header)."""
    parsed = []
    for n, entry in enumerate(entries, 1):
        scopes_text, sep, key = entry.strip().partition(":")
        if not sep:
            raise ValueError(f"api_keys: entry {n} must be SCOPES:KEY (e.g. ingest:KEY)")
        scopes = parse_scopes(scopes_text)
        if len(key) < MIN_ENV_KEY_LENGTH or not _TOKEN.match(key):
            raise ValueError(
                f"api_keys: key {n} must be at least {MIN_ENV_KEY_LENGTH} characters of letters, digits"
                " and -._~+/= (use `oglog keys create` or secrets.token_urlsafe(32))"
            )
        parsed.append((scopes, key))
    return parsed


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyFile:
    """The keys file at `path`: read, create a key, revoke keys. ValueError for a file that is not ours."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[KeyRecord]:
        """Every record (revoked ones too); [] when the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text)
            return [
                KeyRecord(
                    id=str(item["id"]),
                    name=str(item["name"]),
                    scopes=parse_scopes(",".join(item["scopes"])),
                    sha256=str(item["sha256"]),
                    created=str(item.get("created", "")),
                    revoked=item.get("revoked"),
                )
                for item in data["keys"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: not a valid keys file ({type(exc).__name__}: {exc})") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a data dir: private (security.md)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held by other writers for milliseconds only
            yield self.load()
        finally:
            os.close(fd)

    def _write(self, records: list[KeyRecord]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"version": 1, "keys": [r.to_json() for r in records]}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def create(self, scopes: frozenset[str], name: str | None = None) -> tuple[KeyRecord, str]:
        """Add a key; returns its record and the key itself (shown once, never stored). ValueError for a bad
        or already used `name` (default: the key's id)."""
        with self._locked() as records:
            key_id, key = generate()
            while any(r.id == key_id for r in records):  # 1 in 4 billion per existing key
                key_id, key = generate()
            name = name or key_id
            if not _NAME.match(name):
                raise ValueError(
                    f"--name: 1-64 letters, digits and _.- (starting with a letter or digit), got {name!r}"
                )
            if any(r.name == name and r.revoked is None for r in records):
                raise ValueError(f"--name: a key named {name!r} exists already (revoke it first)")
            record = KeyRecord(id=key_id, name=name, scopes=scopes, sha256=digest(key), created=_now())
            self._write([*records, record])
        return record, key

    def revoke(self, name_or_id: str) -> list[KeyRecord]:
        """Mark the active keys with this name or id revoked; returns them (ValueError when none matches)."""
        with self._locked() as records:
            hits = [r for r in records if r.revoked is None and name_or_id in (r.name, r.id)]
            if not hits:
                raise ValueError(f"no active key named {name_or_id!r} in {self.path}")
            when = _now()
            self._write([dataclasses.replace(r, revoked=when) if r in hits else r for r in records])
        return hits


class KeyStore:
    """The keys a server accepts: its keys file (re-read when it changes) plus keys from the environment.

    `verify(key)` returns the active record of `key` or None; the comparison is constant-time
    (hmac.compare_digest on the SHA-256 digests)."""

    def __init__(
        self,
        path: Path | None,
        env_keys: Sequence[tuple[frozenset[str], str]] = (),
        *,
        reload_interval: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.file = KeyFile(path) if path is not None else None
        self.reload_interval = reload_interval
        self._clock = clock
        self._env = [
            KeyRecord(id=f"env{n}", name=f"env-{n}", scopes=scopes, sha256=digest(key))
            for n, (scopes, key) in enumerate(env_keys, 1)
        ]
        self._by_id: dict[str, KeyRecord] = {}
        self._signature: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._reload(force=True)

    def active(self) -> list[KeyRecord]:
        """Every key that would be accepted now."""
        self._maybe_reload()
        return [*self._env, *self._by_id.values()]

    def current(self, key_id: str) -> KeyRecord | None:
        """The active record with id `key_id` as of now (keys file re-read when due), None once it is revoked
        or removed: holders of a long-lived connection (the live tail) re-check their key with this."""
        self._maybe_reload()
        for record in self._env:
            if record.id == key_id:
                return record
        return self._by_id.get(key_id)

    def verify(self, key: str) -> KeyRecord | None:
        self._maybe_reload()
        wanted = digest(key)
        match = _KEY.match(key)
        candidates = [self._by_id[match.group(1)]] if match and match.group(1) in self._by_id else []
        found = None
        for record in (*candidates, *self._env):  # every env key is compared: the time does not tell which
            if hmac.compare_digest(record.sha256, wanted):
                found = record
        return found

    def _maybe_reload(self) -> None:
        now = self._clock()
        if self.file is not None and now - self._checked >= self.reload_interval:
            self._checked = now
            self._reload()

    def _reload(self, *, force: bool = False) -> None:
        if self.file is None:
            return
        try:
            st = os.stat(self.file.path)
            signature = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature and not force:
            return
        try:
            records = self.file.load()
        except (OSError, ValueError) as exc:
            if force:
                raise
            # Keep the last good set: an operator's broken hand edit must not lock every client out. The CLI
            # writes atomically, so this only happens to hand edits (logged once per version of the file).
            log.error("keys file unreadable, keeping the previous keys: %s", exc)
            self._signature = signature
            return
        self._signature = signature
        self._by_id = {r.id: r for r in records if r.revoked is None}
