"""``spanvisor run --gate`` for a CLI of OpenCode's shape: its settings name
no hook, so the launcher gives it spanvisor's plugin through
``<PREFIX>_CONFIG_CONTENT`` (``{"plugin": ["file://…"]}``, merged into any
of the user's own; copied from the package into the launcher's private
folder). The plugin writes a file when it loads (``SPANVISOR_GATE_LOADED``):
the CLI runs tools ungated when a plugin fails to load, and the launcher
says so loudly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spanvisor.clis.opencode_shape import OpenCodeShape

# The file the plugin writes when it loads (in the launcher's folder).
ENV_LOADED = "SPANVISOR_GATE_LOADED"
LOADED = "plugin-loaded"


def give(
    cli: OpenCodeShape, plugin: str, argv: list[str], env: dict[str, str], folder: str
) -> tuple[list[str] | None, str | None, str]:
    """``argv`` with the plugin's text (``plugin``) given in ``env``; what
    to say; the file the plugin writes when it loads."""
    from spanvisor.clis.opencode_shape import PLUGIN_FILE

    path = os.path.join(folder, PLUGIN_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(plugin)
    marker = env[ENV_LOADED] = os.path.join(folder, LOADED)
    content = f"{cli.env_prefix}_CONFIG_CONTENT"
    env[content], kept = with_plugin(env.get(content), Path(path).as_uri())
    return argv, None if kept else f"{content} is not a JSON object: the gate's plugin replaces it", marker


def with_plugin(given: str | None, uri: str) -> tuple[str, bool]:
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
