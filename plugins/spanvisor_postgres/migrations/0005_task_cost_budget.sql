-- Cost and budgets (issue 12): the task's estimated cost and unpriced calls,
-- its budgets, and each model call's own cost on its timeline row. Context
-- forecasts and budget warnings are timeline rows too (kind context_forecast
-- and budget_warning).
ALTER TABLE agent_tasks ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0;
ALTER TABLE agent_tasks ADD COLUMN unpriced_calls integer NOT NULL DEFAULT 0;
ALTER TABLE agent_tasks ADD COLUMN budget_usd double precision;
ALTER TABLE agent_tasks ADD COLUMN budget_tokens bigint;
ALTER TABLE agent_checkpoints ADD COLUMN cost_usd double precision;
