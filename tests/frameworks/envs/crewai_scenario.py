"""CrewAI with OpenInference's CrewAI and OpenAI instrumentations (as teams
run it: the CrewAI one traces the crew, its agents and tools; the OpenAI
one the model calls, with their tokens), offline: CrewAI's native OpenAI
LLM against the local fake of OpenAI's API (_fake_openai.py).

A crew whose triage agent makes 3 model calls (2,000 → 8,800 input tokens
on gpt-4o), runs a tool and delegates to the expert agent (CrewAI's
"Delegate work to coworker" tool, 1 call of the expert's); the failing case
fails on its second model call. Run by _drive.py in the ``crewai`` venv.
"""

from __future__ import annotations

import os

import _live

# CrewAI's own telemetry and trace upload (to its servers) off: this run is offline.
os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"

from typing import Any

from _fake_openai import FakeOpenAI, Reply
from crewai import LLM, Agent, Crew, Task
from crewai.tools import tool
from openinference.instrumentation.crewai import CrewAIInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor

_INSTRUMENTED: list[Any] = []


@tool("lookup")
def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def _llm(fake: FakeOpenAI, agent: str) -> LLM:
    return LLM(model="gpt-4o", base_url=fake.url(agent), api_key="offline", max_retries=0)


def _run(fail: bool) -> str:
    delegate = {"task": "Explain fault F47", "context": "spindle vibration", "coworker": "expert"}
    script: dict[str, list[Reply]] = {
        "triage": [
            ("lookup", {"code": "F47"}, 2_000),
            ("delegate_work_to_coworker", delegate, 5_000),
            ("Routed to the Siemens SME", None, 8_800),
        ],
        "expert": [("a worn bearing", None, 600)],
    }
    fake = FakeOpenAI(script, {"triage": 1} if fail else None)
    try:
        expert = Agent(
            role="expert", goal="Explain faults", backstory="A bearing specialist.", llm=_llm(fake, "expert")
        )
        triage = Agent(
            role="triage",
            goal="Route faults",
            backstory="The plant's first line.",
            llm=_llm(fake, "triage"),
            tools=[lookup],
            allow_delegation=True,
        )
        task = Task(description="Diagnose fault F47", expected_output="Where the fault goes", agent=triage)
        crew = Crew(agents=[triage, expert], tasks=[task], name="fault desk")
        return str(crew.kickoff().raw)
    finally:
        fake.close()


def _case(fail: bool) -> Any:
    def run(provider: Any) -> str:
        if not _INSTRUMENTED:  # once, on the driver's one provider
            for instrumentor in (CrewAIInstrumentor(), OpenAIInstrumentor()):
                instrumentor.instrument(tracer_provider=provider)
                _INSTRUMENTED.append(instrumentor)
        return _run(fail)

    return run


CASES: dict[str, Any] = {"ok": _case(fail=False), "fail": _case(fail=True)}
