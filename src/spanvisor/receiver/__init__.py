"""The OTLP receiver behind ``spanvisor serve``.

Modules: :mod:`.decode` (OTLP protobuf to :class:`spanvisor.spans.data.SpanData`,
with a fast path for spans no convention knows), :mod:`.otlp_json` (OTLP/JSON
with hex ids), :mod:`.journal` (the durable span journal written before any
2xx), :mod:`.http` and :mod:`.grpc_service` (the two transports),
:mod:`.admin` (metrics and health) and :mod:`.server` (wires them together).
Nothing here is imported by the core, so the in-process path never pays for
aiohttp or grpc.
"""

import os

# serve's children (the embedded PostgreSQL's pg_ctl, run as another user
# under root, which rules out vfork) exec at once and never use gRPC; with
# gRPC's fork handlers on, each fork only printed "Other threads are
# currently calling into gRPC, skipping fork() handlers" into serve's log.
# gRPC's core reads this when it starts, so it is set before any submodule
# imports grpc; a value in the environment wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
