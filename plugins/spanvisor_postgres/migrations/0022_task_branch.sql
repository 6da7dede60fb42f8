-- The git branch a task's work is on (agent.branch, TaskView.branch), as its
-- root last said: shown beside the repository, never decided by.
ALTER TABLE agent_tasks ADD COLUMN branch text;
