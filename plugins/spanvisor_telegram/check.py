"""``spanvisor check`` for Telegram: is the token the bot's, and may the bot
post in the chat the settings name? ``getMe``, ``getChat`` and the bot's
own ``getChatMember``: they read, so the check leaves nothing in the chat.
"""

from __future__ import annotations

from spanvisor.config import Config
from spanvisor.control.deciders import from_config

from .api import BotApi, BotReply
from .settings import API, config_problem, webhook_problem, where

Line = tuple[str, bool, str]


def fix_for(answer: BotReply) -> str:
    """What a person does about a refusal, in Telegram's words and ours."""
    said = answer.error or f"HTTP {answer.status}"
    if answer.status == 401:
        return f"{said}: the token is not a bot's; copy it again from @BotFather (/mybots → API Token)"
    if answer.status == 404:
        return f"{said}: check SPANVISOR_TELEGRAM_BASE_URL (the Bot API answers at https://api.telegram.org)"
    if "chat not found" in said:
        return f"{said}: add the bot to the chat first, and check SPANVISOR_TELEGRAM_CHAT (a group's id is negative)"
    if answer.status == 403:
        return f"{said}: add the bot to the chat again (a channel needs it as an admin who may post)"
    if answer.error in ("connection", "timeout", "disconnected"):
        return f"Telegram did not answer ({answer.error}): check the network and SPANVISOR_TELEGRAM_BASE_URL"
    return said


async def run_check(config: Config) -> list[Line]:
    token, chat = config.get("telegram_token"), config.get("telegram_chat")
    base = str(config.get("telegram_base_url") or API)
    routes = tuple(config.get("telegram_routes", ()))
    problem = config_problem(token, chat, base, routes)
    if problem is not None:
        return [("telegram", False, problem)]
    api = BotApi(str(token), base, float(config.get("telegram_timeout_s", 10.0)))
    try:
        me = await api.call("getMe", {})
        if not me.ok:
            return [("telegram getMe", False, fix_for(me))]
        bot = me.result
        out: list[Line] = [("telegram getMe", True, f"bot @{bot.get('username')} at {where(base)}")]
        for target in dict.fromkeys(x for x in (chat, *(r.channel for r in routes)) if x):
            out.append(await _chat(api, str(target), bot.get("id")))
        out.append(await _updates(api, config))
        return out
    finally:
        await api.close()


async def _chat(api: BotApi, chat: str, bot_id: object) -> Line:
    target: int | str = chat if chat.startswith("@") else int(chat)
    found = await api.call("getChat", {"chat_id": target})
    if not found.ok:
        return (f"telegram chat {chat}", False, fix_for(found))
    member = await api.call("getChatMember", {"chat_id": target, "user_id": bot_id})
    if not member.ok:
        return (f"telegram chat {chat}", False, fix_for(member))
    return _may_post(chat, found.result, member.result)


async def _updates(api: BotApi, config: Config) -> Line:
    """How presses come, and whether Telegram agrees (getWebhookInfo)."""
    mode = config.get("telegram_updates", "poll")
    what = f"telegram presses ({mode})"
    if mode == "off":
        return (what, True, "no buttons: the messages show the command that answers")
    people = from_config(config)
    if people is None or not any(p.telegram_user for p in people.everyone()):
        return (what, True, "no buttons yet: SPANVISOR_DECIDERS names nobody by telegram_user")
    if mode == "webhook":
        problem = webhook_problem(config.get("telegram_webhook_url"), config.get("telegram_webhook_secret"))
        if problem is not None:
            return (what, False, problem)
    info = await api.call("getWebhookInfo", {})
    if not info.ok:
        return (what, False, fix_for(info))
    hooked = str(info.result.get("url") or "") if isinstance(info.result, dict) else ""
    if mode == "poll" and hooked:
        return (
            what,
            False,
            f"a webhook is set ({where(hooked)}): polling fails while it is; deleteWebhook, or use webhook",
        )
    if mode == "webhook" and hooked and hooked != config.get("telegram_webhook_url"):
        return (what, False, f"the bot's webhook goes to {where(hooked)}; serve sets its own at start, taking it over")
    return (what, True, "long polling, one replica at a time" if mode == "poll" else "serve sets the webhook at start")


def _may_post(chat: str, info: dict[str, object], member: dict[str, object]) -> Line:
    what = f"telegram chat {chat}"
    kind, status = info.get("type"), member.get("status")
    if status in ("left", "kicked"):
        return (what, False, f"the bot is {status}: add it to the chat again")
    if kind == "channel" and not (status == "creator" or member.get("can_post_messages")):
        return (what, False, "in a channel the bot must be an admin allowed to post messages")
    if status == "restricted" and not member.get("can_send_messages"):
        return (what, False, "the bot is restricted from sending messages here: lift it in the chat's settings")
    forum = (
        " (a forum: each task gets a topic of its own unless SPANVISOR_TELEGRAM_TOPICS=false)"
        if info.get("is_forum")
        else ""
    )
    return (what, True, f"the bot may post in this {kind}{forum}")
