-- Serve's signatures of the decision rows it wrote (plugins/spanvisor_postgres/signing.py).
--
-- A row per signature of a link of the decision log (human_interventions.chain_seq):
-- the Ed25519 signature, by the key named, of the row's content and its
-- place in the chain. The database never holds the private key, so a role
-- that may write this table can add a signature that does not hold (a link
-- holds when one of its signatures does: a bogus one written ahead of
-- serve's blocks nothing) but cannot make one that does. Signatures are
-- never updated, deleted or truncated (triggers refuse, the owner
-- included), so a role with SELECT, INSERT, UPDATE, DELETE cannot take a
-- row's signature away and pass it off as written before signing began.
-- `spanvisor audit verify` (and `--offline` over an export) reports every
-- row after the first signed one that no signature covers.

CREATE TABLE IF NOT EXISTS decision_signatures (
    chain_seq       bigint NOT NULL,
    intervention_id text NOT NULL,
    key_id          text NOT NULL,
    signature       text NOT NULL,
    signed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_seq, key_id, signature)
);

CREATE OR REPLACE FUNCTION spanvisor_signature_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decision signatures are never changed or removed (spanvisor audit verify)';
END $$;

DROP TRIGGER IF EXISTS decision_signatures_kept ON decision_signatures;
CREATE TRIGGER decision_signatures_kept BEFORE UPDATE OR DELETE ON decision_signatures
    FOR EACH ROW EXECUTE FUNCTION spanvisor_signature_kept();
DROP TRIGGER IF EXISTS decision_signatures_never_truncated ON decision_signatures;
CREATE TRIGGER decision_signatures_never_truncated BEFORE TRUNCATE ON decision_signatures
    FOR EACH STATEMENT EXECUTE FUNCTION spanvisor_signature_kept();
