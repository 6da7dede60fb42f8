"""Errors of the Grafana client; light, so the sink imports them eagerly."""

from __future__ import annotations

FIXES: dict[int, str] = {
    400: "Grafana rejected the annotation as malformed; this is a spanvisor bug, please report it",
    401: "the token was refused: create a Grafana service account token and set SPANVISOR_GRAFANA_TOKEN",
    403: "the service account lacks permission: give it annotations:write and annotations:read "
    "(e.g. the Editor role), and access to SPANVISOR_GRAFANA_DASHBOARD_UID if set",
    404: "nothing answers at /api/annotations: check SPANVISOR_GRAFANA_URL (include any sub-path, "
    "e.g. https://example.com/grafana)",
    413: "a proxy in front of Grafana refused the body size: lower SPANVISOR_GRAFANA_MAX_TEXT",
}


class GrafanaError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PermanentError(GrafanaError):
    """A 4xx other than 429: resending the same request cannot succeed."""

    @property
    def fix(self) -> str:
        return FIXES.get(self.status or 0, "see docs/reference/observability.md#annotation-sink-setup")


class TransientError(GrafanaError):
    """429, 5xx, timeouts and connection errors, after the retry budget."""
