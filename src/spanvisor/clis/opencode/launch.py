"""``spanvisor run --gate`` for OpenCode: its settings name no hook, so the
launcher gives it spanvisor's plugin through ``OPENCODE_CONFIG_CONTENT``
(``{"plugin": ["file://…"]}``, merged into any of the user's own; copied
from the package into the launcher's private folder). The plugin writes a
file when it loads (``SPANVISOR_GATE_LOADED``): OpenCode runs tools
ungated when a plugin fails to load, and the launcher says so loudly."""

from __future__ import annotations

import json
import os
from pathlib import Path

# The file the plugin writes when it loads (in the launcher's folder).
ENV_LOADED = "SPANVISOR_GATE_LOADED"
LOADED = "opencode-plugin-loaded"


def give(plugin: str, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, str]:
    """``argv`` with the plugin's text (``plugin``) given in ``env``; what
    to say; the file the plugin writes when it loads."""
    from spanvisor.clis.opencode import PLUGIN_FILE

    path = os.path.join(folder, PLUGIN_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(plugin)
    marker = env[ENV_LOADED] = os.path.join(folder, LOADED)
    env["OPENCODE_CONFIG_CONTENT"], kept = with_plugin(env.get("OPENCODE_CONFIG_CONTENT"), Path(path).as_uri())
    return argv, None if kept else "OPENCODE_CONFIG_CONTENT is not a JSON object: the gate's plugin replaces it", marker


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
