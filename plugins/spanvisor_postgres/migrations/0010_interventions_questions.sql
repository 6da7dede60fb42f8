-- Every decision says what it decided.
--
-- human_interventions (0001, 0008) gets the run it applied to (a task id
-- reused by a later root is another run), the question the agent asked and
-- its digest (what the decider was shown; a decision is applied only when
-- they match), and for a refused decision its code: unknown_task,
-- unknown_request, already_decided, expired, finished, not_failed,
-- still_running, not_approver, digest_mismatch, full (the reason column
-- says it in words). Who asked is agent_id (0008); who decided, actor and
-- actor_name; the channel, source.
ALTER TABLE human_interventions ADD COLUMN run_id text;
ALTER TABLE human_interventions ADD COLUMN question text;
ALTER TABLE human_interventions ADD COLUMN question_digest text;
ALTER TABLE human_interventions ADD COLUMN refusal text;
