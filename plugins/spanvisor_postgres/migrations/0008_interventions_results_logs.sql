-- People's decisions (issue 11), task results and log tails (issue 15).
--
-- human_interventions (0001) gets what a HumanIntervention carries: whether
-- it was applied or denied and why, the approval it answers, where it came
-- from (slack, cli, api) and the person's display name next to `actor` (their
-- id). `known` says whether the task was open in the process that recorded
-- it; when it was not, the task row was left alone. Rows stay keyed by
-- intervention_id, so a replayed or twice-delivered click is one row.
ALTER TABLE human_interventions ADD COLUMN outcome text NOT NULL DEFAULT 'applied';
ALTER TABLE human_interventions ADD COLUMN reason text;
ALTER TABLE human_interventions ADD COLUMN approval_id text;
ALTER TABLE human_interventions ADD COLUMN source text;
ALTER TABLE human_interventions ADD COLUMN actor_name text;
ALTER TABLE human_interventions ADD COLUMN agent_id text;
ALTER TABLE human_interventions ADD COLUMN time_ns bigint;
ALTER TABLE human_interventions ADD COLUMN known boolean NOT NULL DEFAULT true;
ALTER TABLE human_interventions ADD COLUMN notes jsonb NOT NULL DEFAULT '[]';
-- `spanvisor interventions --since 1h` across tasks.
CREATE INDEX human_interventions_at ON human_interventions (at);

-- agent.result.<name> of the task: [{"name", "value", "unit"}], following the
-- newest view like every other state column.
ALTER TABLE agent_tasks ADD COLUMN results jsonb NOT NULL DEFAULT '[]';

-- The task's last log records (TaskFinished.log_tail), oldest first. `pos` is
-- the record's place in the tail: a replayed finish (or the same finish from
-- two replicas) writes the same keys, and a task holds at most as many rows
-- as the writer keeps of a tail.
CREATE TABLE task_logs (
    task_id    text NOT NULL,
    pos        integer NOT NULL,
    event_id   text NOT NULL,
    agent_id   text NOT NULL,
    at         timestamptz NOT NULL,
    time_ns    bigint NOT NULL,
    level      text NOT NULL,
    logger     text,
    message    text NOT NULL,
    notes      jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (task_id, pos)
);
