"""The audit table keeps what people were shown of a request: the question
as read (secrets masked where the request was read, once for every sink), and
the action asked next to the one an edit approved, masked too (their
digests bind the raw ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.core.test_shown_requests import SECRETS, _decided, _request

from .conftest import fetch, run
from .test_sink_basic import export_all


def test_human_interventions_hold_the_masked_question_and_actions(pg_server: Any, tmp_path: Path) -> None:
    url = pg_server.database()
    event = _decided(_request())

    async def main() -> None:
        await export_all(url, tmp_path, [[event]])
        [row] = await fetch(url, "SELECT question, question_digest, attributes FROM human_interventions")
        shown = json.dumps(dict(row), default=str)
        assert not [s for s in SECRETS if s in shown], shown
        assert row["question"].startswith("Allow Bash: export ANTHROPIC_API_KEY=**** ")
        assert row["question_digest"] == event.request.digest  # type: ignore[union-attr]
        more = json.loads(row["attributes"]) if isinstance(row["attributes"], str) else row["attributes"]
        assert json.loads(more["asked"])["tool"] == "Bash" and "****" in more["asked"]
        assert json.loads(more["edited"]) == {"tool": "Bash", "arguments": {"command": "gh release --token ****"}}

    run(main)
