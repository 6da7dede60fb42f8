"""Every ``spanvisor`` subcommand through ``spanvisor.cli.main.main(argv)``, the console script.

Real parts only: a real PostgreSQL (tests/conftest_pg.py), a real receiver on
a real Pipeline with the real PostgreSQL sink for ``emit``, the embedded
server for ``db url``/``db stop``. Exit codes and output are asserted.
Subcommands tested elsewhere through ``main()`` are listed in
:data:`TESTED_ELSEWHERE`; the registry test fails when one is added (or one
silently fails to register) without a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from spanvisor.cli import emit_spans
from spanvisor.cli.main import build_parser, main
from spanvisor.config import Config
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor_postgres import PostgresSink
from spanvisor_postgres.settings import SETTINGS as PG_SETTINGS
from tests.cli.conftest import Run
from tests.conftest_pg import PgServer
from tests.postgres._events import task_stream
from tests.postgres.conftest import fetch, make_config, make_ctx, run

# The console script (pyproject [project.scripts]) is this module's main.
SCRIPT = "spanvisor.cli.entry:main"
# Subcommands whose main() tests live elsewhere.
TESTED_ELSEWHERE = {
    "approvals": "tests/cli/test_decide.py (main(['approvals', ...]) against a real receiver)",
    "follow": "tests/stream/test_follow.py (python -m spanvisor.cli follow against a real receiver)",
    "demo": "tests/demo/test_demo_end_to_end.py (python -m spanvisor.cli.main demo --fast)",
    "serve": "tests/receiver/serve_proc.py (python -m spanvisor.cli serve)",
    "token": "tests/receiver/test_first_start_token.py (the token serve made, printed)",
    "gate serve": "tests/gate/test_system_gate.py (spanvisor gate serve as another user)",
    "slack setup": "tests/slack/test_slack_setup.py (spanvisor slack setup against the fake Slack)",
    "migrate": "tests/postgres/test_cli.py::test_migrate_is_a_no_op_on_a_current_schema",
    "deadletter retry": "tests/postgres/test_deadletter_cli.py",
    "db url (external)": "tests/postgres/test_cli.py::test_db_url_masks_external",
    "assets": "tests/packaging/test_wheel.py (python -m spanvisor.cli assets export, from the installed wheel)",
    "approve": "tests/cli/test_decide.py",
    "policy": "tests/cli/test_policy_cli.py (main(['policy', 'show'/'check'/'test', …]))",
    "hook": "tests/cli/test_hook.py (python -m spanvisor.cli hook … with each CLI's stdin)",
    "run": "tests/cli/test_run.py (main(['run', …, '--', a fake claude]))",
    "reject": "tests/cli/test_decide.py",
    "cancel": "tests/cli/test_decide.py",
    "retry": "tests/cli/test_decide.py",
    "ack": "tests/cli/test_decide.py",
    "interventions": "tests/postgres/test_interventions.py",
    "audit": "tests/postgres/test_audit_chain.py",
    "decider-token": "tests/cli/test_deciders.py",
    "grants": "tests/cli/test_quorum_grants.py (add, list, revoke against a real receiver)",
    "login": "tests/cli/test_login.py (python -m spanvisor.cli login against a fake identity provider)",
    "logout": "tests/cli/test_login.py",
}
TESTED_HERE = {"check", "version", "emit", "tasks", "task", "stats", "prune", "db", "deadletter"}
TOKEN = "cli-s3cret"


@pytest.fixture
def db(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh migrated database, named by SPANVISOR_DATABASE_URL."""
    url = pg_server.database()
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
    return url


# --- the registry ----------------------------------------------------------------


def test_the_console_script_is_this_main() -> None:
    (script,) = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "spanvisor"]
    assert script.value == SCRIPT
    # The console script sends `spanvisor hook …` to the gate and every other
    # command to this main.
    from spanvisor.cli import entry

    assert script.load() is entry.main
    assert "from spanvisor.cli.main import main as full" in Path(entry.__file__).read_text()


def test_every_subcommand_registers_and_has_a_test() -> None:
    # A module whose import fails is skipped by build_parser (ModuleNotFoundError
    # is swallowed, a plugin's error only logged): its commands would vanish.
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    registered = set(sub.choices)  # type: ignore[arg-type]
    expected = {"demo", "check", "version", "serve", "emit", "deadletter", "migrate", "db", "tasks", "task"}
    expected |= {"stats", "prune"}
    assert expected <= registered, f"{expected - registered} did not register"
    covered = TESTED_HERE | {k.split()[0] for k in TESTED_ELSEWHERE}
    assert registered <= covered, f"no main() test for {registered - covered}: add one and list it here"


def test_no_command_prints_help_and_exits_2(cli: Run) -> None:
    code, out, _ = cli()
    assert code == 2
    assert out.startswith("usage: spanvisor") and "prune" in out and "emit" in out


