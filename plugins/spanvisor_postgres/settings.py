"""The postgres plugin's settings, kept free of heavy imports (``Config.load`` reads them)."""

from __future__ import annotations

from typing import Any

from spanvisor.config import Config, Setting, p_bool, p_duration, p_int, p_opt_str


def p_opt_duration(v: Any) -> float | None:
    if v is None or str(v).strip().lower() in ("", "none", "off", "0"):
        return None
    return p_duration(v)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "SPANVISOR_DATABASE_URL",
        p_opt_str,
        None,
        "PostgreSQL for the audit trail and the shared state store. Unset: the embedded server when embedded_db is on.",
        "a postgresql:// URL",
        secret=True,
    ),
    Setting(
        "embedded_db",
        "SPANVISOR_EMBEDDED_DB",
        p_bool,
        False,
        "Run the embedded PostgreSQL in <data_dir>/postgres when no database_url is set ('spanvisor demo' and 'serve' turn it on).",
        "true or false",
    ),
    Setting(
        "db_pool_size",
        "SPANVISOR_DB_POOL_SIZE",
        p_int,
        4,
        "Most connections spanvisor opens to PostgreSQL (shared by the sink and the state store).",
        "a positive integer",
    ),
    Setting(
        "db_command_timeout",
        "SPANVISOR_DB_COMMAND_TIMEOUT",
        p_duration,
        10.0,
        "Longest a database statement or connection attempt may take before the batch goes to the outbox.",
        "a duration, e.g. 10s",
    ),
    Setting(
        "outbox_max_events",
        "SPANVISOR_OUTBOX_MAX_EVENTS",
        p_int,
        1_000_000,
        "Events the postgres outbox holds while the database is away; beyond it events are dropped, counted and logged.",
        "a positive integer",
    ),
    Setting(
        "retention",
        "SPANVISOR_RETENTION",
        p_opt_duration,
        None,
        "Delete tasks (and their rows) that ended longer ago than this; checked hourly by the sink. Unset: keep forever.",
        "a duration such as 90d, or none",
    ),
    Setting(
        "audit_prune_floor",
        "SPANVISOR_AUDIT_PRUNE_FLOOR",
        p_duration,
        86_400.0,
        "Prune never removes a person's decision younger than this, and 'spanvisor audit verify' reports a removal "
        "passed off as pruning of a younger one. Set it to your retention to hold every prune to it.",
        "a duration such as 1d or 90d",
    ),
    Setting(
        "audit_checkpoint_interval",
        "SPANVISOR_AUDIT_CHECKPOINT_INTERVAL",
        p_opt_duration,
        600.0,
        "How often the sink checkpoints the decision log's chain head (when it moved): a row in "
        "decision_chain_checkpoints, one log line, the shared state store (the webhook's source). 0: off.",
        "a duration such as 10m, or 0",
    ),
    Setting(
        "audit_signing_key",
        "SPANVISOR_AUDIT_SIGNING_KEY",
        p_opt_str,
        None,
        "The Ed25519 key (PEM file) serve signs each decision row with; the database never holds it. Unset: "
        "<data_dir>/audit-signing.key, made with mode 0600 at the first start.",
        "a file path",
    ),
    Setting(
        "audit_public_keys",
        "SPANVISOR_AUDIT_PUBLIC_KEYS",
        p_opt_str,
        None,
        "A keys file ('ed25519 <hex>' a line) of earlier signing keys whose rows 'spanvisor audit verify' still "
        "accepts after a rotation (the current key is always accepted).",
        "a file path",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with a database: a URL,
    or the embedded one. Here, beside the settings, so that choosing the
    sinks imports none that does not run
    (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("database_url")) or bool(config.get("embedded_db"))
