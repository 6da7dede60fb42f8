"""How every audit command runs: on the audit database (the embedded one, or
``SPANVISOR_DATABASE_URL``), with a missing or unreachable database said in
words and its exit status, shared by ``spanvisor tasks``, ``task``, ``stats``,
``prune``, ``migrate`` and ``interventions``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from spanvisor.config import mask

from .output import ReaderGone, flush, silence_stdout

if TYPE_CHECKING:
    from spanvisor.config import Config

T = TypeVar("T")


def no_database(config: Config) -> str | None:
    """Why there is no audit database to read, or None when there is one."""
    from .db import embedded_root

    root = embedded_root(config)
    if config.get("database_url") or config.get("embedded_db") or (root / "pgdata" / "PG_VERSION").exists():
        return None
    return (
        "no audit database is configured, so there is nothing to read (and none was created).\n"
        "  Set SPANVISOR_DATABASE_URL=postgresql://... to the database your agents or 'spanvisor serve' write to,\n"
        "  or use the embedded one: pip install 'spanvisor[embedded]' and set SPANVISOR_EMBEDDED_DB=true\n"
        "  where your agents run ('spanvisor demo' and 'spanvisor serve' turn it on themselves).\n"
        f"  No embedded database in {root}."
    )


def run_with_db(config: Config, fn: Callable[[Any], Awaitable[T]], auto_migrate: bool = True) -> T:
    from .db import Database

    async def main() -> T:
        db = Database(config, embedded=not config.get("database_url"), auto_migrate=auto_migrate)
        try:
            return await fn(await db.get_pool())
        finally:
            await db.close()

    return asyncio.run(main())


def guard(config: Config, fn: Callable[[Any], Awaitable[int]], auto_migrate: bool = True) -> int:
    """Run one command's query on the audit database; the exit status, with
    a missing or unreachable database said in words (3) and a closed pipe
    taken quietly."""
    from .queries import TaskNotFound
    from .writer import TransientDbError

    why = no_database(config)
    if why is not None:
        print(f"spanvisor: {why}", file=sys.stderr)
        return 3
    try:
        code = run_with_db(config, fn, auto_migrate)
        flush()
        return code
    except ReaderGone:
        silence_stdout()
        return 0
    except TaskNotFound as exc:
        print(f"spanvisor: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, TransientDbError, OSError) as exc:
        where = mask(config.get("database_url")) if config.get("database_url") else "the embedded database"
        print(
            f"spanvisor: cannot reach {where}: {exc}\n"
            "  check SPANVISOR_DATABASE_URL (or unset it to use the embedded database) "
            "and that the server accepts connections; 'spanvisor check' tests it.",
            file=sys.stderr,
        )
        return 3
