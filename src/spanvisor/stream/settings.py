"""The event stream's settings (docs/reference/events.md#limits)."""

from __future__ import annotations

from typing import Any

from spanvisor.config import Setting, p_duration, p_pos_int, p_str

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "stream_buffer",
        "SPANVISOR_STREAM_BUFFER",
        p_pos_int,
        10_000,
        "Events the event stream keeps in memory for clients that reconnect (GET /v1/events).",
        "a number of events",
    ),
    Setting(
        "stream_buffer_age_s",
        "SPANVISOR_STREAM_BUFFER_AGE",
        p_duration,
        900.0,
        "Oldest event the in-memory stream buffer keeps; older positions replay from PostgreSQL or get a reset.",
        "a duration, e.g. 15m",
    ),
    Setting(
        "stream_retention_s",
        "SPANVISOR_STREAM_RETENTION",
        p_duration,
        86_400.0,
        "How long the PostgreSQL event feed keeps events for replay (every replica's stream).",
        "a duration, e.g. 24h",
    ),
    Setting(
        "stream_client_queue",
        "SPANVISOR_STREAM_CLIENT_QUEUE",
        p_pos_int,
        1_000,
        "Events a stream client may fall behind before it is cut off (at most SPANVISOR_STREAM_BUFFER).",
        "a number of events",
    ),
    Setting(
        "stream_max_clients",
        "SPANVISOR_STREAM_MAX_CLIENTS",
        p_pos_int,
        100,
        "Open event streams per bearer token (per process); more get 429.",
        "a number",
    ),
    Setting(
        "stream_heartbeat_s",
        "SPANVISOR_STREAM_HEARTBEAT",
        p_duration,
        20.0,
        "A comment line on an idle event stream this often, so proxies keep it open.",
        "a duration",
    ),
    Setting(
        "stream_feed",
        "SPANVISOR_STREAM_FEED",
        p_str,
        "auto",
        "Where stream positions come from: memory (this process's events), postgres (every replica's), "
        "or auto (postgres when the PostgreSQL sink runs).",
        "auto, memory or a feed's name",
    ),
)


def value(config: Any, name: str) -> Any:
    """A stream setting, its default when this configuration was loaded
    without the sinks' tables (tests, tools)."""
    got = config.get(name)
    if got is not None:
        return got
    return next(s.default for s in SETTINGS if s.name == name)


def enabled(config: Any) -> bool:
    """Never chosen by ``SPANVISOR_SINKS=auto``: ``serve`` runs the stream
    for its admin port, the demo for its page (:func:`spanvisor.sink.auto_sink_names`
    reads this without importing the sink)."""
    return False


__all__ = ["SETTINGS", "enabled", "value"]
