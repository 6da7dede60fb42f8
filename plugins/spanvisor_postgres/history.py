"""Recent complete tasks per agent, from ``agent_tasks``: what the tracker's
outlier book (``spanvisor.budgets.outliers``) is seeded with at start, so a
restarted ``serve`` or a new replica judges "3.4x this agent's usual cost"
against the database's history rather than only the tasks it saw itself.

The core reaches it through the state store: a store with a
``recent_tasks(n, max_agents)`` method is a
:class:`spanvisor.budgets.outliers.TaskHistory`;
:class:`~spanvisor_postgres.statestore.PostgresStateStore` answers it with
:func:`recent_tasks` on its pool.
"""

from __future__ import annotations

from typing import Any

# The agents with the most recent complete tasks, then each one's last $1
# complete tasks, oldest first (agent_tasks_agent_started serves the scan).
RECENT_TASKS = """
WITH agents AS (
    SELECT agent_id FROM agent_tasks
    WHERE status = 'complete' AND ended_at IS NOT NULL
    GROUP BY agent_id ORDER BY max(ended_at) DESC LIMIT $2
), ranked AS (
    SELECT t.agent_id, t.input_tokens + t.output_tokens AS tokens, t.cost_usd, t.duration_s, t.ended_at, t.task_id,
           row_number() OVER (PARTITION BY t.agent_id ORDER BY t.ended_at DESC, t.task_id DESC) AS rn
    FROM agent_tasks t JOIN agents a USING (agent_id)
    WHERE t.status = 'complete' AND t.ended_at IS NOT NULL AND t.duration_s IS NOT NULL
)
SELECT agent_id, tokens, cost_usd, duration_s FROM ranked WHERE rn <= $1
ORDER BY agent_id, ended_at, task_id
"""


async def recent_tasks(pool: Any, n: int, max_agents: int) -> dict[str, list[tuple[float, float, float]]]:
    """Per agent: (tokens, cost in dollars, duration in seconds) of its last
    ``n`` complete tasks, oldest first; at most ``max_agents`` agents, the
    most recently active."""
    rows = await pool.fetch(RECENT_TASKS, int(n), int(max_agents))
    out: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        out.setdefault(r["agent_id"], []).append(
            (float(r["tokens"]), float(r["cost_usd"] or 0.0), float(r["duration_s"]))
        )
    return out


__all__ = ["RECENT_TASKS", "recent_tasks"]
