"""``spanvisor run --gate``: the gate the launcher gives a CLI whose
settings cannot name spanvisor's hook (its adapter's
:meth:`~spanvisor.clis.adapter.Adapter.give_gate`: OpenCode gets the
plugin, Cline's own hook is checked). The gate runs ``spanvisor hook
<cli>``, which the launcher's ``PATH`` makes its own warm gate.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from spanvisor.clis import registry

ENV_BIN = "SPANVISOR_BIN"


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
    """The gate runs ``spanvisor``: this install's, when the CLI's ``PATH``
    has none (the launcher's gate puts its client first)."""
    if shutil.which("spanvisor", path=env.get("PATH")) is None and not env.get(ENV_BIN):
        env[ENV_BIN] = shutil.which("spanvisor") or str(Path(sys.executable).with_name("spanvisor"))


def gate(
    cli: str, argv: list[str], env: dict[str, str], where: str | None
) -> tuple[list[str] | None, str | None, str | None]:
    """``argv`` and ``env`` with spanvisor's gate given to the CLI; what to
    tell the user (None: nothing); the file the gate writes when it loads
    (None: nothing to check). No ``argv``: the CLI must not start (the gate
    cannot be given; the text says why)."""
    adapter = registry.need(cli)
    if not adapter.gives_gate:
        takers = [a.title for a in registry.every() if a.gives_gate]
        named = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 1 else takers) or "no CLI"
        return argv, f"--gate gives {named} the gate; set the hook in this CLI's settings instead", None
    folder = _private(where)
    _spanvisor(env)
    return adapter.give_gate(argv, env, folder) or (argv, None, None)


__all__ = ["ENV_BIN", "asset", "gate"]
