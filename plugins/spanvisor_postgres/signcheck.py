"""Checking the decision log's signatures, online or from an export.

Over the links in chain order (:func:`.signer.signed_log`, or the lines
``spanvisor audit export`` wrote), with nothing but the public keys:

* the links are numbered 1, 2, 3 … with no gap, and each row names the
  hash of the link before as its ``prev`` (a removal record keeps its
  link's hash);
* every row from the first signed one on carries a signature, by a key
  given, of its content and its place (number, ``prev``, own hash); one
  that holds is enough (a role that may INSERT can add ones that do not).

A row inserted by the database's own user has a link but no signature; a
row altered after serve signed it (content, number or hashes) fails its
signature. Rows before the first signed one were written before signing
was turned on (an upgrade): counted, not failed. A removal that is not
``pruned`` is reported, as the chain's check does; whether a prune was
proven is the database's to show (:mod:`.removals`), not an export's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import signing

GENESIS = "0" * 64
# Signatures of one link looked at (anyone may add some that do not hold).
MAX_SIGNATURES = 8


@dataclass
class SignVerdict:
    links: int = 0
    signed: int = 0
    before_signing: int = 0
    removed: int = 0
    keys_used: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def check(lines: Iterable[Mapping[str, Any]], keys: Mapping[str, Ed25519PublicKey], limit: int = 20) -> SignVerdict:
    """Every problem (up to ``limit``) of the links ``lines``."""
    v = SignVerdict()
    expected_seq, prev = 1, GENESIS
    signing_on = False

    def problem(text: str) -> None:
        if len(v.problems) < limit:
            v.problems.append(text)

    for line in lines:
        try:
            seq = int(line["seq"])
        except (KeyError, TypeError, ValueError):
            problem(f"after link {expected_seq - 1}: a line that is not a link")
            continue
        if seq != expected_seq:
            problem(f"link {expected_seq} is missing (the next is {seq}): a row removed with no record of it")
        expected_seq = seq + 1
        v.links += 1
        if line.get("removed") is not None:
            v.removed += 1
            if line.get("removed") != "pruned":
                problem(f"link {seq} ({line.get('intervention_id')}) was deleted, not by spanvisor prune")
            prev = str(line.get("hash") or "")
            continue
        ident = (line.get("content") or {}).get("intervention_id") if isinstance(line.get("content"), Mapping) else None
        if line.get("prev") != prev:
            problem(f"link {seq} ({ident}) does not follow link {seq - 1}")
        prev = str(line.get("hash") or "")
        sigs = [x for x in line.get("signatures") or [] if isinstance(x, Mapping)][:MAX_SIGNATURES]
        if not sigs:
            if signing_on:
                problem(f"link {seq} ({ident}) is signed by no one: serve did not write it (inserted in the database)")
            else:
                v.before_signing += 1
            continue
        body = line.get("content") or {}
        whys = [
            signing.holds(keys, str(x.get("key_id")), str(x.get("signature")), seq, str(line.get("prev")), prev, body)
            for x in sigs
        ]
        good = [str(x.get("key_id")) for x, why in zip(sigs, whys, strict=True) if why is None]
        if not good:
            problem(f"link {seq} ({ident}): {next(w for w in whys if w is not None)}")
            continue
        signing_on = True  # only a signature that holds: anyone may add ones that do not
        v.keys_used.add(good[0])
        v.signed += 1
    return v


def read_export(text: str) -> list[dict[str, Any]] | str:
    """The lines of an export; a reason when one is not JSON."""
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            return f"line {n} is not JSON"
        if not isinstance(doc, dict):
            return f"line {n} is not a JSON object"
        out.append(doc)
    return out


def report(v: SignVerdict) -> str:
    counts = f"{v.links} links ({v.signed} signed, {v.removed} removed"
    counts += f", {v.before_signing} written before signing)" if v.before_signing else ")"
    if v.problems:
        return "\n".join(["decision signatures: NOT intact", *(f"  {p}" for p in v.problems), f"  checked: {counts}"])
    keys = f"; keys {signing.ids(v.keys_used)}" if v.keys_used else ""
    return f"decision signatures intact: {counts}{keys}"


__all__ = ["SignVerdict", "check", "read_export", "report"]
