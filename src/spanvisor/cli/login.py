"""``spanvisor login`` and ``spanvisor logout``: a person in a terminal
proven by the company's identity provider, without a hand-made token.

``login`` uses the OAuth 2.0 device authorization grant (RFC 8628) where
the provider offers it (``device_authorization_endpoint`` in its
``/.well-known/openid-configuration``): it prints the verification URL and
a user code, the person approves the sign-in in a browser (anywhere, even
on another device), and the command polls the token endpoint at the
interval the provider asks (``authorization_pending``: wait;
``slow_down``: wait 5 s longer from then on; ``access_denied``,
``expired_token``: stop, with the reason). The tokens are kept for the
commands that decide (:mod:`spanvisor.cli.logins`), refreshed with the
refresh token when one was given. ``logout`` revokes the refresh token
where the provider offers revocation and removes the file.

Exit status: 0 signed in (or out), 1 the provider refused or the code
expired, 2 not configured or the provider unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from spanvisor.cli.logins import (
    LoginError,
    claims_of,
    discover,
    login_path,
    post_form,
    read_login,
    stored,
    write_login,
)
from spanvisor.config import Config

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_S = 5.0  # RFC 8628 3.5: every slow_down adds 5 seconds to the interval


def _fail(message: str, code: int = 1) -> int:
    print(f"spanvisor login: {message}", file=sys.stderr, flush=True)
    return code


def cmd_login(args: argparse.Namespace, config: Config) -> int:
    issuer = args.issuer or config.get("oidc_issuer")
    client_id = args.client_id or config.get("oidc_client_id")
    if not issuer or not client_id:
        return _fail("needs the provider and a client: SPANVISOR_OIDC_ISSUER and SPANVISOR_OIDC_CLIENT_ID", 2)
    scope = args.scope or config.get("oidc_scopes") or "openid"
    which = args.send or config.get("oidc_login_token") or "id_token"
    try:
        meta = discover(str(issuer))
    except LoginError as exc:
        return _fail(f"the provider could not be read: {exc}", 2)
    device_url = meta.get("device_authorization_endpoint")
    if not isinstance(device_url, str) or not device_url:
        return _fail(
            f"{issuer} does not offer the device authorization grant (no device_authorization_endpoint): "
            "get a token from it another way and pass it with --token"
        )
    status, dev = post_form(device_url, {"client_id": str(client_id), "scope": str(scope)})
    if status != 200 or not dev.get("device_code") or not dev.get("user_code"):
        return _fail(f"the provider refused to start a sign-in: {_why(status, dev)}", 2 if status == 0 else 1)
    uri = dev.get("verification_uri") or dev.get("verification_url")
    print(f"To sign in, open {uri} and enter the code: {dev['user_code']}", flush=True)
    if dev.get("verification_uri_complete"):
        print(f"(or open {dev['verification_uri_complete']})", flush=True)
    print("Waiting for you to approve the sign-in …", flush=True)
    got = poll(str(meta["token_endpoint"]), str(client_id), dev)
    if isinstance(got, int):
        return got
    if not got.get(which):
        return _fail(f"the provider sent no {which} (SPANVISOR_OIDC_LOGIN_TOKEN; the scopes asked: {scope})")
    doc = stored(got, str(issuer), str(client_id), str(which), meta)
    write_login(login_path(config), doc)
    print(_signed_in(doc, str(config.get("oidc_person_claim") or "email")), flush=True)
    return 0


def poll(token_url: str, client_id: str, dev: dict[str, Any]) -> dict[str, Any] | int:
    """The token endpoint's answer once the person approved, or an exit status."""
    interval = _seconds(dev.get("interval"), 5.0)
    deadline = time.monotonic() + _seconds(dev.get("expires_in"), 600.0)
    fields = {"grant_type": DEVICE_GRANT, "device_code": str(dev["device_code"]), "client_id": client_id}
    while True:
        if time.monotonic() + interval > deadline:
            return _fail("the code expired before the sign-in was approved: run spanvisor login again")
        time.sleep(interval)
        status, got = post_form(token_url, fields)
        if status == 200 and (got.get("id_token") or got.get("access_token")):
            return got
        error = got.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_S
            continue
        if error == "access_denied":
            return _fail("the sign-in was denied")
        if error == "expired_token":
            return _fail("the code expired before the sign-in was approved: run spanvisor login again")
        return _fail(f"the provider refused the sign-in: {_why(status, got)}", 2 if status == 0 else 1)


def _seconds(raw: Any, default: float) -> float:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0 else default


def _why(status: int, doc: dict[str, Any]) -> str:
    text = doc.get("error_description") or doc.get("error") or (f"HTTP {status}" if status else "no answer")
    return "".join(c for c in str(text) if c.isprintable())[:300]


def _signed_in(doc: dict[str, Any], person_claim: str) -> str:
    claims = claims_of(doc.get(str(doc.get("send"))))
    who = claims.get(person_claim) or claims.get("email") or claims.get("preferred_username") or claims.get("sub")
    groups = claims.get("groups")
    shown = f" (groups: {', '.join(map(str, groups))})" if isinstance(groups, list) and groups else ""
    until = time.strftime("%H:%M", time.localtime(float(doc["expires_at"])))
    again = ", refreshed after that" if doc.get("refresh_token") else ""
    return (
        f"Signed in as {who or 'unknown'}{shown} until {until}{again}. "
        "spanvisor approve, reject, cancel, approvals and grants now send this token."
    )


def cmd_logout(args: argparse.Namespace, config: Config) -> int:
    path = login_path(config)
    doc = read_login(path)
    if doc is None:
        print("Not signed in.")
        return 0
    revoke = doc.get("revocation_endpoint")
    if isinstance(revoke, str) and revoke and doc.get("refresh_token"):
        fields = {"token": str(doc["refresh_token"]), "token_type_hint": "refresh_token"}
        post_form(revoke, {**fields, "client_id": str(doc.get("client_id") or "")})  # best effort
    path.unlink(missing_ok=True)
    print(f"Signed out (removed {path}).")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "login", help="sign in with your identity provider (device code): approve and friends then send your token"
    )
    p.add_argument("--issuer", help="the provider (default: $SPANVISOR_OIDC_ISSUER)")
    p.add_argument("--client-id", help="the OAuth client (default: $SPANVISOR_OIDC_CLIENT_ID)")
    p.add_argument("--scope", help="scopes to ask (default: $SPANVISOR_OIDC_SCOPES)")
    p.add_argument(
        "--send",
        choices=("id_token", "access_token"),
        help="which token the commands send (default: $SPANVISOR_OIDC_LOGIN_TOKEN, else id_token)",
    )
    p.set_defaults(func=cmd_login)
    out = subparsers.add_parser("logout", help="forget (and revoke) the tokens of spanvisor login")
    out.set_defaults(func=cmd_logout)


__all__ = ["cmd_login", "cmd_logout", "poll", "register"]
