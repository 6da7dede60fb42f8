"""3. Events to sinks: the ``pipeline`` owns a thread and loop, takes spans
from its ``inbox`` into the tracker and hands the events to one
``sinkworker`` per sink (batching, retries, ``taskhold`` and ``deadletter``
for poison events); ``assemble`` builds sinks and the state store, ``outbox``
keeps a sink's events on disk. Only moving events lives here; the pipeline
calls on :mod:`spanvisor.control` (people's decisions), :mod:`spanvisor.budgets`
(spend shared across replicas) and :mod:`spanvisor.logtails`. Next: the
sinks, in ``plugins/``.

Spans come in from :mod:`spanvisor.otel` (in-process) or
:mod:`spanvisor.receiver` (OTLP, ``spanvisor serve``)."""
