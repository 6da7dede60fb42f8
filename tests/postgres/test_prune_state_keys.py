"""Prune deletes a task's state-store keys: its id and every "<id>/..." key, nobody else's."""

from __future__ import annotations

from typing import Any

from spanvisor_postgres.queries import prune

from .conftest import fetch, run

OLD = ("T-old", "a", "p%_\\", "slash/task", "open", "all", "head")
LIVE = ("a/b", "T-older", "pzz", "p%_\\x", "slash")


def keys_of(task_id: str) -> list[tuple[str, str]]:
    """The keys the Slack and Grafana sinks write for one task."""
    return [
        ("slack.parent", task_id),
        ("grafana.annotation", task_id),
        ("slack.reply", f"{task_id}/milestone:50"),
        ("slack.reply", f"{task_id}/summary"),
        ("slack.alert", f"{task_id}/error|#agent-alerts"),
    ]


# Records nobody's task owns, keyed like tasks that are pruned.
SHARED = [("requests", "open"), ("grants", "all"), ("audit.chain", "head"), ("audit.chain", "head/x")]


async def seed(conn: Any) -> None:
    await conn.execute("TRUNCATE agent_tasks, delivery_state")
    for namespace, key in SHARED:
        await conn.execute(
            "INSERT INTO delivery_state (namespace, key, owner, value) VALUES ($1, $2, 'r1', '{}')", namespace, key
        )
    for task_id, age in [(t, "400 days") for t in OLD] + [(t, "1 minute") for t in LIVE]:
        await conn.execute(
            "INSERT INTO agent_tasks (task_id, trace_id, root_span_id, agent_id, status, "
            "started_at, updated_at, updated_ns, last_event_id) "
            "VALUES ($1, 't', 's', 'rivet', 'complete', now() - $2::text::interval, now(), 1, 'e')",
            task_id,
            age,
        )
        for namespace, key in keys_of(task_id):
            await conn.execute(
                "INSERT INTO delivery_state (namespace, key, owner, value) VALUES ($1, $2, 'r1', '{}')",
                namespace,
                key,
            )


def test_prune_deletes_prefixed_keys_of_pruned_tasks_only(db_url: str) -> None:
    async def main() -> None:
        import asyncpg

        pool: Any = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await seed(conn)
            assert await prune(pool, 86400.0, batch=1) == len(OLD)
        finally:
            await pool.close()
        left = {(r["namespace"], r["key"]) for r in await fetch(db_url, "SELECT namespace, key FROM delivery_state")}
        # Every key of a live task stays: "a/b/summary" is not "a"'s, "T-older/..."
        # does not start with "T-old/", LIKE wildcards in ids match nothing;
        # shared records named like a pruned task stay too.
        assert left == {k for t in LIVE for k in keys_of(t)} | set(SHARED)

    run(main)


def test_prune_of_a_task_and_its_longer_sibling_in_one_batch(db_url: str) -> None:
    async def main() -> None:
        import asyncpg

        pool: Any = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await seed(conn)
                await conn.execute("UPDATE agent_tasks SET started_at = now() - interval '400 days'")
            assert await prune(pool, 86400.0, batch=100) == len(OLD) + len(LIVE)
        finally:
            await pool.close()
        left = {(r["namespace"], r["key"]) for r in await fetch(db_url, "SELECT namespace, key FROM delivery_state")}
        assert left == set(SHARED)

    run(main)


def test_the_prefix_lookup_uses_the_pattern_index(db_url: str) -> None:
    from spanvisor_postgres.queries import _PRUNE_STATE_KEYS, SHARED_NAMESPACES

    async def main() -> None:
        import asyncpg

        conn: Any = await asyncpg.connect(db_url)
        try:
            await conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                r[0] for r in await conn.fetch("EXPLAIN " + _PRUNE_STATE_KEYS[1], ["a", "b"], SHARED_NAMESPACES)
            )
        finally:
            await conn.close()
        assert "delivery_state_key_pattern" in plan, plan

    run(main)


def test_prune_deletes_old_click_keys_by_their_own_age(db_url: str) -> None:
    """Keys kept per click (a Slack payload seen, a refused click's answer)
    belong to no task id: they go when they are older than the cutoff."""

    async def main() -> None:
        import asyncpg

        pool: Any = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                await conn.execute("TRUNCATE agent_tasks, delivery_state")
                for namespace, key, age in [
                    ("slack.payloads", "old-click", "400 days"),
                    ("decisions.denied", "old-refusal", "400 days"),
                    ("slack.payloads", "new-click", "1 minute"),
                    ("decisions.denied", "new-refusal", "1 minute"),
                    ("slack.parent", "no-such-task", "400 days"),  # not a click key: left alone
                ]:
                    await conn.execute(
                        "INSERT INTO delivery_state (namespace, key, owner, value, updated_at) "
                        "VALUES ($1, $2, 'r1', '{}', now() - $3::text::interval)",
                        namespace,
                        key,
                        age,
                    )
            await prune(pool, 86400.0, batch=1)
        finally:
            await pool.close()
        left = {r["key"] for r in await fetch(db_url, "SELECT key FROM delivery_state")}
        assert left == {"new-click", "new-refusal", "no-such-task"}

    run(main)
