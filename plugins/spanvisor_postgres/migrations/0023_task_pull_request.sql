-- The pull request a task's work is in (agent.pull_request,
-- TaskView.pull_request), its web address as its root last said: shown
-- beside the branch, never decided by.
ALTER TABLE agent_tasks ADD COLUMN pull_request text;
