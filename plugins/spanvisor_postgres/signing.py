"""Decision rows signed by serve: evidence that does not trust the database.

The hash chain (:mod:`.auditchain`) shows a row changed or removed after it
was written, but its links are made by the database: a role that may
``INSERT`` gets a link for any row it writes, a backdated "alice approved"
included. So serve signs each decision row it wrote with an Ed25519 key
the database never sees: over the row's content and its place in the chain
(its link's number, the link before's hash and its own). A row nobody
signed, or whose content, place or signature no longer agree, was not
written by serve as it stands; anyone with the public key can tell, from
an export, with no access to the database.

Keys: the private key is a PEM file (``SPANVISOR_AUDIT_SIGNING_KEY``; by
default ``<data_dir>/audit-signing.key``, made with mode 0600 at the first
start). A key's id is the first 16 hex digits of the SHA-256 of its raw
public key, and every signature names it, so after a rotation the old
public keys stay valid for the rows they signed: a keys file holds one
public key a line (``ed25519 <64 hex digits>``, ``#`` comments).

Pure but for reading and writing key files; results instead of exceptions
for what a person gives.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .humanrows import INTERVENTION_COLUMNS

KEY_FILE = "audit-signing.key"
# What the signature covers is this text, then the canonical JSON below: a
# signature of this form can never be taken for one of anything else.
CONTEXT = b"spanvisor.decision-row.v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey

    @property
    def public_line(self) -> str:
        return public_line(self.private.public_key())


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """Why a key file could not be used."""

    reason: str


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def public_line(key: Ed25519PublicKey) -> str:
    """The keys file's line for ``key``."""
    return f"ed25519 {raw_public(key).hex()}"


def default_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def load_or_create(path: Path) -> SigningKey | KeyProblem:
    """The signing key at ``path``, made (mode 0600, created exclusively:
    two replicas starting at once on one data dir keep one key) when there
    is none."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it meanwhile: read theirs
        except OSError as exc:
            return KeyProblem(f"cannot create the audit signing key {path}: {exc}")
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    return load(path)


def load(path: Path) -> SigningKey | KeyProblem:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return KeyProblem(f"cannot read the audit signing key {path}: {exc}")
    if not isinstance(key, Ed25519PrivateKey):
        return KeyProblem(f"the audit signing key {path} is not an Ed25519 key")
    return SigningKey(key_id_of(key.public_key()), key)


def parse_public_keys(text: str) -> dict[str, Ed25519PublicKey] | KeyProblem:
    """A keys file (or one key): ``ed25519 <hex>`` lines, or a PEM public
    key; by key id."""
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            return KeyProblem(f"not a public key: {exc}")
        if not isinstance(key, Ed25519PublicKey):
            return KeyProblem("not an Ed25519 public key")
        return {key_id_of(key): key}
    out: dict[str, Ed25519PublicKey] = {}
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        raw = words[-1]
        if (len(words) == 2 and words[0] != "ed25519") or len(words) > 2 or len(raw) != 64:
            return KeyProblem(f"line {n}: not 'ed25519 <64 hex digits>'")
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
        except ValueError:
            return KeyProblem(f"line {n}: not 64 hex digits")
        out[key_id_of(key)] = key
    return out if out else KeyProblem("no public key in it")


def read_public_keys(path: Path) -> dict[str, Ed25519PublicKey] | KeyProblem:
    try:
        return parse_public_keys(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        return KeyProblem(f"cannot read {path}: {exc}")


# --- the signed form --------------------------------------------------------


def _json(value: Any) -> Any:
    """A jsonb column as written (text) or read back (text, or decoded)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def content(row: Mapping[str, Any]) -> dict[str, Any]:
    """A decision row's content, the same whether built from what serve
    writes or read back from the database or an export: the time as
    microseconds, JSON columns decoded."""
    out: dict[str, Any] = {}
    for c in INTERVENTION_COLUMNS:
        v = row.get(c)
        if c == "at":
            if isinstance(v, datetime):
                v = (v - _EPOCH) // timedelta(microseconds=1)
            out["at_us"] = v
            continue
        out[c] = _json(v) if c in ("attributes", "notes") else v
    if "at_us" in row and "at" not in row:
        out["at_us"] = row["at_us"]
    return out


def payload(seq: int, prev: str, row_hash: str, body: Mapping[str, Any]) -> bytes:
    doc = {"seq": seq, "prev": prev, "hash": row_hash, "content": dict(body)}
    return CONTEXT + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: SigningKey, seq: int, prev: str, row_hash: str, body: Mapping[str, Any]) -> str:
    return key.private.sign(payload(seq, prev, row_hash, body)).hex()


def holds(
    keys: Mapping[str, Ed25519PublicKey], key_id: str, signature: str, seq: int, prev: str, row_hash: str, body: Any
) -> str | None:
    """None when ``signature`` by ``key_id`` covers this link; else why not."""
    key = keys.get(key_id)
    if key is None:
        return f"signed with key {key_id}, which is not among the public keys given"
    try:
        key.verify(bytes.fromhex(signature), payload(seq, prev, row_hash, body))
    except (InvalidSignature, ValueError):
        return "its signature does not hold: its content or its place in the chain changed since serve signed it"
    return None


def ids(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys))


__all__ = [
    "CONTEXT",
    "KEY_FILE",
    "KeyProblem",
    "SigningKey",
    "content",
    "default_path",
    "holds",
    "ids",
    "key_id_of",
    "load",
    "load_or_create",
    "parse_public_keys",
    "payload",
    "public_line",
    "raw_public",
    "read_public_keys",
    "sign",
]