# --- version ---------------------------------------------------------------------


def test_version(cli: Run) -> None:
    code, out, err = cli("version")
    assert (code, out, err) == (0, f"spanvisor {importlib.metadata.version('spanvisor')}\n", "")


def test_the_version_flag_says_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"spanvisor {importlib.metadata.version('spanvisor')}\n"


# --- check -----------------------------------------------------------------------


def test_check_with_a_reachable_database(cli: Run, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANVISOR_SINKS", "postgres")
    code, out, err = cli("check")
    assert code == 0, out + err
    assert out.splitlines()[0] == "configuration is valid", out
    assert re.search(r"^  database_url\s+SPANVISOR_DATABASE_URL\s+\S+\s+env SPANVISOR_DATABASE_URL$", out, re.M), out
    assert "\nsinks: postgres\n" in out
    assert re.search(r"^  ok postgres \S+: reachable, schema version \d+$", out, re.M), out
    password = urlsplit(db).password
    if password:
        assert password not in out + err


def test_check_with_an_unreachable_database_fails(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANVISOR_SINKS", "postgres")
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", "postgresql://u:hunter2@127.0.0.1:1/nope")
    monkeypatch.setenv("SPANVISOR_DB_COMMAND_TIMEOUT", "2s")
    code, out, err = cli("check")
    assert code == 1
    assert out.splitlines()[0] == "configuration is NOT valid: 1 check failed", out
    assert re.search(r"^  ✗ postgres postgresql://u:\*+@127\.0\.0\.1:1/nope: ", out, re.M), out
    assert "hunter2" not in out + err


def test_check_reports_every_bad_setting_at_once(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANVISOR_GRAFANA_RETRY_BUDGET", "soon")
    monkeypatch.setenv("SPANVISOR_CONTEXT_THRESHOLDS", "70,85")
    monkeypatch.setenv("SPANVISOR_SINK", "console")
    code, out, err = cli("check")
    assert code == 2 and err == "", err
    lines = out.splitlines()
    assert lines[0] == "configuration is NOT valid: 3 problems", out
    problems = lines[lines.index("problems:") + 1 : lines.index("problems:") + 4]
    assert problems == [
        "  ✗ context_thresholds (env SPANVISOR_CONTEXT_THRESHOLDS) = '70,85' is invalid; "
        "accepted: ratios in (0, 1], e.g. 0.7,0.85",
        "  ✗ grafana_retry_budget_s (env SPANVISOR_GRAFANA_RETRY_BUDGET) = 'soon' is invalid; accepted: a duration",
        "  ✗ unknown variable SPANVISOR_SINK; did you mean 'SPANVISOR_SINKS'?",
    ], out


def test_check_with_no_sink_configured_is_valid_and_short(cli: Run) -> None:
    code, out, _ = cli("check")
    assert code == 0
    assert out.splitlines()[0] == "configuration is valid"
    assert "\nsinks: console\n" in out
    # Only what was set (the test's data directory), not the whole table.
    assert len(out.splitlines()) < 15, out
    assert "set (1 of " in out and "--all shows every one" in out


def test_check_all_prints_every_setting(cli: Run) -> None:
    code, out, _ = cli("check", "--all")
    assert code == 0 and out.splitlines()[0] == "configuration is valid"
    header = next(line for line in out.splitlines() if line.startswith("setting "))
    assert header.split() == ["setting", "environment", "value", "source"]
    assert re.search(r"^context_thresholds\s+SPANVISOR_CONTEXT_THRESHOLDS\s+0.7,0.85\s+default$", out, re.M), out


def test_check_reads_the_hook_policy(cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A policy the gate cannot read denies every coding-agent tool call:
    check says so, first."""
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "alow"\n')
    monkeypatch.setenv("SPANVISOR_HOOK_POLICY", str(policy))
    code, out, _ = cli("check")
    assert code == 2 and out.splitlines()[0] == "configuration is NOT valid: 1 problem", out
    assert (
        f"  ✗ SPANVISOR_HOOK_POLICY ({policy}): default must be one of allow, ask, deny, not 'alow'; "
        "the gate denies every coding-agent tool call until it is fixed"
    ) in out.splitlines()
    policy.write_text(
        'default = "allow"\n[[rule]]\nname = "no-rm"\ntool = "Bash"\ncommand = "rm *"\ndecision = "deny"\n'
    )
    code, out, _ = cli("check")
    assert code == 0, out
    assert f"  ok hook policy {policy}: 1 rule, default allow, 300 s to decide, then deny" in out.splitlines()


def test_check_reads_the_deciders_file(cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    deciders = tmp_path / "deciders.toml"
    deciders.write_text('[people.alice]\ntoken_sha256 = "abc"\n')
    monkeypatch.setenv("SPANVISOR_DECIDERS", str(deciders))
    code, out, _ = cli("check")
    assert code == 2 and out.splitlines()[0] == "configuration is NOT valid: 1 problem", out
    assert "token_sha256 must be 64 hex digits" in out and "decisions are refused until it is fixed" in out
    deciders.write_text(f'[people.alice]\ntoken_sha256 = "{"a" * 64}"\n')
    code, out, _ = cli("check")
    assert code == 0 and f"  ok deciders {deciders}: 1 people, 0 agent token(s)" in out.splitlines(), out


def test_check_reaches_the_control_api_it_is_pointed_at(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANVISOR_CONTROL_URL", "http://127.0.0.1:9")
    code, out, _ = cli("check")
    assert code == 1 and out.splitlines()[0] == "configuration is NOT valid: 1 check failed", out
    assert "  ✗ control API http://127.0.0.1:9 (SPANVISOR_CONTROL_URL): no answer (" in out, out


def test_check_with_an_unreadable_config_file(cli: Run, tmp_path: Path) -> None:
    code, out, _ = cli("--config", str(tmp_path / "missing.toml"), "check")
    assert code == 2 and out.splitlines()[0] == "configuration is NOT valid: 1 problem", out
    assert "SPANVISOR_CONFIG: cannot read" in out


# --- emit, then reading the task back ------------------------------------------------


class _Receiver:
    """A real receiver on a real Pipeline (PostgreSQL sink), on its own loop thread:
    emit's OTLP exporter is synchronous."""

    def __init__(self, data_dir: Path, db_url: str) -> None:
        config = Config.load(env={"SPANVISOR_DATA_DIR": str(data_dir), "SPANVISOR_DATABASE_URL": db_url})
        self.pipeline = Pipeline(config=config, sinks=[PostgresSink()], path="receiver").start()
        assert self.pipeline.wait_ready(60), "the PostgreSQL sink did not start"
        settings = dataclasses.replace(
            ReceiverSettings.from_config(config),
            bind="127.0.0.1",
            http_port=0,
            grpc_port=0,
            admin_port=0,
            token=TOKEN,
            journal_path=None,
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, settings)
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(60)

    def endpoint(self, protocol: str) -> str:
        port = self.receiver.grpc_port if protocol == "grpc" else self.receiver.http_port
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def receiver(db: str) -> Iterator[_Receiver]:
    base = Path(tempfile.mkdtemp(prefix="spanvisor-cli-recv-"))
    r = _Receiver(base, db)
    try:
        yield r
    finally:
        r.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_emit_through_main_then_tasks_task_and_stats(cli: Run, receiver: _Receiver, protocol: str) -> None:
    task = f"cli-deploy-{protocol.split('/', maxsplit=1)[0]}"
    common = ["--task", task, "--agent", "shellbot", "--endpoint", receiver.endpoint(protocol)]
    common += ["--protocol", protocol, "--token", TOKEN, "--timeout", "20"]

    code, out, err = cli("emit", "start", *common, "--name", "Deploy 42", "--repo", "acme/web", "Starting")
    assert code == 0, out + err
    trace_id, root_id = emit_spans.task_ids(task)
    assert out.strip() == f"task={task} trace_id={trace_id:032x} root_span_id={root_id:016x}"
    code, out, err = cli("emit", "checkpoint", *common, "--progress", "50", "--step", "validate", "Validating")
    assert (code, out) == (0, ""), err
    assert cli("emit", "artifact", *common, "--name", "build.log", "--uri", "s3://b/build.log")[0] == 0
    assert cli("emit", "finish", *common, "--status", "complete", "Deployed")[0] == 0
    assert receiver.pipeline.force_flush(60), "the pipeline did not deliver"

    code, out, err = cli("tasks", "--agent", "shellbot", "--json")
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["task_id"], row["status"], row["task_name"], row["repo"]) == (task, "complete", "Deploy 42", "acme/web")

    code, out, err = cli("task", task)
    assert code == 0, err
    assert f"task  {task}" in out and "status  complete" in out and "agent  shellbot" in out
    table = out.split("\n\n")[1].splitlines()
    col = table[0].index("KIND")
    kinds = [line[col:].split()[0] for line in table[2:]]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert {"checkpoint", "artifact"} <= set(kinds), kinds
    assert "Validating" in out and "build.log" in out

    code, out, err = cli("stats", "--since", "1h", "--json")
    assert code == 0, err
    (stats,) = [json.loads(line) for line in out.splitlines()]
    assert (stats["agent_id"], stats["tasks"], stats["running"], stats["success_rate"]) == ("shellbot", 1, 0, 1.0)


def test_emit_with_a_wrong_token_fails(cli: Run, receiver: _Receiver) -> None:
    argv = ["emit", "checkpoint", "--task", "t", "--endpoint", receiver.endpoint("http/protobuf")]
    code, out, _ = cli(*argv, "--token", "wrong", "--timeout", "5", "x")
    assert code == 1
    assert "the receiver did not accept the span" in out
    assert receiver.pipeline.stats.value("receiver_requests_total", transport="http", outcome="unauthenticated") >= 1


def test_emit_needs_a_kind_and_a_task(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["emit"], "KIND"), (["emit", "start"], "--task")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


# --- prune -------------------------------------------------------------------------


def test_prune_deletes_old_tasks_with_their_rows(cli: Run, db: str, tmp_path: Path) -> None:
    events = task_stream(1, checkpoints=2) + task_stream(2, checkpoints=2, outcome="error")
    events += task_stream(3, checkpoints=1, finish=False)

    async def load() -> None:
        sink = PostgresSink()
        await sink.start(make_ctx(make_config(tmp_path / "load", db)))
        await sink.export(events)
        await sink.shutdown(5)

    run(load)
    # The stream's tasks are from 2025, far older than a day.
    code, out, err = cli("prune", "--older-than", "100000d")
    assert (code, err) == (0, "")
    assert out.strip() == "deleted 0 tasks inactive for more than 2400000h00m with their rows"

    code, out, err = cli("prune", "--older-than", "1d", "--batch", "2")
    assert (code, err) == (0, "")
    assert out.strip() == "deleted 3 tasks inactive for more than 24h00m with their rows"
    for table in ("agent_tasks", "agent_checkpoints", "task_artifacts"):
        assert run(lambda t=table: fetch(db, f"SELECT count(*) AS n FROM {t}"))[0]["n"] == 0, table  # type: ignore[misc]
    assert cli("tasks")[1].strip() == "no tasks match"


def test_prune_needs_a_duration(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["prune", "--older-than", "soon"])
    assert exit_.value.code == 2
    assert "'soon' is not a duration (e.g. 30m, 1h, 7d)" in capsys.readouterr().err


# --- db url / db stop on the embedded server -------------------------------------------


@pytest.mark.slow
def test_db_url_starts_the_embedded_server_and_db_stop_stops_it(
    cli: Run, monkeypatch: pytest.MonkeyPatch, pg_server: PgServer
) -> None:
    from spanvisor_postgres.db import embedded_root
    from spanvisor_postgres.embedded import EmbeddedPostgres

    # Not under pytest's basetemp (see tests/conftest_pg.py): the server may run as another user.
    data_dir = Path(tempfile.mkdtemp(prefix="spanvisor-cli-db-"))
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(data_dir))
    root = embedded_root(Config.load(env={"SPANVISOR_DATA_DIR": str(data_dir)}, extra=PG_SETTINGS))
    try:
        code, out, err = cli("db", "url")
        assert code == 0, err
        url = out.strip()
        assert url.startswith("postgresql://") and "'spanvisor db stop' stops it" in err
        assert run(lambda: fetch(url, "SELECT 1 AS one"))[0]["one"] == 1

        code, out, err = cli("db", "stop")
        assert (code, out, err) == (0, "embedded PostgreSQL stopped\n", "")
        with pytest.raises(OSError):
            run(lambda: fetch(url, "SELECT 1"))
    finally:
        EmbeddedPostgres(root).stop()  # whatever happened above
        shutil.rmtree(data_dir, ignore_errors=True)


def test_db_stop_refuses_an_external_database(cli: Run, db: str) -> None:
    code, out, err = cli("db", "stop")
    assert code == 2 and out == ""
    assert "SPANVISOR_DATABASE_URL is set: spanvisor does not stop an external database" in err


# --- deadletter list ----------------------------------------------------------------------


def test_deadletter_list_when_nothing_was_set_aside(cli: Run, tmp_path: Path) -> None:
    code, out, err = cli("deadletter", "list")
    assert (code, err) == (0, "")
    assert out.startswith("no dead letters in ") and str(tmp_path / "data") in out
    code, out, _ = cli("deadletter", "list", "--json")
    assert (code, out) == (0, "")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["taks"],
            "spanvisor: unknown command 'taks'; did you mean 'tasks' or 'task'? (`spanvisor --help` lists them)",
        ),
        (["aprove"], "spanvisor: unknown command 'aprove'; did you mean 'approve' or 'approvals'?"),
        (["emit", "strat"], "spanvisor emit: unknown kind 'strat'; did you mean 'start'?"),
        (["zzz"], "spanvisor: unknown command 'zzz' (`spanvisor --help` lists them)"),
    ],
)
def test_a_mistyped_command_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str], argv: list[str], said: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    last = out.err.strip().splitlines()[-1]
    assert last.startswith(said), out.err
    assert "choose from" not in out.err
