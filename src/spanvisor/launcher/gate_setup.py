"""``spanvisor run`` for Qwen Code, GitHub Copilot CLI, OpenCode and Cline:
where their telemetry goes, and the gate the launcher can give the two that
have no hook settings of their own to point at spanvisor (``--gate``).

* Qwen Code: its ``QWEN_TELEMETRY_*`` variables (enabled, target local,
  the endpoint, protocol ``http``: OTLP/JSON, which serve reads; prompts
  logged, so the name and steps read as for Gemini CLI).
* Copilot CLI: ``OTEL_EXPORTER_OTLP_ENDPOINT`` with
  ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``. Its commands reach serve
  only when the user's settings capture tool arguments
  (``telemetry.capture.toolArguments``, docs/reference/coding-agents.md): the
  launcher does not turn on ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``,
  which would send every message, file and tool output too.
* OpenCode and Cline: nothing to set; the launcher reads what they print
  (:mod:`spanvisor.launcher.stream`).

``--gate``: OpenCode gets spanvisor's plugin through
``OPENCODE_CONFIG_CONTENT`` (``{"plugin": ["file://…"]}``, merged into any
of the user's own; copied from the package into the launcher's private
folder). Cline runs a ``PreToolUse`` hook from ``~/.cline/hooks`` only (not
from ``--hooks-dir``): ``--gate`` checks spanvisor's is there and refuses
to start Cline otherwise. The plugin and the hook run ``spanvisor hook
<cli>``, which the launcher's ``PATH`` makes its own warm gate.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

PLUGIN = ("opencode", "spanvisor-gate.js")
CLINE_HOOK = ("cline", "PreToolUse")
ENV_BIN = "SPANVISOR_BIN"
# The file the OpenCode plugin writes when it loads (in the launcher's folder).
ENV_LOADED = "SPANVISOR_OPENCODE_LOADED"
LOADED = "opencode-plugin-loaded"


def asset(*parts: str) -> bytes:
    """A file spanvisor ships for a CLI (``spanvisor assets export`` writes them out too)."""
    return resources.files("spanvisor").joinpath("_assets", *parts).read_bytes()


def _private(where: str | None) -> str:
    if where is not None:
        return where
    made = tempfile.mkdtemp(prefix="spanvisor-run-")
    atexit.register(shutil.rmtree, made, True)
    return made


def _spanvisor(env: dict[str, str]) -> None:
    """The plugin and the hook run ``spanvisor``: this install's, when the
    CLI's ``PATH`` has none (the launcher's gate puts its client first)."""
    if shutil.which("spanvisor", path=env.get("PATH")) is None and not env.get(ENV_BIN):
        env[ENV_BIN] = shutil.which("spanvisor") or str(Path(sys.executable).with_name("spanvisor"))


def gate(cli: str, argv: list[str], env: dict[str, str], where: str | None) -> tuple[list[str] | None, str | None]:
    """``argv`` and ``env`` with spanvisor's gate given to OpenCode or Cline;
    what to tell the user (None: nothing). No ``argv``: the CLI must not
    start (the gate cannot be given; the text says why)."""
    if cli not in ("opencode", "cline"):
        return argv, "--gate gives OpenCode and Cline the gate; set the hook in this CLI's settings instead"
    folder = _private(where)
    _spanvisor(env)
    if cli == "opencode":
        path = os.path.join(folder, PLUGIN[1])
        with open(path, "wb") as f:
            f.write(asset(*PLUGIN))
        env[ENV_LOADED] = os.path.join(folder, LOADED)
        given = env.get("OPENCODE_CONFIG_CONTENT")
        env["OPENCODE_CONFIG_CONTENT"], kept = _with_plugin(given, Path(path).as_uri())
        return argv, None if kept else "OPENCODE_CONFIG_CONTENT is not a JSON object: the gate's plugin replaces it"
    return _cline_hook(argv, env)


def _cline_hook(argv: list[str], env: dict[str, str]) -> tuple[list[str] | None, str | None]:
    """Cline 3.0.65 runs its ``PreToolUse`` hook from ``~/.cline/hooks`` only:
    a hook given with ``--hooks-dir`` is never run (measured: every call ran).
    So ``--gate`` checks that the user's hook is spanvisor's and refuses to
    start Cline when it is not (None: what to say instead)."""
    home = env.get("HOME") or os.path.expanduser("~")
    path = os.path.join(home, ".cline", "hooks", CLINE_HOOK[1])
    try:
        with open(path, "rb") as f:
            ours = f.read() == asset(*CLINE_HOOK)
        runnable = os.access(path, os.X_OK)
    except OSError:
        ours = runnable = False
    if ours and runnable:
        return argv, None
    why = "is not spanvisor's" if os.path.exists(path) else "is missing"
    return None, (
        f"--gate: Cline runs its PreToolUse hook from {path} only, which {why}"
        f"{'' if runnable or not ours else ' (not executable)'}: Cline would run every tool ungated, so it is not "
        "started. `spanvisor assets export DIR`, then copy DIR/cline/PreToolUse there (chmod +x), and "
        "TaskStart, TaskComplete, TaskError, TaskCancel and SessionShutdown beside it for its name and its ends "
        "without the launcher"
    )


def _with_plugin(given: str | None, uri: str) -> tuple[str, bool]:
    """The user's ``OPENCODE_CONFIG_CONTENT`` (JSON) with the plugin added;
    whether the user's own was kept (False: it was no JSON object)."""
    doc: dict[str, object] = {}
    kept = True
    if given and given.strip():
        try:
            parsed = json.loads(given)
        except ValueError:
            parsed = None
        kept = isinstance(parsed, dict)
        if isinstance(parsed, dict):
            doc = parsed
    plugins = doc.get("plugin")
    listed = [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []
    doc["plugin"] = [*listed, uri] if uri not in listed else listed
    return json.dumps(doc), kept


__all__ = ["ENV_LOADED", "LOADED", "asset", "gate"]
