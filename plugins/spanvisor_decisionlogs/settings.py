"""The decision-log sink's settings, merged into spanvisor's config table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from spanvisor.config import Config, Setting, is_http_url, p_duration, p_opt_str, url_origin

Headers = tuple[tuple[str, str], ...]


def p_headers(v: Any) -> Headers:
    """``key=value,key2=value2`` as in ``OTEL_EXPORTER_OTLP_HEADERS`` (values
    percent-decoded), or a TOML table. A malformed pair is an error rather
    than skipped: a missing auth header would only show as refused exports."""
    if isinstance(v, Mapping):
        pairs = [(str(k).strip(), str(x).strip()) for k, x in v.items()]
    else:
        pairs = []
        for item in str(v or "").split(","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError("expected key=value")
            pairs.append((unquote(key.strip()), unquote(value.strip())))
    if any(not key or any(c in key for c in " \t\r\n:") for key, _ in pairs):
        raise ValueError("a header name is empty or not a token")
    if any(c in value for _, value in pairs for c in "\r\n"):
        raise ValueError("a header value holds a line break")
    return tuple(pairs)


def p_timeout(v: Any) -> float:
    """A duration above zero: with none, every export would fail."""
    seconds = p_duration(v)
    if seconds <= 0:
        raise ValueError(v)
    return seconds


# What logs show of the URL (spanvisor.config.url_origin).
where = url_origin


def config_problem(endpoint: str | None) -> str | None:
    """Why the sink cannot export with this endpoint, or None."""
    if not endpoint:
        return "SPANVISOR_DECISION_LOGS_ENDPOINT is not set"
    if not is_http_url(endpoint):
        return "SPANVISOR_DECISION_LOGS_ENDPOINT must be an http(s) URL with a host, e.g. http://collector:4318/v1/logs"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "decision_logs_endpoint",
        "SPANVISOR_DECISION_LOGS_ENDPOINT",
        p_opt_str,
        None,
        "OTLP/HTTP logs URL (the full path, e.g. http://collector:4318/v1/logs) that receives one OpenTelemetry "
        "log event per decision (applied or refused). Enables the decisionlogs sink. See docs/reference/decision-logs.md.",
        "an http(s) URL",
        # A URL may carry credentials (user:password@, ?token=): shown masked.
        secret=True,
    ),
    Setting(
        "decision_logs_headers",
        "SPANVISOR_DECISION_LOGS_HEADERS",
        p_headers,
        (),
        "Headers sent with every export, e.g. an API key for the Collector or the SIEM. Never logged.",
        "key=value pairs, comma-separated, as OTEL_EXPORTER_OTLP_HEADERS",
        secret=True,
    ),
    Setting(
        "decision_logs_timeout_s",
        "SPANVISOR_DECISION_LOGS_TIMEOUT",
        p_timeout,
        10.0,
        "How long the exporter tries one batch, retries included; past it the batch is dropped, counted as "
        'dropped_total{reason="decision_logs_export_failed"}.',
        "a duration above zero, e.g. 10s",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with an endpoint to
    send the decisions to. Here, beside the settings, so that choosing the
    sinks imports none that does not run
    (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("decision_logs_endpoint"))
