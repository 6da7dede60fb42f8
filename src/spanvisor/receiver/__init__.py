"""The OTLP receiver behind ``spanvisor serve``.

Modules: :mod:`.decode` (OTLP protobuf to :class:`spanvisor.spans.data.SpanData`,
with a fast path for spans no convention knows), :mod:`.otlp_json` (OTLP/JSON
with hex ids), :mod:`.journal` (the durable span journal written before any
2xx), :mod:`.http` and :mod:`.grpc_service` (the two transports),
:mod:`.admin` (metrics and health) and :mod:`.server` (wires them together).
Nothing here is imported by the core, so the in-process path never pays for
aiohttp or grpc.
"""
