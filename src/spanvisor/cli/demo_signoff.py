"""The demo's sign-off: an action two people must approve from the command
line, checked where it runs, and the decision log verified at the end.

* **ledger** asks to run migration 0007 on the orders database in prod: a
  request with an action (``{"tool": "migrate", "arguments": …}``), asked
  for dana (the person the agent works for, who may not approve it). It
  asks for one approver; the demo's central policy (``demo-policy.toml``
  in the data directory, unless ``SPANVISOR_POLICY`` names your own) has a
  rule that raises any migration to two people, and the demo says
  so as the request opens. Once approved it checks the action where it
  runs (``decision.permits``), once: a second check is refused.
* The demo plays **alice** and **bob**, people with tokens of their own (a
  deciders file in the data directory, made anew each run, the tokens kept
  in this process): each answers with the real ``spanvisor approve``, run
  as a person would, its command and answer printed (the token as a
  variable). alice's approval is one vote of two; bob's decides.
* After the sinks have delivered, ``spanvisor audit verify`` recomputes the
  decision log's hash chain in the audit trail, as printed, on the database
  the demo wrote to; without an audit trail (no postgres sink) or with one
  still behind, one line says why it was not verified.

With a ``SPANVISOR_DECIDERS`` of the user's own, the demo's people are not
in it: ledger is not run, and the demo says why.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace

from spanvisor.agent import task
from spanvisor.cli.pasteable import command_name
from spanvisor.config import Config
from spanvisor.control.client import HttpSource
from spanvisor.control.deciders import new_token, token_hash

PEOPLE = ("alice", "bob")
REQUESTER = "dana"
ACTION = {"tool": "migrate", "arguments": {"database": "orders", "target": "prod", "version": 7}}
QUESTION = "Run migration 0007 on the orders database in prod?"
# A CLI process's start and one request, with room for a loaded machine.
CLI_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SignOff:
    """The demo's people: their tokens, by name (None: not the demo's file)."""

    tokens: dict[str, str] | None
    central: bool = False  # the demo's central policy is in force (it raises ledger's request)

    @property
    def on(self) -> bool:
        return self.tokens is not None


POLICY = """# spanvisor demo: its central policy, made anew each run (docs/reference/policy.md)
name = "demo"

[[rule]]
name = "migrations"
tool = "migrate"
decision = "ask"
approvers = 2
reason = "a database migration needs two people"
"""


def central(config: Config) -> tuple[Config, bool]:
    """``config`` with the demo's central policy (unless the user set one),
    and whether it is the demo's."""
    if config.get("policy"):
        return config, False
    path = Path(config.data_dir) / "demo-policy.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(POLICY)
    return config.with_values(policy=str(path)), True


def people(config: Config) -> tuple[Config, SignOff]:
    """``config`` with a deciders file naming the demo's people (unless the
    user set one), and their tokens."""
    if config.get("deciders_file"):
        return config, SignOff(None)
    tokens = {name: new_token() for name in PEOPLE}
    path = Path(config.data_dir) / "demo-deciders.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f'[people.{n}]\ntoken_sha256 = "{token_hash(t)}"\n\n' for n, t in tokens.items())
    path.write_text("# spanvisor demo: made anew each run (docs/reference/interventions.md)\n" + text)
    return config.with_values(deciders_file=str(path)), SignOff(tokens)


