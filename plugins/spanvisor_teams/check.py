"""``spanvisor check`` for Teams: does Microsoft Entra give the bot its
token, is the bot in each channel's roster (it reads one member: nothing
shows in the channel), and can presses be proven (the Bot Connector's
signing keys, people named by ``teams_user``)? No line says the password
or a token: a refusal is said in the login service's words, scrubbed
(:mod:`.api`), and what to fix is named by its setting.
"""

from __future__ import annotations

from spanvisor.config import Config, url_origin
from spanvisor.control.deciders import from_config

from .api import Connector, Reply
from .auth import Keys, Unproven
from .settings import LOGIN_URL, MESSAGES_PATH, OPENID_URL, SERVICE_URL, config_problem

Line = tuple[str, bool, str]


def fix_for(answer: Reply, login: bool = False) -> str:
    """What a person does about a refusal, in Teams' words and ours
    (``login``: of the bot's token, by the login service)."""
    error = answer.error.rstrip(". ")  # a fix follows after a colon
    said = f"{answer.code}: {error}" if answer.code and error else error or f"HTTP {answer.status}"
    if answer.code == "token":
        return answer.error  # it names SPANVISOR_TEAMS_APP_ID and SPANVISOR_TEAMS_APP_PASSWORD
    if answer.code == "BotNotInConversationRoster":
        return f"{said}: add the bot's app to the channel's team (Apps → Manage your apps → Upload)"
    if answer.code in ("ConversationNotFound", "BadArgument", "BadSyntax"):
        return f"{said}: check the channel id (the channel's “Get link to channel” shows 19:…@thread.tacv2)"
    if answer.status == 401:
        return f"{said}: the connector does not take the bot's token; check SPANVISOR_TEAMS_APP_ID"
    if answer.code in ("connection", "timeout") or (login and answer.status >= 500):
        return f"{said}: check the network and SPANVISOR_TEAMS_{'LOGIN' if login else 'SERVICE'}_URL"
    return said


async def run_check(config: Config) -> list[Line]:
    app_id, password = config.get("teams_app_id"), config.get("teams_app_password")
    tenant, channel = str(config.get("teams_tenant") or "botframework.com"), config.get("teams_channel")
    service = str(config.get("teams_service_url") or SERVICE_URL)
    login = str(config.get("teams_login_url") or LOGIN_URL)
    openid = str(config.get("teams_openid_url") or OPENID_URL)
    routes = tuple(config.get("teams_routes", ()))
    urls = {
        "SPANVISOR_TEAMS_SERVICE_URL": service,
        "SPANVISOR_TEAMS_LOGIN_URL": login,
        "SPANVISOR_TEAMS_OPENID_URL": openid,
    }
    problem = config_problem(app_id, password, tenant, channel, urls, routes)
    if problem is not None:
        return [("teams", False, problem)]
    timeout = float(config.get("teams_timeout_s", 10.0))
    connector = Connector(str(app_id), str(password), tenant, login, service, timeout)
    try:
        token = await connector.token()
        if not token.ok:
            return [("teams token", False, fix_for(token, login=True))]
        out: list[Line] = [("teams token", True, f"the bot's token from {url_origin(login)} ({tenant})")]
        for target in dict.fromkeys(x for x in (channel, *(r.channel for r in routes)) if x):
            seen = await connector.roster(str(target))
            what = f"teams channel {target}"
            out.append((what, True, "the bot is in the channel's team") if seen.ok else (what, False, fix_for(seen)))
        out.append(await _presses(config, openid, timeout))
        return out
    finally:
        await connector.close()


async def _presses(config: Config, openid: str, timeout_s: float) -> Line:
    """Whether presses can decide: someone named by teams_user, and the keys that prove a press."""
    what = "teams presses"
    people = from_config(config)
    if people is None or not any(p.teams_user for p in people.everyone()):
        return (what, True, "no buttons yet: SPANVISOR_DECIDERS names nobody by teams_user")
    keys = Keys(openid, timeout_s)
    held = await keys.key("")  # fetches the published keys; no key has an empty id
    if isinstance(held, Unproven) and held.reason == "keys_unavailable":
        return (what, False, f"the Bot Connector's signing keys could not be read from {url_origin(openid)}")
    where = f"presses are taken at serve's {MESSAGES_PATH} (the bot's messaging endpoint)"
    if not tuple(config.get("allowed_hosts", ()) or ()):
        # A proxy that passes on the public Host (Caddy, Traefik, nginx with `proxy_set_header Host $host`)
        # is refused by serve's admin port (403 host_not_allowed) unless that name is allowed.
        where += "; a proxy passing its public Host needs that name in SPANVISOR_ALLOWED_HOSTS"
    return (what, True, where)
