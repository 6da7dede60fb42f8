"""Where the CLI's decision commands reach the control API, what points
there, and the one line said when nothing answers there.

``spanvisor approvals``, ``approve``/``reject``/``cancel``/…, ``grants``
and ``check`` all read the URL the same way: ``--url``, then
``SPANVISOR_CONTROL_URL`` (environment or the TOML file), then the default
(``serve``'s OTLP/HTTP port on this machine).
"""

from __future__ import annotations

import argparse
import os

from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL


def control_target(args: argparse.Namespace | None, config: Config) -> tuple[str, str]:
    """(URL, what points at it): ``--url``, ``SPANVISOR_CONTROL_URL`` or the default."""
    given = getattr(args, "url", None) if args is not None else None
    if given:
        return str(given), "--url"
    if config.get("control_url"):
        source = config.sources.get("control_url", f"env {ENV_URL}")
        return str(config["control_url"]), f"{ENV_URL} ({source})" if "file" in source else ENV_URL
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL], ENV_URL
    return DEFAULT_URL, f"the default: no --url, no {ENV_URL}"


def unreachable_line(url: str, source: str, error: str | None) -> str:
    """One line: what did not answer, what pointed there, and what to do."""
    why = (error or "no answer").strip()
    return (
        f"spanvisor: no answer from the control API at {url} ({why}; from {source}). "
        f"Is `spanvisor serve` (or an agent with SPANVISOR_CONTROL_LISTEN) running there? "
        f"If it listens elsewhere, pass --url or set {ENV_URL}."
    )


__all__ = ["control_target", "unreachable_line"]
