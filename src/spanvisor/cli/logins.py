"""The tokens ``spanvisor login`` keeps, and the token a command sends.

One file (``SPANVISOR_LOGIN_FILE``, default
``$XDG_STATE_HOME/spanvisor/login.json``), mode 0600, written whole and
renamed into place, holding what the provider answered: the ID token, the
access token, the refresh token (when it gave one), when they expire, and
the issuer and client they came from. A command that decides (``approve``,
``reject``, ``cancel`` …, ``approvals``, ``grants``) sends, in this order:
``--token``, the login's token (refreshed first when it is about to
expire), ``SPANVISOR_DECIDE_TOKEN``, ``SPANVISOR_CONTROL_TOKEN``,
``SPANVISOR_OTLP_TOKEN``. A login that expired and cannot be refreshed is
an error, never a silent fall back to the shared token: the person meant to
decide as themselves.

The provider is spoken to with the standard library (urllib): these are
one-shot commands.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from spanvisor.config import Config, ConfigError
from spanvisor.control.client import token_from_env

# Refreshed when it has less than this left: a decision's round trip fits.
REFRESH_BEFORE_S = 60.0
TIMEOUT_S = 15.0


class LoginError(ConfigError):
    """A login that cannot give a token now (expired, not refreshable): one line."""


def login_path(config: Config | None) -> Path:
    explicit = config.get("login_file") if config is not None else None
    if explicit:
        return Path(str(explicit))
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "spanvisor" / "login.json"


def read_login(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_login(path: Path, doc: dict[str, Any]) -> None:
    """Whole or not at all, readable by its owner only (0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def post_form(url: str, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST ``application/x-www-form-urlencoded`` (OAuth's endpoints); (status, JSON)."""
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Accept": "application/json", "Content-Type": _FORM}
    )
    try:
        with _open(req) as resp:
            return int(resp.status), _json(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), _json(exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, {"error": "unreachable", "error_description": str(getattr(exc, "reason", exc))}


def get_json(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _open(req) as resp:
            return _json(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LoginError(f"{url}: {getattr(exc, 'reason', exc)}") from None


_FORM = "application/x-www-form-urlencoded"


def _open(req: urllib.request.Request) -> Any:
    host = urllib.parse.urlsplit(req.full_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):  # loopback never through a proxy
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=TIMEOUT_S)
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def discover(issuer: str) -> dict[str, Any]:
    """The issuer's ``/.well-known/openid-configuration``."""
    doc = get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if not doc.get("token_endpoint"):
        raise LoginError(f"{issuer} has no OpenID discovery document with a token_endpoint")
    return doc


def stored(
    tokens: dict[str, Any], issuer: str, client_id: str, which: str, endpoints: dict[str, Any]
) -> dict[str, Any]:
    """The login file's content for a token endpoint's answer."""
    expires_in = tokens.get("expires_in")
    life = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
    exp = claims_of(tokens.get(which) or tokens.get("id_token")).get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) else time.time() + life
    return {
        "issuer": issuer,
        "client_id": client_id,
        "send": which,
        "id_token": tokens.get("id_token"),
        "access_token": tokens.get("access_token"),
        "refresh_token": tokens.get("refresh_token"),
        "expires_at": expires_at,
        "token_endpoint": endpoints.get("token_endpoint"),
        "revocation_endpoint": endpoints.get("revocation_endpoint"),
    }


def claims_of(token: Any) -> dict[str, Any]:
    """A JWT's claims, unverified: only to show who and until when (the
    server verifies); {} for anything else."""
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    part = token.split(".")[1]
    try:
        doc = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, TypeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def refresh(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """A new token with the refresh token (kept: the provider may not send a new one)."""
    if not doc.get("refresh_token") or not doc.get("token_endpoint"):
        raise LoginError("your spanvisor login has expired: run `spanvisor login` again")
    fields = {"grant_type": "refresh_token", "refresh_token": str(doc["refresh_token"])}
    fields["client_id"] = str(doc.get("client_id") or "")
    status, got = post_form(str(doc["token_endpoint"]), fields)
    if status != 200 or not (got.get("id_token") or got.get("access_token")):
        why = got.get("error_description") or got.get("error") or f"HTTP {status}"
        raise LoginError(f"your spanvisor login has expired and could not be refreshed ({why}): run `spanvisor login`")
    new = stored(got, str(doc.get("issuer")), str(doc.get("client_id")), str(doc.get("send")), doc)
    new["refresh_token"] = got.get("refresh_token") or doc.get("refresh_token")
    write_login(path, new)
    return new


def logged_in_token(config: Config | None) -> str | None:
    """The token of this person's login (refreshed when due), or None
    without a login; :class:`LoginError` when it cannot give one."""
    path = login_path(config)
    doc = read_login(path)
    if doc is None:
        return None
    expires = doc.get("expires_at")
    if not isinstance(expires, int | float) or expires - time.time() < REFRESH_BEFORE_S:
        doc = refresh(path, doc)
    token = doc.get(str(doc.get("send") or "id_token")) or doc.get("id_token") or doc.get("access_token")
    return str(token) if token else None


def token_for(given: str | None, config: Config) -> str | None:
    """The bearer token a command that decides or reads sends."""
    if given:
        return given
    return logged_in_token(config) or config.get("decide_token") or config.get("control_token") or token_from_env()


__all__ = [
    "LoginError",
    "claims_of",
    "discover",
    "logged_in_token",
    "login_path",
    "post_form",
    "read_login",
    "refresh",
    "stored",
    "token_for",
    "write_login",
]