def _cli(*argv: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The people answer with their own tokens only: a decide token in this
    # shell would otherwise be sent for them.
    run_env = {k: v for k, v in os.environ.items() if k != "SPANVISOR_DECIDE_TOKEN"}
    run_env.update(env or {})
    # -P: a ``spanvisor/`` folder in the directory the demo was started from
    # must not hide the installed package (``-m`` puts the cwd first).
    return subprocess.run(
        [sys.executable, "-P", "-m", "spanvisor.cli", *argv],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=run_env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _said(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [f"      {line}" for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def _say(lines: Iterable[str]) -> None:
    # One write per command and its answer: the console sink prints from its
    # own thread, and a card between a command and its answer read as part of it.
    print("\n".join(lines), flush=True)


def _answer(
    url: str, task_id: str, tokens: dict[str, str], asked: threading.Event, failed: list[str], wait_s: float = 30.0
) -> None:
    """alice, then bob, once the control API holds the request; a command
    that cannot run or answers with an error goes into ``failed``."""
    client = HttpSource(url, None, request_timeout_s=2.0)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status, doc = client.approvals()
        held = doc.get("approvals") if status == 200 else None
        mine = next((x for x in held or () if x.get("task_id") == task_id and x.get("approval_id") == "a1"), None)
        if mine is not None:
            by = str(mine.get("required_by") or "")
            if by.startswith("central:"):
                _say(
                    [
                        f"📜 central policy {mine.get('policy_version')}: rule {by[8:]} raised it from 1 approver "
                        f"to {mine.get('approvers')} people (`{command_name()} policy show --url {url}`)"
                    ]
                )
            break
        time.sleep(0.05)
    me = command_name()
    for name, token in tokens.items():
        if asked.is_set():
            return  # the agent stopped waiting
        # The token in the environment, never on the command line (another
        # user's `ps` reads argv; and a token that starts with "-" is read as
        # an option there).
        shown = f"👤 {name}: SPANVISOR_DECIDE_TOKEN=${name.upper()}_TOKEN {me} approve {task_id} a1 --url {url}"
        try:
            result = _cli(
                "approve",
                task_id,
                "a1",
                "--url",
                url,
                "--comment",
                f"{name}: checked the plan",
                env={"SPANVISOR_DECIDE_TOKEN": token},
            )
        except (OSError, subprocess.SubprocessError) as exc:
            failed.append(f"{name}'s `approve` could not run: {exc}")
            _say([shown, f"      (could not run it: {exc})"])
            continue
        if result.returncode != 0:
            failed.append(f"{name}'s `approve` ended with status {result.returncode}")
        _say([shown, *_said(result)])


def ledger(
    tracer: trace.Tracer,
    url: str,
    signoff: SignOff,
    wait_s: float,
    pause: Callable[[float], None] = lambda n: None,
    failed: list[str] | None = None,
) -> None:
    """The agent asking for the sign-off (run on its own thread, like the
    others); ``pause(n)`` is n of the demo's ticks. What went wrong with the
    scripted flow goes into ``failed``: the demo then exits non-zero."""
    failed = [] if failed is None else failed
    if signoff.tokens is None:
        print("[ledger] not run: SPANVISOR_DECIDERS is your own file, without the demo's people", flush=True)
        return
    tid = f"ledger-{secrets.token_hex(3)}"
    with task(
        "Migrate orders to 0007 in prod", agent_id="ledger", task_id=tid, repo="shop/orders-db", tracer=tracer
    ) as t:
        pause(2)  # the other agents under way first: a question before any card read as the demo's start
        with tracer.start_as_current_span(
            "chat claude-sonnet-4-5",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5",
            },
        ) as span:  # planning the migration: a priced call like the other agents'
            span.set_attribute("gen_ai.usage.input_tokens", 12_000)
            span.set_attribute("gen_ai.usage.output_tokens", 900)
        t.checkpoint("Migration 0007 planned: add orders.region, backfill", progress=30)
        asked = 1 if signoff.central else 2  # the demo's central policy raises one to two
        whom = "one approver" if asked == 1 else "two people"
        print(
            f"\n🙋 [ledger] asks: {QUESTION} ({whom}, not {REQUESTER}, who asked)\n"
            f"   action: migrate {json.dumps(ACTION['arguments'])}",
            flush=True,
        )
        done = threading.Event()
        people_thread = threading.Thread(
            target=_answer, args=(url, t.task_id, signoff.tokens, done, failed), name="demo-people", daemon=True
        )
        people_thread.start()
        decision = t.request_approval(
            QUESTION, approval_id="a1", action=ACTION, approvers=asked, requester=REQUESTER, timeout=wait_s
        )
        done.set()
        people_thread.join(CLI_TIMEOUT_S)
        if not decision.approved:
            print(f"⌛ [ledger] not approved ({decision.outcome}): migration not run", flush=True)
            if decision.outcome == "timed_out":  # a person's reject is a choice; a timeout is the script failing
                failed.append("ledger's request timed out without its two approvals")
            t.checkpoint("Migration not run (not approved)")
            return
        first, again = decision.check(ACTION), decision.check(ACTION)
        if first.permitted:
            print(f"✅ [ledger] {first.reason}: running migration 0007 (checked where it runs)", flush=True)
            print(f"   a second check of the same approval: refused ({again.reason})", flush=True)
            t.checkpoint(f"Migration 0007 applied ({first.reason})", progress=100)
        else:
            print(f"🚫 [ledger] not permitted: {first.reason}", flush=True)
            failed.append(f"ledger's approval did not permit its action: {first.reason}")


# The settings that say which audit database the demo wrote to: handed to
# `audit verify` as its environment, since the demo's own come from code
# (embedded_db) or a --config file the subprocess is not given.
_DATABASE_SETTINGS = ("data_dir", "database_url", "embedded_db")


def database_env(config: Config) -> dict[str, str]:
    """The environment that points a spanvisor command at ``config``'s audit database."""
    env: dict[str, str] = {}
    for s in config.settings:
        if s.name in _DATABASE_SETTINGS:
            value: Any = config.data_dir if s.name == "data_dir" else config.get(s.name)
            if isinstance(value, bool):
                env[s.env] = "true" if value else "false"
            elif value is not None and value != "":
                env[s.env] = str(value)
            else:
                env[s.env] = ""  # unset: an empty variable reads as not given
    return env


def verify_chain(config: Config, sinks: Iterable[Any], flushed: bool) -> bool:
    """The decision log's chain in the audit trail, recomputed as a person
    would; one line saying why when it cannot be. False when the check ran
    and failed, or could not run: the demo then exits non-zero."""
    me = command_name()
    if not any(getattr(s, "name", None) == "postgres" for s in sinks):
        print("\ndecision log: not verified: no audit trail among these sinks (postgres keeps it)", flush=True)
        return True
    if not flushed:
        print(f"\ndecision log: not verified: the audit trail is behind (run `{me} audit verify` later)", flush=True)
        return True
    print(f"\ndecision log: {me} audit verify", flush=True)
    try:
        result = _cli("audit", "verify", env=database_env(config))
    except subprocess.TimeoutExpired:
        print(f"      (no answer in {CLI_TIMEOUT_S:.0f}s: run it yourself)", flush=True)
        return False
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"      (could not run it: {exc})", flush=True)
        return False
    said = _said(result)
    if not said:
        said = [f"      (it ended with status {result.returncode} and said nothing)"]
    _say(said)
    return result.returncode == 0


__all__ = ["POLICY", "SignOff", "central", "database_env", "ledger", "people", "verify_chain"]
