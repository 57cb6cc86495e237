"""`oglog keys create|list|revoke`: the API keys of a data dir (or any keys file), docs/security.md.

    oglog keys create --data-dir DIR --scope SCOPE[,SCOPE] [--name NAME]   the key is the LAST stdout line
    oglog keys list   --data-dir DIR                                        ids, names, scopes, never secrets
    oglog keys revoke NAME --data-dir DIR                                   running servers stop accepting it
                                                                            within about a second
`--keys-file FILE` instead of `--data-dir` edits a keys file for `OGLOG_KEYS_FILE` deployments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..auth.keys import KEYS_FILE_NAME, SCOPES, KeyFile, parse_scopes
from .supervisor import DEFAULT_DATA_DIR

__all__ = ["add_parser", "keys_path", "run"]


def keys_path(data_dir: str | Path) -> Path:
    """Where `oglog stack up --data-dir DIR` reads its keys."""
    return Path(data_dir).resolve() / KEYS_FILE_NAME


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys (docs/security.md)",
        description="API keys with scopes ingest, query, admin; stored hashed under the data dir.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def where(parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--data-dir",
            default=DEFAULT_DATA_DIR,
            metavar="DIR",
            help="the stack's data dir; keys go to DIR/keys.json (default: %(default)s)",
        )
        group.add_argument(
            "--keys-file",
            default=None,
            metavar="FILE",
            help="a keys file (for OGLOG_KEYS_FILE deployments) instead of the data dir's",
        )

    create = actions.add_parser("create", help="create a key and print it once (last line of stdout)")
    where(create)
    create.add_argument(
        "--scope",
        required=True,
        metavar="SCOPE",
        help=f"one or more of {', '.join(SCOPES)} (comma-separated)",
    )
    create.add_argument("--name", default=None, help="a name to list and revoke it by (default: its id)")
    where(actions.add_parser("list", help="list keys (ids, names, scopes; never the secrets)"))
    revoke = actions.add_parser("revoke", help="revoke a key by name or id (running servers too)")
    where(revoke)
    revoke.add_argument("name", metavar="NAME", help="the key's name or id")


def run(args: argparse.Namespace) -> int:
    """Run `oglog keys ...`; 0 on success, 2 with one line on stderr for a bad scope/name/file."""
    keys = KeyFile(Path(args.keys_file) if args.keys_file else keys_path(args.data_dir))
    try:
        if args.keys_command == "create":
            record, key = keys.create(parse_scopes(args.scope), args.name)
            print(
                f"created key {record.name!r} (id {record.id}, scopes {','.join(sorted(record.scopes))})"
                f" in {keys.path}"
            )
            print(
                "store it now: it is not shown again, only its SHA-256 is kept. Send it as"
                " 'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
            )
            print(key)
        elif args.keys_command == "list":
            records = keys.load()
            if not records:
                print(f"no keys in {keys.path}")
            for r in records:
                state = f"revoked {r.revoked}" if r.revoked else "active"
                print(f"{r.id}  {r.name:<24} {','.join(sorted(r.scopes)):<20} created {r.created}  {state}")
        else:
            for r in keys.revoke(args.name):
                print(f"revoked key {r.name!r} (id {r.id}); running servers refuse it within about a second")
    except (ValueError, OSError) as exc:
        print(f"oglog: error: {exc}", file=sys.stderr)
        return 2
    return 0
