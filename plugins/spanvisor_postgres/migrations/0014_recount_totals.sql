-- A finished task's totals, recounted from its audit rows.
--
-- Under spraying a replica's view counts only the model calls it received,
-- and the task row follows the root's replica's view. Every model call is a
-- timeline row (source 'model_call', its own tokens in attributes, its own
-- cost in cost_usd: NULL when unpriced), once whichever replica wrote it.
-- Work that ended after the task is not such a row (the late-span rule keeps
-- only what it added, as a 'corrected' row); that row names the id the call
-- has where it was read in time (attributes call_id) and its run
-- (attributes root_span_id), so a span read both ways counts once.
--
-- spanvisor_recount(ids) sums those rows for the finished tasks among ids
-- and raises the row's totals to the sums; never lowers them (a view can
-- count a row that was set aside). Rows of this run only: not before its
-- start (a task id reused by a later root is a new run). Costs are summed in
-- whole nano-dollars, rounded as the tracker rounds each call's price (float8
-- round: half to even, as Python's round), so the sum is the tracker's.
--
-- Only a task that more than one writer wrote (replicas, or agent processes
-- each with its own pipeline: SPANVISOR_REPLICA_ID) is recounted: a single
-- writer's view counts every call it wrote already. agent_tasks.writer is
-- the first writer's id ('' for rows from before this migration, taken by
-- the next writer); shared turns true when another writer upserts the row.
-- A function, so its plans are made once per connection and a batch costs
-- one index lookup per task.
ALTER TABLE agent_tasks ADD COLUMN IF NOT EXISTS writer text NOT NULL DEFAULT '';
ALTER TABLE agent_tasks ADD COLUMN IF NOT EXISTS shared boolean NOT NULL DEFAULT false;

CREATE OR REPLACE FUNCTION spanvisor_count(attrs jsonb, key text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    -- Attributes are sanitized JSON: a count that is not a number counts 0.
    SELECT CASE WHEN jsonb_typeof(attrs->key) = 'number' THEN (attrs->>key)::numeric::bigint ELSE 0 END
$$;

CREATE OR REPLACE FUNCTION spanvisor_recount(ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    finished text[];
BEGIN
    SELECT array_agg(task_id) INTO finished FROM agent_tasks WHERE task_id = ANY(ids) AND ended_at IS NOT NULL AND shared;
    IF finished IS NULL THEN
        RETURN;
    END IF;
    WITH runs AS (
        SELECT e.task_id, e.root_span_id, e.started_at FROM agent_tasks e WHERE e.task_id = ANY(finished)
    ), calls AS (
        SELECT c.task_id, spanvisor_count(c.attributes, 'input_tokens') AS i,
               spanvisor_count(c.attributes, 'output_tokens') AS o,
               COALESCE(round(c.cost_usd * 1e9::float8)::bigint, 0) AS n, c.cost_usd IS NULL AS u
        FROM agent_checkpoints c JOIN runs r ON c.task_id = r.task_id AND c.at >= r.started_at
        WHERE c.source = 'model_call'
        UNION ALL
        SELECT c.task_id, spanvisor_count(c.attributes, 'input_tokens'), spanvisor_count(c.attributes, 'output_tokens'),
               COALESCE(round((CASE WHEN jsonb_typeof(c.attributes->'cost_usd') = 'number'
                                    THEN (c.attributes->>'cost_usd')::float8 END) * 1e9::float8)::bigint, 0),
               spanvisor_count(c.attributes, 'unpriced_calls') > 0
        FROM agent_checkpoints c JOIN runs r
          ON c.task_id = r.task_id AND c.attributes->>'root_span_id' = r.root_span_id
        WHERE c.kind = 'corrected' AND c.attributes ? 'call_id'
          AND NOT EXISTS (SELECT 1 FROM agent_checkpoints m WHERE m.event_id = c.attributes->>'call_id')
    ), sums AS (
        SELECT task_id, sum(i) AS i, sum(o) AS o, sum(n)::float8 / 1e9::float8 AS c,
               count(*) FILTER (WHERE u) AS u
        FROM calls GROUP BY task_id
    )
    UPDATE agent_tasks t SET input_tokens = GREATEST(t.input_tokens, s.i),
        output_tokens = GREATEST(t.output_tokens, s.o), cost_usd = GREATEST(t.cost_usd, s.c),
        unpriced_calls = GREATEST(t.unpriced_calls, s.u)
    FROM sums s WHERE t.task_id = s.task_id
      AND (s.i > t.input_tokens OR s.o > t.output_tokens OR s.c > t.cost_usd OR s.u > t.unpriced_calls);
END
$$;
