"""The webhook sink's settings, merged into spanvisor's config table."""

from __future__ import annotations

from typing import Any

from spanvisor.config import Config, Setting, is_http_url, p_bool, p_duration, p_int, p_list, p_opt_str, url_origin

ACTIONS = ("approve", "reject", "cancel", "retry", "acknowledge")


def p_actions(v: Any) -> tuple[str, ...]:
    """``retry,cancel``, or ``all`` / empty for every action."""
    names = tuple(dict.fromkeys(x.lower() for x in p_list(v)))
    if names in ((), ("all",)):
        return ()
    if any(name not in ACTIONS for name in names):
        raise ValueError(v)
    return names


# What logs show of the URL (spanvisor.config.url_origin).
where = url_origin


def config_problem(url: str | None, secret: str | None) -> str | None:
    """Why the sink cannot send with these settings, or None."""
    if not url:
        return "SPANVISOR_WEBHOOK_URL is not set"
    if not is_http_url(url):
        return "SPANVISOR_WEBHOOK_URL must be an http(s) URL with a host"
    if not secret:
        return "SPANVISOR_WEBHOOK_SECRET is not set (nothing is sent unsigned)"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "webhook_url",
        "SPANVISOR_WEBHOOK_URL",
        p_opt_str,
        None,
        "URL that receives one signed POST per applied intervention (approve, reject, cancel, retry, "
        "acknowledge). Enables the webhook sink. See docs/reference/webhooks.md.",
        "an http(s) URL",
        # A URL may carry credentials (user:password@, ?token=): shown masked.
        secret=True,
    ),
    Setting(
        "webhook_secret",
        "SPANVISOR_WEBHOOK_SECRET",
        p_opt_str,
        None,
        "Shared secret for the X-Spanvisor-Signature HMAC-SHA256; required (nothing is sent unsigned). Never logged.",
        "a random string, e.g. `openssl rand -hex 32`",
        secret=True,
    ),
    Setting(
        "webhook_actions",
        "SPANVISOR_WEBHOOK_ACTIONS",
        p_actions,
        (),
        "Which applied actions to send. Default: all.",
        "all, or a comma-separated subset of " + ", ".join(ACTIONS),
    ),
    Setting(
        "webhook_timeout_s",
        "SPANVISOR_WEBHOOK_TIMEOUT",
        p_duration,
        10.0,
        "Timeout of one POST (connect and answer); a timeout is retried.",
        "a duration, e.g. 10s",
    ),
    Setting(
        "webhook_max_age_s",
        "SPANVISOR_WEBHOOK_MAX_AGE",
        p_duration,
        3600.0,
        "Give up on an intervention not delivered this long after it was queued (counted as "
        'dropped_total{reason="webhook_expired"}): a retry or cancel acted on much later may do harm.',
        "a duration, e.g. 1h",
    ),
    Setting(
        "webhook_max_attempts",
        "SPANVISOR_WEBHOOK_MAX_ATTEMPTS",
        p_int,
        0,
        "Give up on an intervention after this many failed attempts in one process; 0: no limit "
        "(the age limit still applies).",
        "a non-negative integer",
    ),
    Setting(
        "webhook_checkpoints",
        "SPANVISOR_WEBHOOK_CHECKPOINTS",
        p_bool,
        False,
        "Also send the decision log's chain head when it moves (a spanvisor.chain_checkpoint body, from the "
        "postgres sink's checkpoints), so a head is kept outside the database. Off: only interventions are sent.",
        "true or false",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with a URL to post to.
    Here, beside the settings, so that choosing the sinks imports none that
    does not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("webhook_url"))
