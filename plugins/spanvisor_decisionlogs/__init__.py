"""spanvisor's decision-log sink: every decision people make (applied or
refused) as an OpenTelemetry log event over OTLP/HTTP, for a Collector or a
SIEM (docs/reference/decision-logs.md).

Kept light on purpose: ``Config.load()`` imports every sink class to collect
its settings, so the OpenTelemetry SDK's logs and exporter modules are only
imported when the sink starts (``spanvisor_decisionlogs.otlp``).
"""

from spanvisor_decisionlogs.record import DecisionRecord, decision_record
from spanvisor_decisionlogs.sink import DecisionLogSink

__all__ = ["DecisionLogSink", "DecisionRecord", "decision_record"]
