"""Zero-code live progress: ``SPANVISOR_LIVE=1 opentelemetry-instrument ...``.

``OTEL_TRACES_EXPORTER=spanvisor`` sees spans only when they end. The SDK has
no environment variable for extra span processors, but
``opentelemetry-instrument`` calls every ``opentelemetry_pre_instrument``
entry point after the TracerProvider is configured; ours adds the processor
to it when ``SPANVISOR_LIVE`` is set and does nothing otherwise.

Within one process the exporter and the processor built without arguments
share one pipeline (``attach.default_pipeline``), so running both never doubles an
event: the tracker ignores a span end it has already seen.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from spanvisor.config import p_bool

log = logging.getLogger("spanvisor")


def install_live_processor(*_: Any, **__: Any) -> None:
    try:
        if not p_bool(os.environ.get("SPANVISOR_LIVE", "")):
            return
    except ValueError:
        log.error("SPANVISOR_LIVE=%r is invalid; accepted: 1/0, true/false", os.environ.get("SPANVISOR_LIVE"))
        return
    try:
        from opentelemetry import trace

        from spanvisor.otel.processor import SpanvisorSpanProcessor

        provider = trace.get_tracer_provider()
        add = getattr(provider, "add_span_processor", None)
        if add is None:
            log.error(
                "SPANVISOR_LIVE=1 but the global TracerProvider is %s, not the SDK's; no live progress",
                type(provider).__name__,
            )
            return
        add(SpanvisorSpanProcessor())
    except Exception:
        log.exception("SPANVISOR_LIVE=1: could not install the spanvisor processor")


class SpanvisorConfigurator(_OTelSDKConfigurator):
    """Sets the SDK up from the ``OTEL_*`` variables, as opentelemetry-distro's
    configurator does, so ``opentelemetry-instrument`` works with
    ``OTEL_TRACES_EXPORTER=spanvisor`` even where the distro is not installed.
    (The SDK documents this class as the one distros subclass.) When both are
    installed, whichever loads first configures the SDK; they do the same.
    """
