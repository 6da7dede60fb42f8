-- A log of people's decisions that nobody can rewrite unnoticed.
--
-- Every human_interventions row (applied or refused) is a link of one
-- chain: chain_seq numbers the links, prev_hash is the link before's
-- row_hash, and row_hash is the SHA-256 of prev_hash and the row's content
-- (spanvisor_intervention_content). A trigger makes each link when the row
-- is inserted, under a transaction lock, so replicas writing at once still
-- make one chain; a replayed decision (its id already written) takes no
-- link. A deleted row leaves its link behind in human_interventions_removed
-- (how: 'pruned' when `spanvisor prune` removed it, else 'deleted'), so the
-- chain stays checkable and a deletion shows as one. Rows are never updated:
-- an UPDATE is refused. `spanvisor audit verify` recomputes the chain and
-- names the first row changed, removed unrecorded or out of order.
--
-- Rows written before this migration are chained now, in the order they
-- were decided (at, then id).

ALTER TABLE human_interventions ADD COLUMN IF NOT EXISTS chain_seq bigint;
ALTER TABLE human_interventions ADD COLUMN IF NOT EXISTS prev_hash text;
ALTER TABLE human_interventions ADD COLUMN IF NOT EXISTS row_hash text;
CREATE UNIQUE INDEX IF NOT EXISTS human_interventions_chain ON human_interventions (chain_seq);

CREATE TABLE IF NOT EXISTS human_interventions_removed (
    chain_seq       bigint PRIMARY KEY,
    row_hash        text NOT NULL,
    intervention_id text NOT NULL,
    removed_at      timestamptz NOT NULL DEFAULT now(),
    how             text NOT NULL
);

-- What a link covers: every column a decision row is written with. The time
-- as microseconds since the epoch (a timestamptz's text depends on the
-- session's time zone); jsonb's text is canonical (keys sorted, one spacing).
CREATE OR REPLACE FUNCTION spanvisor_intervention_content(h human_interventions) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'intervention_id', h.intervention_id, 'task_id', h.task_id,
        'at_us', floor(extract(epoch FROM h.at) * 1000000)::bigint,
        'actor', h.actor, 'action', h.action, 'comment', h.comment, 'attributes', h.attributes,
        'outcome', h.outcome, 'reason', h.reason, 'approval_id', h.approval_id, 'source', h.source,
        'actor_name', h.actor_name, 'agent_id', h.agent_id, 'time_ns', h.time_ns, 'known', h.known,
        'notes', h.notes, 'run_id', h.run_id, 'question', h.question,
        'question_digest', h.question_digest, 'refusal', h.refusal
    )::text
$$;

CREATE OR REPLACE FUNCTION spanvisor_intervention_hash(prev text, h human_interventions) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(prev || spanvisor_intervention_content(h), 'UTF8')), 'hex')
$$;

-- The chain's start: the link before the first.
CREATE OR REPLACE FUNCTION spanvisor_intervention_genesis() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT repeat('0', 64) $$;

-- Chain the rows already written, oldest first.
DO $$
DECLARE
    r human_interventions;
    n bigint := 0;
    prev text := spanvisor_intervention_genesis();
BEGIN
    FOR r IN SELECT * FROM human_interventions WHERE chain_seq IS NULL ORDER BY at, intervention_id LOOP
        n := n + 1;
        r.chain_seq := n;
        r.prev_hash := prev;
        r.row_hash := spanvisor_intervention_hash(prev, r);
        UPDATE human_interventions
           SET chain_seq = r.chain_seq, prev_hash = r.prev_hash, row_hash = r.row_hash
         WHERE intervention_id = r.intervention_id;
        prev := r.row_hash;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION spanvisor_intervention_link() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    -- One link at a time, whichever replica writes (held to the commit).
    PERFORM pg_advisory_xact_lock(6005067753915107377);  -- 0x5356494E54434831, "SVINTCH1"
    IF EXISTS (SELECT 1 FROM human_interventions WHERE intervention_id = NEW.intervention_id) THEN
        RETURN NEW;  -- a replay: ON CONFLICT DO NOTHING drops it; it takes no link
    END IF;
    SELECT s, h INTO head_seq, head_hash FROM (
        (SELECT chain_seq AS s, row_hash AS h FROM human_interventions
          WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1)
        UNION ALL
        (SELECT chain_seq, row_hash FROM human_interventions_removed ORDER BY chain_seq DESC LIMIT 1)
    ) head ORDER BY s DESC LIMIT 1;
    NEW.chain_seq := COALESCE(head_seq, 0) + 1;
    NEW.prev_hash := COALESCE(head_hash, spanvisor_intervention_genesis());
    NEW.row_hash := spanvisor_intervention_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION spanvisor_intervention_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.chain_seq IS NOT NULL THEN
        INSERT INTO human_interventions_removed (chain_seq, row_hash, intervention_id, how)
        VALUES (OLD.chain_seq, OLD.row_hash, OLD.intervention_id,
                COALESCE(NULLIF(current_setting('spanvisor.removing', true), ''), 'deleted'))
        ON CONFLICT (chain_seq) DO NOTHING;
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION spanvisor_intervention_unchanged() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'human_interventions rows are never changed (the decision log is a hash chain: spanvisor audit verify)';
END $$;

DROP TRIGGER IF EXISTS human_interventions_link ON human_interventions;
CREATE TRIGGER human_interventions_link BEFORE INSERT ON human_interventions
    FOR EACH ROW EXECUTE FUNCTION spanvisor_intervention_link();
DROP TRIGGER IF EXISTS human_interventions_removed ON human_interventions;
CREATE TRIGGER human_interventions_removed BEFORE DELETE ON human_interventions
    FOR EACH ROW EXECUTE FUNCTION spanvisor_intervention_removed();
DROP TRIGGER IF EXISTS human_interventions_unchanged ON human_interventions;
CREATE TRIGGER human_interventions_unchanged BEFORE UPDATE ON human_interventions
    FOR EACH ROW EXECUTE FUNCTION spanvisor_intervention_unchanged();
