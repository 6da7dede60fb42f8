-- spanvisor audit trail, version 1.
-- Every row written from an event is keyed by the event's stable id, so a
-- replayed or retried batch never duplicates a row. No foreign keys: rows of
-- one task may arrive in any order (outbox replay, other replicas), and
-- pruning deletes children explicitly in bounded batches.

CREATE TABLE agent_tasks (
    task_id            text PRIMARY KEY,
    trace_id           text NOT NULL,
    root_span_id       text NOT NULL,
    agent_id           text NOT NULL,
    agent_name         text,
    task_name          text,
    repo               text,
    status             text NOT NULL,
    progress           double precision,
    step               text,
    steps              jsonb NOT NULL DEFAULT '[]',
    message            text,
    model              text,
    context_tokens     bigint,
    context_limit      bigint,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    artifacts          jsonb NOT NULL DEFAULT '[]',
    started_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    -- The exact ns of the state in this row: the forward-only upsert compares it.
    updated_ns         bigint NOT NULL,
    ended_at           timestamptz,
    duration_s         double precision,
    error_type         text,
    error_message      text,
    error_stacktrace   text,
    last_checkpoint_at timestamptz,
    last_event_id      text NOT NULL,
    notes              jsonb NOT NULL DEFAULT '[]'
);
-- Recent tasks by agent, by status (spanvisor tasks, dashboards).
CREATE INDEX agent_tasks_agent_started ON agent_tasks (agent_id, started_at DESC);
CREATE INDEX agent_tasks_status_started ON agent_tasks (status, started_at DESC);
CREATE INDEX agent_tasks_started ON agent_tasks (started_at DESC);
-- Running tasks with no checkpoint since T (stall checks): open rows only.
CREATE INDEX agent_tasks_open_last_checkpoint ON agent_tasks (last_checkpoint_at)
    WHERE ended_at IS NULL;

-- The timeline: checkpoints and context warnings (kind says which).
CREATE TABLE agent_checkpoints (
    event_id        text PRIMARY KEY,
    task_id         text NOT NULL,
    agent_id        text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('checkpoint', 'context_warning')),
    at              timestamptz NOT NULL,
    time_ns         bigint NOT NULL,
    status          text NOT NULL,
    progress        double precision,
    step            text,
    message         text,
    source          text,
    context_tokens  bigint,
    context_limit   bigint,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    level           text,
    threshold       double precision,
    ratio           double precision,
    -- Fields that changed with this checkpoint, e.g. ["progress", "step"].
    changed         jsonb NOT NULL DEFAULT '[]',
    attributes      jsonb NOT NULL DEFAULT '{}',
    notes           jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX agent_checkpoints_task_time ON agent_checkpoints (task_id, time_ns);
CREATE INDEX agent_checkpoints_at ON agent_checkpoints (at);

CREATE TABLE task_artifacts (
    event_id   text PRIMARY KEY,
    task_id    text NOT NULL,
    agent_id   text NOT NULL,
    at         timestamptz NOT NULL,
    time_ns    bigint NOT NULL,
    name       text NOT NULL,
    uri        text,
    kind       text,
    notes      jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX task_artifacts_task_time ON task_artifacts (task_id, time_ns);

-- Filled by Slack interactivity (approvals, cancels) and future tools.
CREATE TABLE human_interventions (
    intervention_id text PRIMARY KEY,
    task_id         text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text,
    action          text NOT NULL,
    comment         text,
    attributes      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX human_interventions_task_at ON human_interventions (task_id, at);

-- The shared state store: per-task keys other sinks claim (Slack parent
-- message, Grafana annotation id). A claim is a lease until value is set.
CREATE TABLE delivery_state (
    namespace      text NOT NULL,
    key            text NOT NULL,
    owner          text NOT NULL,
    lease_expires  timestamptz,
    value          jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
);
-- Pruning removes the keys of deleted tasks across namespaces.
CREATE INDEX delivery_state_key ON delivery_state (key);

-- Rows PostgreSQL refused for good (a data error), with the reason; they
-- never block the rest of their batch.
CREATE TABLE quarantine (
    id              bigserial PRIMARY KEY,
    event_id        text,
    task_id         text,
    reason          text NOT NULL,
    -- The event as JSON text with escapes, so any payload fits.
    payload         text NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX quarantine_event ON quarantine (event_id);
CREATE INDEX quarantine_task ON quarantine (task_id);
