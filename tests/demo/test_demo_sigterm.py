"""SIGTERM to `spanvisor demo` (a terminal closed, a container stopped):
the demo shuts its sinks down within its bound and the embedded PostgreSQL
it started stops with them, instead of running on with nobody holding it.
Also what the demo says about its length and about --linger."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spanvisor.cli.demo_flow import STOP_S, expected_s, linger_hint


def _embedded(root: Path) -> object:
    try:
        from spanvisor_postgres.embedded import EmbeddedPostgres, bin_dir

        bin_dir()
    except Exception as exc:  # the [embedded] extra is not installed
        pytest.skip(f"no embedded PostgreSQL: {exc}")
    return EmbeddedPostgres(root)


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_embedded_postgres(server_dir: Path) -> None:
    server = _embedded(server_dir / "data" / "postgres")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(server_dir / "data"),
        SPANVISOR_SINKS="console,postgres",
        SPANVISOR_CONSOLE_COLOR="never",
    )
    demo = subprocess.Popen(
        [sys.executable, "-m", "spanvisor.cli", "demo", "--seconds", "60", "--approval-wait", "60"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:  # the sinks started (the embedded server too): the agents run
            seen.append(line)
            if line.startswith("control API:"):
                break
        assert server.running(), "".join(seen)  # type: ignore[attr-defined]
        demo.send_signal(signal.SIGTERM)
        said = time.monotonic()
        rest = demo.stdout.read()
        code = demo.wait(STOP_S + 30)
        took = time.monotonic() - said
        assert code == 128 + signal.SIGTERM, "".join(seen) + rest
        assert "stopping (SIGTERM)" in rest and "Traceback" not in rest, rest
        assert took < STOP_S + 30, took
        assert not server.running(), "the embedded PostgreSQL was left running"  # type: ignore[attr-defined]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        if server.running():  # type: ignore[attr-defined]
            server.stop()  # type: ignore[attr-defined]


def test_the_demo_says_how_long_it_takes_when_nobody_answers() -> None:
    # rivet works 12 of the 14 ticks of the demo's 20 s and waits 20 s for an answer.
    assert round(expected_s(20.0, 20.0)) == 37


def test_the_linger_hint_is_the_one_that_works_where_the_demo_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKELEVEL", "1")
    assert linger_hint(False) == "`make demo DEMO_ARGS='--linger 60'`"
    assert linger_hint(True) == "`make demo-serve DEMO_ARGS='--linger 60'`"
    monkeypatch.delenv("MAKELEVEL")
    assert linger_hint(False).endswith(" demo --linger 60`")
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "spanvisor demo $(DEMO_ARGS)" in makefile and "spanvisor demo --via-serve $(DEMO_ARGS)" in makefile


def test_the_readme_counts_the_demos_agents() -> None:
    from spanvisor.cli.demo import AGENTS

    count = len(AGENTS) + 1  # and ledger, the sign-off (demo_signoff)
    word = ["zero", "one", "two", "three", "four", "five"][count]
    root = Path(__file__).resolve().parents[2]
    for doc in (root / "README.md", root / "docs" / "guides" / "getting-started.md"):
        text = " ".join(doc.read_text().split())
        assert f"runs {word} simulated agents" in text, doc.name
        assert not re.search(r"runs (?:zero|one|two|three|five) simulated agents", text), doc.name
