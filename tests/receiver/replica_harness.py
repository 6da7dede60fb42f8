"""In-process replicas: real Pipelines (receiver path) with the real PostgreSQL
and Slack sinks, sharing one PostgreSQL database and state store and one
fake Slack, as ``spanvisor serve`` replicas do. Also what a test reads back:
the Slack parents, the shared view in the state store, the audit rows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_proc import FakeSlackThread
from tests.waiting import wait_until

from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.sink import Sink
from spanvisor.spans.data import SpanData

FINAL = ("complete", "error", "cancelled")


def replica_env(db_url: str, slack_url: str, replica: str) -> dict[str, str]:
    return {
        "SPANVISOR_DATABASE_URL": db_url,
        "SPANVISOR_STATE_STORE": "postgres",
        "SPANVISOR_REPLICA_ID": replica,
        "SLACK_BOT_TOKEN": "xoxb-replicas",
        "SPANVISOR_SLACK_CHANNEL": "#agents",
        "SPANVISOR_SLACK_BASE_URL": slack_url,
        "SPANVISOR_SLACK_CHANNEL_INTERVAL": "10ms",
        "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
        "SPANVISOR_SLACK_REPLY_INTERVAL": "10ms",
        "SPANVISOR_ROOT_HOLD": "1s",
        "SPANVISOR_BATCH_DELAY": "20ms",
    }


def make_pipeline(tmp: Path, sinks: Sequence[Sink], **env: str) -> Pipeline:
    """A started receiver-path Pipeline with the plugins' settings."""
    config = Config.load(env={"SPANVISOR_DATA_DIR": str(tmp), **env})
    pipeline = Pipeline(config=config, sinks=list(sinks), path="receiver").start()
    assert pipeline.wait_ready(30), "the sinks did not start"
    return pipeline


@dataclass
class Cluster:
    """``n`` replicas on one database and one fake Slack."""

    db_url: str
    slack: FakeSlackThread
    pipelines: list[Pipeline] = field(default_factory=list)

    @classmethod
    def start(cls, tmp: Path, db_url: str, n: int, name: str) -> Cluster:
        from spanvisor_postgres import PostgresSink
        from spanvisor_slack import SlackSink

        slack = FakeSlackThread()
        cluster = cls(db_url, slack)
        for i in range(n):
            env = replica_env(db_url, slack.base_url, f"{name}-{i}")
            cluster.pipelines.append(make_pipeline(tmp / f"{name}-{i}", [PostgresSink(), SlackSink()], **env))
        return cluster

    def send(self, replica: int, spans: Sequence[SpanData]) -> None:
        assert self.pipelines[replica].submit_spans(list(spans))

    def flush(self, timeout: float = 30) -> None:
        for _ in range(2):  # a replica's flush may follow another's last write
            for p in self.pipelines:
                assert p.force_flush(timeout)

    def open_tasks(self) -> list[int]:
        return [p.tracker.open_tasks for p in self.pipelines]

    def close(self) -> None:
        for p in self.pipelines:
            p.shutdown(10)
        self.slack.close()

    # --- what it shows --------------------------------------------------------------

    def parents(self) -> dict[str, list[Any]]:
        """Slack parents by task id (from the metadata every parent carries)."""
        out: dict[str, list[Any]] = {}
        for m in self.slack.parents():
            task = ((m.metadata or {}).get("event_payload") or {}).get("task_id")
            out.setdefault(str(task), []).append(m)
        return out

    def shared_views(self, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The Slack sink's shared view of each task, by task id (its key is
        ``<task_id>/<run_id>``: one parent per run; these tasks run once)."""
        rows = db(
            self.db_url,
            "SELECT key, value FROM delivery_state WHERE namespace = 'slack.view'"
            " AND split_part(key, '/', 1) = ANY($1)",
            list(tasks),
        )
        return {r["key"].split("/", 1)[0]: _json(r["value"]) for r in rows}

    def task_rows(self, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = db(
            self.db_url,
            "SELECT task_id, status, task_name, input_tokens, output_tokens, cost_usd, unpriced_calls"
            " FROM agent_tasks WHERE task_id = ANY($1)",
            list(tasks),
        )
        return {r["task_id"]: dict(r) for r in rows}

    def event_rows(self, tasks: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Checkpoint rows a span caused (its events, model calls) and artifact rows, per task."""
        out: dict[str, list[tuple[str, str]]] = {t: [] for t in tasks}
        for r in db(
            self.db_url,
            "SELECT task_id, event_id, source FROM agent_checkpoints WHERE task_id = ANY($1)"
            " AND source IN ('event', 'model_call')"
            " UNION ALL SELECT task_id, event_id, 'artifact' FROM task_artifacts WHERE task_id = ANY($1)",
            list(tasks),
        ):
            out[r["task_id"]].append((r["event_id"], r["source"]))
        return {t: sorted(v) for t, v in out.items()}

    def wait_final(self, tasks: Sequence[str], timeout: float = 30) -> None:
        # A failed wait says where each task's final view stopped
        # (:meth:`unfinished`): that is how a replica recording another's
        # parent as showing its own view was found (2026-11-28).
        def done() -> bool:
            parents = self.parents()
            return all(len(parents.get(t, ())) == 1 and shown_status(parents[t][0]) in FINAL for t in tasks)

        try:
            wait_until(done, timeout, f"a final Slack parent for each of {len(tasks)} tasks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; not final: {self.unfinished(tasks)}") from None

    def unfinished(self, tasks: Sequence[str]) -> dict[str, Any]:
        """What each task not shown final has: its parents' statuses and the
        shared view's record (owner, version, final, when written, what is
        shown), so a wait that failed says where the final view stopped."""
        parents, views = self.parents(), self.shared_views(tasks)
        out: dict[str, Any] = {}
        for t in tasks:
            shown = [shown_status(m) for m in parents.get(t, ())]
            if len(shown) == 1 and shown[0] in FINAL:
                continue
            rec = views.get(t) or {}
            view = rec.get("view") or {}
            out[t] = {
                "parents": shown,
                "record": {k: rec.get(k) for k in ("owner", "version", "final", "seq", "written", "shown")},
                "stored_status": view.get("status"),
                "replicas": self._local(t),
            }
        return out

    def _local(self, task: str) -> list[dict[str, Any]]:
        """Each replica's own record of ``task`` in its Slack sink (read from
        this thread while the sinks run: a diagnosis, not an assertion)."""
        out = []
        for i, p in enumerate(self.pipelines):
            for sink in p.sinks:
                for st in list(getattr(sink, "_tasks", {}).values()):
                    if st.task_id == task:
                        keys = ("version", "sent_version", "view_final", "dead", "settled", "repair", "busy", "ref")
                        out.append({"replica": i, "status": st.view.status, **{k: getattr(st, k, None) for k in keys}})
        return out


def shown_status(message: Any) -> str | None:
    """The status a parent's text shows ("rivet · complete — Diagnose …")."""
    text = message.text or ""
    head = text.split(" — ", 1)[0]
    return head.rsplit(" · ", 1)[-1] if " · " in head else None


def _json(raw: Any) -> dict[str, Any]:
    import json

    value = json.loads(raw) if isinstance(raw, str) else raw
    assert isinstance(value, dict)
    return value


def db(url: str, sql: str, *args: Any) -> list[Any]:
    import asyncpg

    async def q() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(q())
