"""The console sink's settings (read by the configuration without importing the sink)."""

from __future__ import annotations

from spanvisor.config import Config, Setting, p_bool, p_choice, p_duration

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "console_interval_s",
        "SPANVISOR_CONSOLE_INTERVAL",
        p_duration,
        2.0,
        "Least time between two status cards of one task (status changes print at once).",
        "a duration",
    ),
    Setting(
        "console_color",
        "SPANVISOR_CONSOLE_COLOR",
        p_choice("auto", "always", "never"),
        "auto",
        "ANSI colour in console output.",
        "auto, always or never",
    ),
    Setting(
        "console_stream",
        "SPANVISOR_CONSOLE_STREAM",
        p_choice("stdout", "stderr"),
        "stdout",
        "Where the console sink writes.",
        "stdout or stderr",
    ),
    Setting(
        "console_quiet_checkpoints",
        "SPANVISOR_CONSOLE_QUIET",
        p_bool,
        False,
        "Print only thread lines, no status cards between start and finish.",
        "true or false",
    ),
    Setting(
        "console_detail",
        "SPANVISOR_CONSOLE_DETAIL",
        p_choice("auto", "cards", "tasks"),
        "auto",
        "cards: status cards and thread lines, what Slack would show. tasks: one line per task start, "
        "stall, resume, task end and decision. auto: tasks under spanvisor serve, cards elsewhere.",
        "auto, cards or tasks",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: the console stands in
    for Slack when no Slack token is set (log-only mode). Here, beside the
    settings, so that choosing the sinks imports none that does not run
    (:func:`spanvisor.sink.auto_sink_names`)."""
    return not config.get("slack_token") and not config.get("slack_dry_run")
