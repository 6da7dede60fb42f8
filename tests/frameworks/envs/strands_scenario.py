"""Strands Agents with its native OTel GenAI spans, offline: its OpenAIModel
against the local fake of OpenAI's API (_fake_openai.py).

A triage Agent makes 3 model calls (2,000 → 8,800 input tokens on gpt-4o),
runs a tool and an expert Agent inside a tool (agents as tools, 1 call of
its own); the failing case fails on its second model call. Run by
_drive.py in the ``otel-1.44`` venv.
"""

from __future__ import annotations

from typing import Any

import _live
from _fake_openai import FakeOpenAI, Reply
from strands import Agent, tool
from strands.models.openai import OpenAIModel


def _model(fake: FakeOpenAI, agent: str) -> OpenAIModel:
    return OpenAIModel(
        client_args={"api_key": "offline", "base_url": fake.url(agent), "max_retries": 0}, model_id="gpt-4o"
    )


@tool
def lookup(code: str) -> str:
    """Look up a fault code.

    Args:
        code: the fault code
    """
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def _run(fail: bool) -> str:
    script: dict[str, list[Reply]] = {
        "triage": [
            ("lookup", {"code": "F47"}, 2_000),
            ("ask_expert", {"question": "why F47?"}, 5_000),
            ("Routed to the Siemens SME", None, 8_800),
        ],
        "expert": [("a worn bearing", None, 600)],
    }
    fake = FakeOpenAI(script, {"triage": 1} if fail else None)
    try:
        expert = Agent(name="expert", model=_model(fake, "expert"), callback_handler=None)

        @tool
        async def ask_expert(question: str) -> str:
            """Ask the expert.

            Args:
                question: what to ask
            """
            return str(await expert.invoke_async(question))

        triage = Agent(
            name="triage",
            system_prompt="Route the fault.",
            model=_model(fake, "triage"),
            tools=[lookup, ask_expert],
            callback_handler=None,
        )
        return str(triage("Diagnose fault F47")).strip()
    finally:
        fake.close()


CASES: dict[str, Any] = {"ok": lambda provider: _run(fail=False), "fail": lambda provider: _run(fail=True)}
