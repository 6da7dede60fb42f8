"""verify() and signature(): what a receiver relies on (unit)."""

from __future__ import annotations

import hashlib
import hmac
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from spanvisor_webhook import signature, verify
from tests.webhook.conftest import SECRET

BODY = b'{"type":"spanvisor.intervention","intervention_id":"i1","comment":"\\u00e9 <b>"}'
TS = 1_795_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, TS, BODY) == f"v1={expected}"
    assert signature(SECRET, str(TS), BODY.decode()) == signature(SECRET.encode(), TS, BODY)


def test_a_good_request_verifies() -> None:
    assert verify(SECRET, str(TS), BODY, signature(SECRET, TS, BODY), now=TS + 10)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body"),
    [
        ("whsec-not-the-secret", str(TS), BODY),  # tampered secret
        (SECRET, str(TS + 1), BODY),  # the timestamp changed after signing
        (SECRET, str(TS), BODY.replace(b"i1", b"i2")),  # the body changed
        (SECRET, str(TS), BODY + b" "),  # re-serialised JSON is another body
    ],
)
def test_tampering_fails(secret: str, timestamp: str, body: bytes) -> None:
    assert not verify(secret, timestamp, body, signature(SECRET, TS, BODY), now=TS)


def test_stale_and_future_timestamps_fail() -> None:
    sig = signature(SECRET, TS, BODY)
    assert verify(SECRET, str(TS), BODY, sig, now=TS + 300)
    assert not verify(SECRET, str(TS), BODY, sig, now=TS + 301)  # a replay five minutes on
    assert not verify(SECRET, str(TS), BODY, sig, now=TS - 301)  # a clock far ahead
    assert verify(SECRET, str(TS), BODY, sig, tolerance_s=3600, now=TS + 3000)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        (None, "sig"),
        (str(TS), None),
        (str(TS), ""),
        ("", "sig"),
        ("-1", "sig"),
        ("1e9", "sig"),
        ("17950000000000000", "sig"),
        (f"{TS}.5", "sig"),
        ("١٧٩٥", "sig"),  # digits, but not ASCII ones
    ],
)
def test_malformed_headers_fail(timestamp: str | None, header: str | None) -> None:
    real = signature(SECRET, TS, BODY)
    assert not verify(SECRET, timestamp, BODY, real if header == "sig" else header, now=TS)


def test_garbage_signatures_and_empty_secret_fail() -> None:
    real = signature(SECRET, TS, BODY)
    for header in ("v1=", "v1=00", real.upper(), real[3:], "v0=" + real[3:], "v1=ünïcode"):
        assert not verify(SECRET, str(TS), BODY, header, now=TS)
    assert not verify("", str(TS), BODY, signature("", TS, BODY), now=TS)


def test_any_listed_signature_may_match() -> None:
    """While a secret is rotated a sender may list two; one match is enough."""
    header = f"{signature('old-secret', TS, BODY)}, {signature(SECRET, TS, BODY)}"
    assert verify(SECRET, str(TS), BODY, header, now=TS)
    assert not verify("third-secret", str(TS), BODY, header, now=TS)


def test_the_openssl_recipe_in_the_docs_agrees() -> None:
    """docs/reference/webhooks.md verifies with `openssl dgst -sha256 -hmac`; same answer."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", SECRET, "-r"],
        input=f"{TS}.".encode() + BODY,
        capture_output=True,
        check=True,
        timeout=10,
    ).stdout.decode()
    assert f"v1={out.split()[0]}" == signature(SECRET, TS, BODY)


def test_the_example_request_in_the_docs_verifies() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "webhooks.md").read_text()
    block = doc.split("```http\n", 1)[1].split("```", 1)[0]
    head, body = block.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    ts = headers["X-Spanvisor-Timestamp"]
    raw = body.strip().encode()
    assert verify("example-secret", ts, raw, headers["X-Spanvisor-Signature"], now=int(ts))
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Spanvisor-Intervention-Id"])
