"""``spanvisor audit export | public-key`` and the signature half of
``spanvisor audit verify`` (online, and ``--offline FILE --public-key KEY``
with no database at all): :mod:`.signing`, :mod:`.signcheck`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clirun import guard
from .output import say

if TYPE_CHECKING:
    from spanvisor.config import Config


def register(audit_sub: Any, verify: Any) -> None:
    verify.add_argument(
        "--offline",
        type=Path,
        metavar="FILE",
        help="check an export ('spanvisor audit export') instead of the database: needs --public-key only",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="KEY",
        help="the public keys to accept (a keys file, 'ed25519 <hex>' a line, or a PEM public key); "
        "default: serve's signing key here and SPANVISOR_AUDIT_PUBLIC_KEYS",
    )
    export = audit_sub.add_parser("export", help="write the decision log with serve's signatures as JSON Lines")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: standard output)")
    export.set_defaults(func=cmd_audit_export)
    pub = audit_sub.add_parser("public-key", help="print the signing key's public line (for a keys file)")
    pub.set_defaults(func=cmd_audit_public_key)


def cmd_audit_export(args: argparse.Namespace, config: Config) -> int:
    from .signer import signed_log

    got: list[list[dict[str, Any]]] = []

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            got.append(await signed_log(conn))
        return 0

    code = guard(config, go)
    if code != 0 or not got:
        return code
    text = "".join(json.dumps(x, sort_keys=True, ensure_ascii=False) + "\n" for x in got[0])
    out: Path | None = getattr(args, "out", None)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        print(f"{len(got[0])} links written to {out}", file=sys.stderr)
    return 0


def cmd_audit_public_key(args: argparse.Namespace, config: Config) -> int:
    from . import signing
    from .signkeys import key_path

    key = signing.load(key_path(config))
    if isinstance(key, signing.KeyProblem):
        print(f"spanvisor: {key.reason}", file=sys.stderr)
        return 2
    say(f"{key.public_line}  # key {key.key_id}")
    return 0


def verify_offline(args: argparse.Namespace) -> int:
    """``--offline FILE --public-key KEY``: 0 intact, 1 not, 2 unusable input."""
    from . import signcheck, signing

    if args.public_key is None:
        print("spanvisor: --offline needs --public-key", file=sys.stderr)
        return 2
    keys = signing.read_public_keys(args.public_key)
    if isinstance(keys, signing.KeyProblem):
        print(f"spanvisor: {args.public_key}: {keys.reason}", file=sys.stderr)
        return 2
    try:
        lines = signcheck.read_export(Path(args.offline).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        print(f"spanvisor: cannot read {args.offline}: {exc}", file=sys.stderr)
        return 2
    if isinstance(lines, str):
        print(f"spanvisor: {args.offline}: {lines}", file=sys.stderr)
        return 2
    verdict = signcheck.check(lines, keys)
    say(signcheck.report(verdict))
    return 1 if verdict.problems else 0


async def verify_online(conn: Any, args: argparse.Namespace, config: Config) -> tuple[str | None, bool]:
    """The signatures' report line and whether they hold; no line when no
    public key is known here (not serve's machine, none given)."""
    from . import signcheck, signing
    from .signer import signed_log
    from .signkeys import verify_keys

    keys = verify_keys(config, getattr(args, "public_key", None))
    if isinstance(keys, signing.KeyProblem):
        return f"decision signatures: not checked ({keys.reason})", False
    if not keys:
        return None, True
    verdict = signcheck.check(await signed_log(conn), keys)
    return signcheck.report(verdict), not verdict.problems


__all__ = ["cmd_audit_export", "cmd_audit_public_key", "register", "verify_offline", "verify_online"]
