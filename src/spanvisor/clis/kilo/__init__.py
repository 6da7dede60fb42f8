"""Kilo (``@kilocode/cli``, ``kilo``): a fork of OpenCode that loads the
same plugins (:mod:`spanvisor.clis.opencode_shape`); spanvisor's plugin
is its hook, and tells Kilo from OpenCode by ``KILO_PID``.

Its config: ``KILO_CONFIG_CONTENT``, ``~/.config/kilo``, a repository's
``.kilo`` and ``.kilocode``, each read for ``kilo.json(c)`` and
``opencode.json(c)``, and its managed folder ``/etc/kilo``
(``KILO_TEST_MANAGED_CONFIG_DIR``): read from its 7.7 bundle.
"""

from __future__ import annotations

from spanvisor.clis.opencode_shape import OpenCodeShape


class Kilo(OpenCodeShape):
    name = "kilo"
    title = "Kilo"
    binaries = ("kilo", "kilocode")
    services = ("kilo",)
    namespace = "kilo"
    gate_assets = (
        "spanvisor",
        "_assets/opencode",
        "Kilo's gate plugin (OpenCode's, which Kilo loads): name its file:// URI in kilo.json's plugin list "
        "(spanvisor check looks)",
    )
    env_prefix = "KILO"
    config_folder = "kilo"
    project_folders = (".kilo", ".kilocode")
    config_files = ("kilo.json", "kilo.jsonc", "opencode.json", "opencode.jsonc")
    managed_folder = "/etc/kilo"
    plugin_types = "@kilocode/plugin"


ADAPTER = Kilo()
