"""OpenCode as the matrix runs it: ``opencode run --format json`` with a
provider of its own config pointed at the fake Chat Completions API
(``@ai-sdk/openai-compatible``, which it bundles), nothing fetched from the
network (models list, updates, LSP servers, sharing: all off; the package
registries it would install plugin dependencies from point at a closed
port), and spanvisor's gate plugin when a test asks for it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from spanvisor.clis.opencode_shape import PLUGIN_FILE
from spanvisor.receiver.codingagents.ids import session_task_id
from tests.codingagents.agents import Ran, Running, base_env, run, start
from tests.codingagents.fake_http import FakeModelAPI
from tests.codingagents.npm_install import MODULES

MODEL = "gpt-4.1"
SHELL = "bash"
NOWHERE = "http://127.0.0.1:9/"
# This install's spanvisor console script: what the plugin runs.
SPANVISOR_BIN = str(Path(sys.executable).with_name("spanvisor"))


def plugin_path() -> Path:
    import spanvisor

    return Path(spanvisor.__file__).parent.joinpath("_assets", "opencode", PLUGIN_FILE)


def config(api: FakeModelAPI, run_id: str) -> dict[str, Any]:
    """Its config: the fake as its provider and model, nothing shared or updated (Kilo's too)."""
    return {
        "model": f"fake/{MODEL}",
        "autoupdate": False,
        "share": "disabled",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "the matrix fake",
                "options": {"baseURL": api.base_url(run_id, "/v1"), "apiKey": "sk-matrix-dummy"},
                "models": {MODEL: {"name": MODEL, "tool_call": True}},
            }
        },
    }


def env(home: Path, api: FakeModelAPI, run_id: str) -> dict[str, str]:
    folder = home / ".config" / "opencode"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"$schema": "https://opencode.ai/config.json", **config(api, run_id)}
    (folder / "opencode.json").write_text(json.dumps(doc))
    plugin_types_present(folder)
    out = base_env(home)
    out.update(
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_SHARE="1",
        NPM_CONFIG_REGISTRY=NOWHERE,
        BUN_CONFIG_REGISTRY=NOWHERE,
    )
    return out


def version() -> str:
    """The version of the OpenCode the matrix runs (its plugin package's is the same)."""
    doc = json.loads((MODULES / "opencode-ai" / "package.json").read_text())
    return str(doc["version"])


def plugin_types_present(config: Path, package: str = "@opencode-ai/plugin", at: str | None = None) -> None:
    """OpenCode (and Kilo, its fork: ``@kilocode/plugin``) installs a
    plugin's types with npm into each config folder when it loads plugins,
    unless the folder has a ``node_modules`` and a ``package-lock.json``
    naming them: with no registry that install waits about 75 s.
    spanvisor's plugin imports nothing of them."""
    (config / "node_modules").mkdir(exist_ok=True)
    lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": {package: at or version()}}}}
    (config / "package-lock.json").write_text(json.dumps(lock))


def with_plugin(environ: dict[str, str], timeout_s: int | None = None) -> dict[str, str]:
    """spanvisor's plugin, as docs/reference/coding-agents-hooks.md sets it up without the launcher."""
    environ["OPENCODE_CONFIG_CONTENT"] = json.dumps({"plugin": [plugin_path().as_uri()]})
    environ["SPANVISOR_BIN"] = SPANVISOR_BIN
    if timeout_s is not None:
        environ["SPANVISOR_OPENCODE_TIMEOUT"] = str(timeout_s)
    return environ


def argv(bin_dir: Path, prompt: str, fmt: str | None = "json") -> list[str]:
    return [str(bin_dir / "opencode"), "run", *(["--format", fmt] if fmt else []), "-m", f"fake/{MODEL}", prompt]


def opencode(
    bin_dir: Path,
    work: Path,
    environ: dict[str, str],
    prompt: str,
    launcher: dict[str, str] | None = None,
    fmt: str | None = "json",
) -> Ran:
    return run(argv(bin_dir, prompt, fmt), environ, work, launcher)


def opencode_started(
    bin_dir: Path, work: Path, environ: dict[str, str], prompt: str, launcher: dict[str, str] | None = None
) -> Running:
    return start(argv(bin_dir, prompt), environ, work, launcher)


def session_of(ran: Ran) -> str:
    ids = {ln["sessionID"] for ln in ran.lines() if isinstance(ln.get("sessionID"), str)}
    assert len(ids) == 1, f"one session in its lines, got {ids}\n{ran.said()}"
    return ids.pop()


def tools(ran: Ran) -> list[dict[str, Any]]:
    """Its finished tool calls: ``part`` of each ``tool_use`` line."""
    return [ln["part"] for ln in ran.lines() if ln.get("type") == "tool_use" and isinstance(ln.get("part"), dict)]


def task_of(ran: Ran) -> str:
    """The task of the session alone (no launcher): its session id in the CLI's namespace."""
    return session_task_id("opencode", session_of(ran))
