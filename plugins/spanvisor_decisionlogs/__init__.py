"""spanvisor's decision-log sink: every decision people make (applied or
refused) as an OpenTelemetry log event over OTLP/HTTP, for a Collector or a
SIEM (docs/reference/decision-logs.md).

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; the
OpenTelemetry SDK's logs and exporter modules are imported only when the
sink starts (``spanvisor_decisionlogs.otlp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .record import DecisionRecord, decision_record
    from .sink import DecisionLogSink

__all__ = ["DecisionLogSink", "DecisionRecord", "decision_record"]
__getattr__ = exports(__name__, {"DecisionLogSink": ".sink", "DecisionRecord": ".record", "decision_record": ".record"})
