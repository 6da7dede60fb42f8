"""``serve``'s settings: the receiver's listeners, its journal, its stop.

Apart from :mod:`spanvisor.receiver.serve`, so that the configuration
(every command loads it) reads them without importing the receiver.
"""

from __future__ import annotations

from typing import Any

from spanvisor.config import (
    Setting,
    p_bool,
    p_choice,
    p_duration,
    p_int,
    p_list,
    p_opt_str,
    p_size,
    p_str,
)
from spanvisor.receiver import heap


def p_port(v: Any) -> int | None:
    """A TCP port, or nothing (that listener is off)."""
    if v is None or str(v).strip() in ("", "off", "none"):
        return None
    n = p_int(v)
    if n > 65535:
        raise ValueError(v)
    return n


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "otlp_bind",
        "SPANVISOR_OTLP_BIND",
        p_str,
        "127.0.0.1",
        "Address the OTLP listeners bind to. Loopback by default: 0.0.0.0 (or --bind 0.0.0.0) lets other "
        "machines reach serve (set SPANVISOR_OTLP_TOKEN and SPANVISOR_ALLOWED_HOSTS too).",
        "an IP address or host name",
    ),
    Setting(
        "allowed_hosts",
        "SPANVISOR_ALLOWED_HOSTS",
        p_list,
        (),
        "Host names clients reach serve by, besides loopback names and IP addresses (which always pass): "
        "a request whose Host header names another gets 403, so a web page cannot reach serve through "
        "DNS rebinding. .example.com allows its subdomains; * turns the check off (a proxy in front checks Host).",
        "comma-separated host names",
    ),
    Setting(
        "otlp_http_port",
        "SPANVISOR_OTLP_HTTP_PORT",
        p_port,
        4318,
        "OTLP/HTTP port (POST /v1/traces).",
        "a TCP port, or off",
    ),
    Setting(
        "otlp_grpc_port",
        "SPANVISOR_OTLP_GRPC_PORT",
        p_port,
        4317,
        "OTLP/gRPC port (TraceService/Export; the Collector's load-balancing exporter uses it).",
        "a TCP port, or off",
    ),
    Setting(
        "admin_port",
        "SPANVISOR_ADMIN_PORT",
        p_port,
        9464,
        "Admin port: /metrics, /healthz (live), /readyz (ready).",
        "a TCP port, or off",
    ),
    Setting(
        "admin_bind",
        "SPANVISOR_ADMIN_BIND",
        p_opt_str,
        None,
        "Address the admin port binds to. Default: SPANVISOR_OTLP_BIND.",
        "an IP address or host name",
    ),
    Setting(
        "otlp_token",
        "SPANVISOR_OTLP_TOKEN",
        p_opt_str,
        None,
        "If set, OTLP requests must carry 'Authorization: Bearer <token>'.",
        "a string",
        secret=True,
    ),
    Setting(
        "open",
        "SPANVISOR_OPEN",
        p_bool,
        False,
        "With no SPANVISOR_OTLP_TOKEN: serve with no token at all, so every local process may send telemetry "
        "and, unless SPANVISOR_DECIDE_TOKEN is set, approve, reject and cancel. Off: serve makes a token at its "
        "first start in <data dir>/serve-token (mode 0600) and requires it; this machine's spanvisor commands, "
        "hooks and launcher read it for a loopback URL.",
        "true or false",
    ),
    Setting(
        "tls_cert",
        "SPANVISOR_TLS_CERT",
        p_opt_str,
        None,
        "PEM certificate (chain) for TLS on both OTLP listeners; needs SPANVISOR_TLS_KEY.",
        "a file path",
    ),
    Setting("tls_key", "SPANVISOR_TLS_KEY", p_opt_str, None, "PEM private key for SPANVISOR_TLS_CERT.", "a file path"),
    Setting(
        "max_body_bytes",
        "SPANVISOR_MAX_BODY_BYTES",
        p_size,
        16 * 1024**2,
        "Largest OTLP request after decompression; larger ones get 413 / RESOURCE_EXHAUSTED.",
        "bytes, e.g. 16MiB",
    ),
    Setting(
        "retry_after_s",
        "SPANVISOR_RETRY_AFTER",
        p_duration,
        2.0,
        "Retry-After (HTTP) and RetryInfo (gRPC) for a refusal when no drain rate is known yet "
        "(otherwise they say when there will be room, from the measured rate).",
        "a duration",
    ),
    Setting(
        "journal",
        "SPANVISOR_JOURNAL",
        p_bool,
        True,
        "Commit accepted spans to a local journal before answering 2xx, and replay it after a crash.",
        "true or false",
    ),
    Setting(
        "journal_retention_s",
        "SPANVISOR_JOURNAL_RETENTION",
        p_duration,
        900.0,
        "How long journal entries are kept and replayed at start (longer covers longer tasks).",
        "a duration, e.g. 15m",
    ),
    Setting(
        "journal_max_bytes",
        "SPANVISOR_JOURNAL_MAX_BYTES",
        p_size,
        2 * 1024**3,
        "Journal size at which new spans are refused with 503/UNAVAILABLE (never accepted and dropped).",
        "bytes, e.g. 2GiB",
    ),
    Setting(
        "journal_sync",
        "SPANVISOR_JOURNAL_SYNC",
        p_choice("normal", "full"),
        "normal",
        "normal survives a killed process; full also a power cut (an fsync per group commit).",
        "normal or full",
    ),
    Setting(
        "shutdown_timeout_s",
        "SPANVISOR_SHUTDOWN_TIMEOUT",
        p_duration,
        20.0,
        "Deadline for a graceful stop (SIGTERM/SIGINT): finish requests, drain the sinks.",
        "a duration",
    ),
    *heap.SETTINGS,
)
