"""OpenCode: no command hooks; spanvisor's plugin is its hook
(:mod:`spanvisor.clis.opencode_shape`, which Kilo, a fork, shares).

Its config: ``OPENCODE_CONFIG_CONTENT``, ``~/.config/opencode``, a
repository's ``.opencode`` and ``opencode.json``, and its managed folder
``/etc/opencode`` (``OPENCODE_TEST_MANAGED_CONFIG_DIR``).
"""

from __future__ import annotations

from spanvisor.clis.opencode_shape import OpenCodeShape


class OpenCode(OpenCodeShape):
    name = "opencode"
    title = "OpenCode"
    binaries = ("opencode",)
    services = ("opencode",)
    namespace = "opencode"
    gate_assets = (
        "spanvisor",
        "_assets/opencode",
        "OpenCode's gate plugin: name its file:// URI in opencode.json's plugin list (spanvisor check looks)",
    )
    env_prefix = "OPENCODE"
    config_folder = "opencode"
    project_folders = (".opencode",)
    config_files = ("opencode.json", "opencode.jsonc")
    managed_folder = "/etc/opencode"
    plugin_types = "@opencode-ai/plugin"


ADAPTER = OpenCode()
