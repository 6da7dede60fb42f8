"""Which keys a process signs and checks decision rows with (settings).

Serve signs with ``SPANVISOR_AUDIT_SIGNING_KEY`` (default
``<data_dir>/audit-signing.key``, made at the first start); verify accepts
that key's public half and those of ``SPANVISOR_AUDIT_PUBLIC_KEYS`` (the
keys rotated out), or the keys file given with ``--public-key``.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from spanvisor.config import Config

from . import signing


def key_path(config: Config) -> Path:
    given = config.get("audit_signing_key")
    return Path(str(given)).expanduser() if given else signing.default_path(Path(config.data_dir))


def signing_key(config: Config) -> signing.SigningKey | signing.KeyProblem:
    """The key serve signs with, made when it is the default one and missing
    (a configured path that does not exist is a mistake, said, not papered
    over with a new key)."""
    path = key_path(config)
    if config.get("audit_signing_key") and not path.exists():
        return signing.KeyProblem(f"SPANVISOR_AUDIT_SIGNING_KEY names {path}, which does not exist")
    return signing.load_or_create(path)


def verify_keys(config: Config, given: Path | None) -> dict[str, Ed25519PublicKey] | signing.KeyProblem:
    """The public keys a check accepts: ``given`` alone when given; else the
    signing key's (when there is one here) and the rotated-out keys file's."""
    if given is not None:
        return signing.read_public_keys(given)
    out: dict[str, Ed25519PublicKey] = {}
    path = key_path(config)
    if path.exists():
        key = signing.load(path)
        if isinstance(key, signing.KeyProblem):
            return key
        out[key.key_id] = key.private.public_key()
    more = config.get("audit_public_keys")
    if more:
        got = signing.read_public_keys(Path(str(more)).expanduser())
        if isinstance(got, signing.KeyProblem):
            return got
        out.update(got)
    return out


__all__ = ["key_path", "signing_key", "verify_keys"]
