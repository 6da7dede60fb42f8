"""Kilo as the matrix runs it: ``kilo run --format json`` with a provider
of its own config pointed at the fake Chat Completions API (as OpenCode,
which it forks: :mod:`.opencode_cli`), nothing fetched from the network,
and spanvisor's gate plugin (OpenCode's, which Kilo loads) when a test
asks for it."""

from __future__ import annotations

import json
from pathlib import Path

from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents import opencode_cli as oc
from tests.codingagents.agents import Ran, Running, base_env, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.npm_install import MODULES

# Its linux-x64 binary, pinned alone (tests/codingagents/npm/package.json
# says why): no wrapper, so no link in node_modules/.bin.
BINARY = MODULES / "@kilocode" / "cli-linux-x64" / "bin" / "kilo"
MODEL = oc.MODEL
SHELL = oc.SHELL
session_of = oc.session_of
tools = oc.tools


def env(home: Path, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    config = home / ".config" / "kilo"
    config.mkdir(parents=True, exist_ok=True)
    doc = {"$schema": "https://app.kilo.ai/config.json", **oc.config(api, run_id)}
    (config / "kilo.json").write_text(json.dumps(doc))
    oc.plugin_types_present(config, "@kilocode/plugin", version())  # no npm install to wait for
    out = base_env(home)
    out.update(
        KILO_DISABLE_MODELS_FETCH="1",
        KILO_DISABLE_AUTOUPDATE="1",
        KILO_DISABLE_LSP_DOWNLOAD="1",
        KILO_DISABLE_SHARE="1",
        KILO_DISABLE_SESSION_INGEST="1",
        KILO_TELEMETRY_LEVEL="off",
        NPM_CONFIG_REGISTRY=oc.NOWHERE,
        BUN_CONFIG_REGISTRY=oc.NOWHERE,
    )
    return out


def version() -> str:
    doc = json.loads((MODULES / "@kilocode" / "cli-linux-x64" / "package.json").read_text())
    return str(doc["version"])


def with_plugin(environ: dict[str, str]) -> dict[str, str]:
    """spanvisor's plugin, as docs/reference/coding-agents-hooks.md sets it up without the launcher."""
    environ["KILO_CONFIG_CONTENT"] = json.dumps({"plugin": [oc.plugin_path().as_uri()]})
    environ["SPANVISOR_BIN"] = oc.SPANVISOR_BIN
    return environ


def argv(bin_dir: Path, prompt: str, fmt: str | None = "json") -> list[str]:
    del bin_dir  # its binary is not linked there (BINARY)
    return [str(BINARY), "run", *(["--format", fmt] if fmt else []), "-m", f"fake/{MODEL}", prompt]


def kilo(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    fmt: str | None = "json",
) -> Ran:
    return run(argv(bin_dir, prompt, fmt), environ, work, launcher)


def kilo_started(bin_dir: Path, work: Path, environ: dict[str, str], prompt: str) -> Running:
    return start(argv(bin_dir, prompt), environ, work, None)


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("kilo", session_of(ran))
