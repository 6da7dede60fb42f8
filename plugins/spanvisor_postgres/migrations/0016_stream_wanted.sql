-- Until when the event stream is read (docs/events.md): a client of any
-- replica sets it to its connection time plus SPANVISOR_STREAM_RETENTION,
-- and renews it while it stays. Replicas write their events into
-- stream_events only until then: before any client, or a retention after the
-- last one (when every position it held is pruned), nobody reads them.
-- NULL: never read.
ALTER TABLE stream_meta ADD COLUMN wanted_until timestamptz;
