-- The event stream's shared feed (docs/events.md): every replica's events,
-- as the stream sends them, numbered by one sequence that is the stream's
-- position on every replica. Rows are written under an advisory lock, so
-- positions become visible in order and a reader that saw position N has
-- seen every position below it. stream_meta holds the stream's epoch (a new
-- database is a new position space) and how far old rows were pruned.
CREATE TABLE stream_events (
    pos          bigserial PRIMARY KEY,
    event_id     text NOT NULL UNIQUE,
    kind         text NOT NULL,
    task_id      text NOT NULL,
    agent_id     text,
    status       text,
    data         text NOT NULL,
    replica      text NOT NULL DEFAULT '',
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX stream_events_recorded_at ON stream_events (recorded_at);

CREATE TABLE stream_meta (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch           text NOT NULL,
    pruned_through  bigint NOT NULL DEFAULT 0
);
INSERT INTO stream_meta (epoch) VALUES ('p' || substr(md5(random()::text || clock_timestamp()::text), 1, 8));
