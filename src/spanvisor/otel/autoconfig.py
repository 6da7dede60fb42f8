"""Zero-code live progress: ``SPANVISOR_LIVE=1 opentelemetry-instrument ...``.

``OTEL_TRACES_EXPORTER=spanvisor`` sees spans only when they end. The SDK has
no environment variable for extra span processors, but
``opentelemetry-instrument`` calls every ``opentelemetry_pre_instrument``
entry point after the TracerProvider is configured; ours adds the processor
to it when ``SPANVISOR_LIVE`` is set. It also adds the log processor
(:mod:`spanvisor.otel.logs`) to the SDK's LoggerProvider, for each task's log
tail, when ``SPANVISOR_LIVE`` is set or ``OTEL_TRACES_EXPORTER`` names
``spanvisor``, unless ``OTEL_LOGS_EXPORTER`` does (the log exporter feeds the
tails then). Otherwise it does nothing.

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


def _names(var: str) -> set[str]:
    return {e.strip() for e in os.environ.get(var, "").split(",")}


def install_live_processor(*_: Any, **__: Any) -> None:
    try:
        if not p_bool(os.environ.get("SPANVISOR_LIVE", "")):
            if "spanvisor" in _names("OTEL_TRACES_EXPORTER") and "spanvisor" not in _names("OTEL_LOGS_EXPORTER"):
                # The exporter alone: log tails still come with it, into the
                # pipeline it shares (attach.default_pipeline).
                from spanvisor.otel.logs import install_log_processor

                install_log_processor()
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
        processor = SpanvisorSpanProcessor()
        add(processor)
    except Exception:
        log.exception("SPANVISOR_LIVE=1: could not install the spanvisor processor")
        return
    if "spanvisor" not in _names("OTEL_LOGS_EXPORTER"):
        # Log tails from the agent's OTel logs, at once rather than batched;
        # with OTEL_LOGS_EXPORTER=spanvisor the exporter feeds them already.
        from spanvisor.otel.logs import install_log_processor

        install_log_processor(processor)


class SpanvisorConfigurator(_OTelSDKConfigurator):
    """Sets the SDK up from the ``OTEL_*`` variables, as opentelemetry-distro's
    configurator does, so ``opentelemetry-instrument`` works with
    ``OTEL_TRACES_EXPORTER=spanvisor`` even where the distro is not installed.
    (The SDK documents this class as the one distros subclass.) When both are
    installed, whichever loads first configures the SDK; they do the same.
    """
