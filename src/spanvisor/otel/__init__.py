"""Where spans come from in-process: the OpenTelemetry SDK entry points
(``processor``, ``exporter``, ``autoconfig``; ``attach`` is what the first two
share). They put spans into :mod:`spanvisor.pipeline`."""
