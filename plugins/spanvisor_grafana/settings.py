"""The Grafana sink's settings, merged into spanvisor's config table."""

from __future__ import annotations

from spanvisor.config import Config, Setting, p_duration, p_int, p_list, p_opt_str

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "grafana_url",
        "SPANVISOR_GRAFANA_URL",
        p_opt_str,
        None,
        "Grafana base URL for task annotations, sub-path included (https://example.com/grafana). "
        "With a token, enables the grafana sink.",
        "a URL",
    ),
    Setting(
        "grafana_token",
        "SPANVISOR_GRAFANA_TOKEN",
        p_opt_str,
        None,
        "Grafana service account token with annotations:write (and annotations:read), sent as Bearer.",
        "a token (glsa_...)",
        secret=True,
    ),
    Setting(
        "grafana_dashboard_uid",
        "SPANVISOR_GRAFANA_DASHBOARD_UID",
        p_opt_str,
        None,
        "Attach annotations to this dashboard. Default: organization annotations, which "
        "spanvisor's dashboards show through their 'spanvisor' tag query.",
        "a dashboard uid",
    ),
    Setting(
        "grafana_tags",
        "SPANVISOR_GRAFANA_TAGS",
        p_list,
        (),
        "Extra tags on every annotation, e.g. env:prod.",
        "comma-separated tags",
    ),
    Setting(
        "grafana_timeout_s",
        "SPANVISOR_GRAFANA_TIMEOUT",
        p_duration,
        10.0,
        "Timeout of one Grafana HTTP request.",
        "a duration, e.g. 10s",
    ),
    Setting(
        "grafana_retry_budget_s",
        "SPANVISOR_GRAFANA_RETRY_BUDGET",
        p_duration,
        30.0,
        "How long one export retries 429/5xx/connection errors before handing the batch "
        "back to the pipeline for a later retry.",
        "a duration",
    ),
    Setting(
        "grafana_lease_s",
        "SPANVISOR_GRAFANA_LEASE",
        p_duration,
        60.0,
        "Lease on the per-task claim taken before creating an annotation; a replica that "
        "dies mid-create frees it after this long.",
        "a duration",
    ),
    Setting(
        "grafana_max_text",
        "SPANVISOR_GRAFANA_MAX_TEXT",
        p_int,
        2000,
        "Longest annotation text in characters; longer agent text is cut with '…'.",
        "a positive integer",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with Grafana's address
    and a token. Here, beside the settings, so that choosing the sinks
    imports none that does not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return bool(config.get("grafana_url") and config.get("grafana_token"))
