"""``spanvisor run --gate`` for pi: its settings name no hook, so the
launcher gives it spanvisor's extension with ``-e`` (copied from the
package into the launcher's private folder), which pi runs before the
repository's and the user's. The extension writes a file when it loads
(``SPANVISOR_GATE_LOADED``): pi would not start with an extension that fails
to load, and the launcher says so loudly if a tool ran without it."""

from __future__ import annotations

import os

ENV_LOADED = "SPANVISOR_GATE_LOADED"
LOADED = "pi-extension-loaded"


def give(extension: str, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, str]:
    from spanvisor.clis.pi import EXTENSION_FILE

    path = os.path.join(folder, EXTENSION_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(extension)
    marker = env[ENV_LOADED] = os.path.join(folder, LOADED)
    return [argv[0], "-e", path, *argv[1:]], None, marker
