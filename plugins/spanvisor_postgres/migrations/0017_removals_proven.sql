-- Removals that cannot be forged (migration 0013 made them checkable).
--
-- Until now a removal record said 'pruned' whenever the deleting session
-- had set spanvisor.removing to 'pruned', and removal records could be
-- updated: anyone who may DELETE and UPDATE could remove a decision and
-- call it retention. Now:
--
-- * `spanvisor prune` writes its own record first, in the same transaction
--   (decision_prunes: when, how old a decision must be, a hash chain of its
--   own). A removal is 'pruned' only when a prune record of the deleting
--   transaction exists and the row is older than that prune's cutoff; a
--   session setting no longer counts.
-- * A removal record keeps when its row was decided, the prune that made
--   it and the deleting transaction. Removal records are written only by
--   the removal trigger and never updated or deleted; prune records are
--   never updated or deleted; none of the three tables can be truncated.
-- * `spanvisor audit verify` checks that every 'pruned' removal has its
--   prune, that the prune chain holds, and that no prune removed decisions
--   younger than SPANVISOR_AUDIT_PRUNE_FLOOR (a prune record anyone may
--   write says how old is old enough; the floor is the operator's).
--
-- Removal records made before this migration keep their word (no
-- transaction recorded: verify counts them apart).

CREATE TABLE IF NOT EXISTS decision_prunes (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    older_than_s double precision NOT NULL CHECK (older_than_s >= 0),
    cutoff       timestamptz NOT NULL,
    txid         bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_prunes_txid ON decision_prunes (txid);

ALTER TABLE human_interventions_removed ADD COLUMN IF NOT EXISTS decided_at timestamptz;
ALTER TABLE human_interventions_removed ADD COLUMN IF NOT EXISTS prune_seq bigint;
ALTER TABLE human_interventions_removed ADD COLUMN IF NOT EXISTS txid bigint;
CREATE INDEX IF NOT EXISTS human_interventions_removed_id ON human_interventions_removed (intervention_id);

CREATE OR REPLACE FUNCTION spanvisor_prune_hash(prev text, p decision_prunes) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(prev || jsonb_build_object(
        'seq', p.seq, 'at_us', floor(extract(epoch FROM p.at) * 1000000)::bigint,
        'older_than_s', p.older_than_s, 'cutoff_us', floor(extract(epoch FROM p.cutoff) * 1000000)::bigint,
        'txid', p.txid
    )::text, 'UTF8')), 'hex')
$$;

-- What a prune record says is the database's, not the caller's: only how
-- old a decision must be is given.
CREATE OR REPLACE FUNCTION spanvisor_prune_made() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head decision_prunes;
BEGIN
    PERFORM pg_advisory_xact_lock(6005067753915107378);  -- one prune link at a time
    SELECT * INTO head FROM decision_prunes ORDER BY seq DESC LIMIT 1;
    NEW.seq := COALESCE(head.seq, 0) + 1;
    NEW.at := clock_timestamp();
    NEW.cutoff := NEW.at - make_interval(secs => NEW.older_than_s);
    NEW.txid := txid_current();
    NEW.prev_hash := COALESCE(head.row_hash, spanvisor_intervention_genesis());
    NEW.row_hash := spanvisor_prune_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION spanvisor_intervention_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p decision_prunes;
BEGIN
    IF OLD.chain_seq IS NOT NULL THEN
        SELECT * INTO p FROM decision_prunes WHERE txid = txid_current() ORDER BY seq DESC LIMIT 1;
        INSERT INTO human_interventions_removed
            (chain_seq, row_hash, intervention_id, how, removed_at, decided_at, prune_seq, txid)
        VALUES (OLD.chain_seq, OLD.row_hash, OLD.intervention_id,
                CASE WHEN p.seq IS NOT NULL AND OLD.at < p.cutoff THEN 'pruned' ELSE 'deleted' END,
                clock_timestamp(), OLD.at, p.seq, txid_current())
        ON CONFLICT (chain_seq) DO NOTHING;
    END IF;
    RETURN OLD;
END $$;

-- Removal records come from the trigger above (a trigger's insert, depth
-- 2) and stay as written.
CREATE OR REPLACE FUNCTION spanvisor_removal_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the decision log''s removal and prune records are written by its triggers and never changed (spanvisor audit verify)';
END $$;

CREATE OR REPLACE FUNCTION spanvisor_never_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the decision log is never truncated: spanvisor prune removes what retention allows';
END $$;

DROP TRIGGER IF EXISTS decision_prunes_made ON decision_prunes;
CREATE TRIGGER decision_prunes_made BEFORE INSERT ON decision_prunes
    FOR EACH ROW EXECUTE FUNCTION spanvisor_prune_made();
DROP TRIGGER IF EXISTS decision_prunes_kept ON decision_prunes;
CREATE TRIGGER decision_prunes_kept BEFORE UPDATE OR DELETE ON decision_prunes
    FOR EACH ROW EXECUTE FUNCTION spanvisor_removal_kept();
DROP TRIGGER IF EXISTS human_interventions_removed_kept ON human_interventions_removed;
CREATE TRIGGER human_interventions_removed_kept BEFORE INSERT OR UPDATE OR DELETE ON human_interventions_removed
    FOR EACH ROW EXECUTE FUNCTION spanvisor_removal_kept();
DROP TRIGGER IF EXISTS human_interventions_never_truncated ON human_interventions;
CREATE TRIGGER human_interventions_never_truncated BEFORE TRUNCATE ON human_interventions
    FOR EACH STATEMENT EXECUTE FUNCTION spanvisor_never_truncated();
DROP TRIGGER IF EXISTS human_interventions_removed_never_truncated ON human_interventions_removed;
CREATE TRIGGER human_interventions_removed_never_truncated BEFORE TRUNCATE ON human_interventions_removed
    FOR EACH STATEMENT EXECUTE FUNCTION spanvisor_never_truncated();
DROP TRIGGER IF EXISTS decision_prunes_never_truncated ON decision_prunes;
CREATE TRIGGER decision_prunes_never_truncated BEFORE TRUNCATE ON decision_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION spanvisor_never_truncated();
