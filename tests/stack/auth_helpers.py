"""Helpers for the access-control tests: a stack with auth on and keys of every scope."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from oglogstream.stack.auth.keys import KeyFile, parse_scopes
from oglogstream.stack.config import StackConfig

from .query_helpers import running

__all__ = ["AuthStack", "auth_stack"]


@dataclasses.dataclass
class AuthStack:
    base: str
    app: web.Application
    keys_file: KeyFile
    keys: dict[str, str]  # scope name -> key ("revoked-ingest" etc. for revoked ones)

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@contextlib.asynccontextmanager
async def auth_stack(
    nats_url: str, chdb_dsn: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[AuthStack]:
    """Every role with `require_auth=True`, a keys file holding one key per scope plus one revoked key per
    scope (named `revoked-SCOPE`), and `settings` on top of the defaults."""
    keys_file = KeyFile(tmp_path / "keys.json")
    keys = {}
    for scope in ("ingest", "query", "admin"):
        keys[scope] = keys_file.create(parse_scopes(scope), scope)[1]
        keys[f"revoked-{scope}"] = keys_file.create(parse_scopes(scope), f"revoked-{scope}")[1]
        keys_file.revoke(f"revoked-{scope}")
    config = StackConfig(
        nats_url=nats_url,
        clickhouse_dsn=chdb_dsn,
        require_auth=True,
        keys_file=str(keys_file.path),
        **settings,
    )
    async with running(config) as (base, app):
        yield AuthStack(base, app, keys_file, keys)
