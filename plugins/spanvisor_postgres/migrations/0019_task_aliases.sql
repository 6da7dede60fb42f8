-- A provisional task renamed (issue 66): on the end-order paths a task may
-- show before its root span arrives, under the id derived from its run
-- ("<trace id>-<root span id>"); when the root names the task's own id
-- (agent.task.id), its events carry that id and the derived one as
-- TaskView.former_id. The sink then moves the task's rows (agent_tasks,
-- agent_checkpoints, task_artifacts, task_logs) to the new id, in the
-- transaction of the event that says so, and records the link here.
--
-- People's decisions are never moved: human_interventions rows are links of
-- a hash chain and refuse UPDATE (0013). A decision taken while the task
-- showed under its former id keeps that id, and readers show it as the
-- task's through this table.
--
-- Readers never take an alias on its word (a role that may INSERT here is
-- not trusted to say whose history a decision is): an alias counts only when
-- its former id is the derived id of the run of the task it names, i.e.
-- former_id = trace_id || '-' || root_span_id of that agent_tasks row, and
-- only the former id's decisions of that run (run_id) are shown as the
-- task's. Keyed by the former id: a derived id names one run, and a task is
-- renamed at most once, so a replayed or twice-written rename is one row.
CREATE TABLE IF NOT EXISTS task_aliases (
    former_id   text PRIMARY KEY,
    task_id     text NOT NULL,
    run_id      text NOT NULL,
    renamed_at  timestamptz NOT NULL DEFAULT now()
);
-- A task's former id (spanvisor task, interventions), and pruning by task.
CREATE INDEX IF NOT EXISTS task_aliases_task ON task_aliases (task_id);
