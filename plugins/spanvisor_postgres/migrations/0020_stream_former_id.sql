-- The event stream's task filter follows a renamed task (issue 66): a client
-- following ?task=<id> by the derived id a task showed under before its root
-- named its own keeps getting its events, on every replica. NULL for every
-- event of a task that was never renamed (and for rows written before).
ALTER TABLE stream_events ADD COLUMN IF NOT EXISTS former_id text;
