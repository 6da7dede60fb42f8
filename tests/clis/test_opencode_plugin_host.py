"""spanvisor's plugin for OpenCode and Kilo (one file: Kilo, a fork, loads
OpenCode's plugins) asks ``spanvisor hook <cli>`` for the CLI that loaded
it, told by the process id each sets in its own environment
(``OPENCODE_PID``, ``KILO_PID``): a variable inherited from another
process cannot match. Neither, or both, of its own blocks every call. Run
in node (the plugin needs nothing but node's own modules), the hook a
script that says what it was asked."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from spanvisor.clis.opencode_shape import PLUGIN_FILE, locked_plugin

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

DRIVER = """
const [plugin, kilo, opencode] = process.argv.slice(2)
const own = String(process.pid)
if (kilo === "own") process.env.KILO_PID = own
else if (kilo) process.env.KILO_PID = kilo
if (opencode === "own") process.env.OPENCODE_PID = own
else if (opencode) process.env.OPENCODE_PID = opencode
const m = await import(plugin)
const hooks = await m.SpanvisorGate({ directory: process.cwd() })
try {
  await hooks["tool.execute.before"]({ sessionID: "s1", tool: "bash", callID: "c1" }, { args: { command: "ls" } })
  console.log("RAN")
} catch (e) {
  console.log("BLOCKED " + e.message)
}
"""


def _run(tmp: Path, text: str, kilo: str, opencode: str) -> str:
    plugin = tmp / PLUGIN_FILE
    plugin.write_text(text)
    hook = tmp / "spanvisor"
    hook.write_text(f'#!/bin/sh\necho "$@" > {tmp}/asked\ncat > /dev/null\necho \'{{"decision": "allow"}}\'\n')
    hook.chmod(0o755)
    driver = tmp / "driver.mjs"
    driver.write_text(DRIVER)
    env = {"PATH": "/usr/bin:/bin", "SPANVISOR_BIN": str(hook), "HOME": str(tmp)}
    assert NODE is not None
    out = subprocess.run(
        [NODE, str(driver), plugin.as_uri(), kilo, opencode],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=60,
        check=False,
    )
    return out.stdout.strip() + out.stderr.strip()


def _shipped() -> str:
    import spanvisor

    return Path(spanvisor.__file__).parent.joinpath("_assets", "opencode", PLUGIN_FILE).read_text()


@pytest.mark.parametrize(
    ("kilo", "opencode", "asked"),
    [("own", "", "hook kilo"), ("", "own", "hook opencode"), ("1", "own", "hook opencode"), ("own", "1", "hook kilo")],
)
def test_the_cli_whose_own_process_id_it_finds_is_asked(tmp_path: Path, kilo: str, opencode: str, asked: str) -> None:
    assert _run(tmp_path, _shipped(), kilo, opencode) == "RAN"
    assert (tmp_path / "asked").read_text().startswith(asked + " --cli-timeout 600")


@pytest.mark.parametrize(("kilo", "opencode"), [("", ""), ("own", "own"), ("1", "1")])
def test_neither_or_both_blocks_every_call_and_asks_nothing(tmp_path: Path, kilo: str, opencode: str) -> None:
    said = _run(tmp_path, _shipped(), kilo, opencode)
    assert said.startswith("BLOCKED spanvisor's gate plugin cannot tell which CLI loaded it"), said
    assert not (tmp_path / "asked").exists()


def test_a_locked_copy_asks_its_own_cli_whatever_the_environment_says(tmp_path: Path) -> None:
    hook = tmp_path / "spanvisor"
    text = locked_plugin(json.dumps(str(hook))[1:-1] + " hook kilo --locked --policy /etc/spanvisor/p.toml")
    assert _run(tmp_path, text, "", "own") == "RAN"
    assert (tmp_path / "asked").read_text().split() == [
        "hook",
        "kilo",
        "--cli-timeout",
        "600",
        "--locked",
        "--policy",
        "/etc/spanvisor/p.toml",
    ]
