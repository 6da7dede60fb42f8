"""The helper's live records leave the process named (``agent.record.id``),
so a record a Collector sends again is read once (issue 68: the
``load_balancing`` exporter resends whole batches while a replica is down;
a resent record with an id adds nothing to its task:
``tests/collector/test_gateway.py``'s replica restart).

The real OTel SDK, in a process of its own (it sets the global
LoggerProvider, as an agent's own setup does): the channel's OTLP log path
(``otel.live._log_sender``) emits through it to an in-memory exporter.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json
from opentelemetry import _logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import TracerProvider

from spanvisor.otel import live
from spanvisor.spans import conventions as cv
from spanvisor.spans.live import RECORD_ID

exported = InMemoryLogRecordExporter()
provider = LoggerProvider()
provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
_logs.set_logger_provider(provider)
send, owned = live._log_sender([], None)
root = TracerProvider().get_tracer("t").start_span("task")
batch = [
    (root, cv.LIVE_TASK_START, 1, {cv.TASK_ID: "job-1"}),
    (root, "agent.checkpoint", 2, {"agent.message": "step 1"}),
    (root, "agent.checkpoint", 3, {"agent.message": "step 1"}),
]
send(batch)
send(batch[1:])
root.end()
print(json.dumps({
    "owned": owned is not None,
    "ids": [dict(r.log_record.attributes or {}).get(RECORD_ID) for r in exported.get_finished_logs()],
}))
"""


def test_each_record_leaving_the_process_has_an_id_of_its_own() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["owned"] is False  # the agent's provider, not one of ours
    ids = got["ids"]
    assert all(isinstance(i, str) and i for i in ids), ids
    # Five records (the same words said twice are two records): five ids.
    assert len(set(ids)) == len(ids) == 5
    # One process, one random prefix; the count tells its records apart.
    assert len({i.rsplit(".", 1)[0] for i in ids}) == 1
