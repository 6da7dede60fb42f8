-- Serve's signatures of the decision rows it wrote (plugins/spanvisor_postgres/signing.py).
--
-- One row per link of the decision log (human_interventions.chain_seq):
-- the Ed25519 signature, by the key named, of the row's content and its
-- place in the chain. The database never holds the private key, so a role
-- that may write this table can remove or garble a signature (the row then
-- shows as unsigned) but cannot make one: `spanvisor audit verify` (and
-- `--offline` over an export) reports every row after the first signed one
-- that no signature covers.

CREATE TABLE IF NOT EXISTS decision_signatures (
    chain_seq       bigint PRIMARY KEY,
    intervention_id text NOT NULL,
    key_id          text NOT NULL,
    signature       text NOT NULL,
    signed_at       timestamptz NOT NULL DEFAULT now()
);
