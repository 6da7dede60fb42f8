"""``spanvisor check`` finds an OpenCode gate plugin that OpenCode could not
load (OpenCode then runs every tool ungated, saying so only in its log):
an entry naming a file that is gone is a problem (exit 2), a file that is
not this spanvisor's plugin a warning, a ``spanvisor`` the plugin cannot
run a problem; the plugin as ``spanvisor assets export`` writes it passes.
No entry naming the plugin: nothing said."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spanvisor.clis.opencode import ADAPTER as OPENCODE
from spanvisor.clis.opencode_shape import PLUGIN_FILE
from spanvisor.clis.opencode_shape import check as co
from spanvisor.launcher.gate_setup import asset
from tests.cli.test_policy_cli import spanvisor


def _home(tmp_path: Path, plugin: str | None) -> dict[str, str]:
    home = tmp_path / "home"
    config = home / ".config" / "opencode"
    config.mkdir(parents=True)
    doc = {"model": "x/y", **({"plugin": [plugin]} if plugin else {})}
    (config / "opencode.json").write_text(json.dumps(doc))
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "SPANVISOR_DATA_DIR": str(tmp_path / "d")}


def test_a_plugin_entry_whose_file_is_gone_fails_the_check(tmp_path: Path) -> None:
    gone = tmp_path / "old-venv" / "spanvisor-gate.js"
    got = spanvisor("check", **_home(tmp_path, gone.as_uri()))
    assert got.returncode == 2, got.stdout + got.stderr
    assert f"OpenCode's gate plugin {gone}" in got.stdout and "UNGATED" in got.stdout, got.stdout


def test_the_exported_plugin_passes_and_a_stale_one_is_a_warning(tmp_path: Path) -> None:
    plugin = tmp_path / "spanvisor-gate.js"
    plugin.write_bytes(asset("opencode", PLUGIN_FILE))
    env = _home(tmp_path, plugin.as_uri())
    env["SPANVISOR_BIN"] = str(Path(sys.executable).with_name("spanvisor"))
    bad, warned, ok = co.problems(OPENCODE, env, tmp_path)
    assert (bad, warned) == ([], [])
    assert ok == [f"OpenCode's gate plugin {plugin} ({tmp_path / 'home' / '.config' / 'opencode' / 'opencode.json'})"]
    plugin.write_text("// an older plugin\n")
    bad, warned, _ = co.problems(OPENCODE, env, tmp_path)
    assert bad == [] and len(warned) == 1 and "differs from this spanvisor's" in warned[0]


def test_a_plugin_with_no_spanvisor_to_run_is_a_problem_and_no_plugin_is_silence(tmp_path: Path) -> None:
    folder = tmp_path / "home" / ".config" / "opencode" / "plugin"
    env = _home(tmp_path, None)
    assert co.problems(OPENCODE, env, tmp_path) == ([], [], [])
    folder.mkdir(parents=True)
    (folder / "spanvisor-gate.js").write_bytes(asset("opencode", PLUGIN_FILE))
    env["SPANVISOR_BIN"] = str(tmp_path / "no-such-spanvisor")
    bad, _, ok = co.problems(OPENCODE, env, tmp_path)
    assert len(ok) == 1 and len(bad) == 1 and "it blocks every tool call" in bad[0], bad


def test_the_copy_gate_install_locked_in_the_managed_folder_passes_and_a_changed_one_is_a_warning(
    tmp_path: Path,
) -> None:
    from spanvisor.cli import gate_install
    from spanvisor.clis import registry

    managed = tmp_path / "managed"
    env = {**_home(tmp_path, None), "OPENCODE_TEST_MANAGED_CONFIG_DIR": str(managed)}
    binary = str(Path(sys.executable).with_name("spanvisor"))
    command = gate_install.command_for("opencode", None, "/etc/spanvisor/hook-policy.toml", binary)
    gate_install.install_one(registry.need("opencode"), managed / "opencode.json", command, 900)
    bad, warned, ok = co.problems(OPENCODE, env, tmp_path)
    assert (bad, warned) == ([], []), (bad, warned)
    assert ok == [
        f"OpenCode's gate plugin {managed / 'spanvisor-gate.js'} ({managed / 'opencode.json'}), locked: {command}"
    ]
    plugin = managed / "spanvisor-gate.js"
    locked = plugin.read_text()
    plugin.write_text(locked.replace('"--locked", ', ""))
    bad, warned, _ = co.problems(OPENCODE, env, tmp_path)
    assert len(warned) == 1 and "it is not --locked" in warned[0], warned
    plugin.write_text(locked.replace("LIMIT_S", "600", 1))
    bad, warned, _ = co.problems(OPENCODE, env, tmp_path)
    assert len(warned) == 1 and "differs from this spanvisor's" in warned[0], warned


def test_kilos_plugin_is_read_in_its_own_folders_and_a_copy_locked_to_opencode_is_a_problem(tmp_path: Path) -> None:
    """Kilo, a fork of OpenCode, loads the same plugin from its own config
    (``~/.config/kilo/kilo.json``; its managed folder ``/etc/kilo``): the
    same look, and a locked copy whose CLI is OpenCode's (its
    ``opencode.json``, which Kilo reads too) would ask for the wrong CLI's
    rules there."""
    from spanvisor.cli import gate_install
    from spanvisor.clis import registry

    kilo = registry.need("kilo")
    home = tmp_path / "home"
    (home / ".config" / "kilo").mkdir(parents=True)
    plugin = tmp_path / "spanvisor-gate.js"
    plugin.write_bytes(asset("opencode", PLUGIN_FILE))
    config = home / ".config" / "kilo" / "kilo.json"
    config.write_text(json.dumps({"plugin": [plugin.as_uri()]}))
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env["SPANVISOR_BIN"] = str(Path(sys.executable).with_name("spanvisor"))
    env["KILO_TEST_MANAGED_CONFIG_DIR"] = str(tmp_path / "managed")
    assert co.problems(kilo, env, tmp_path) == ([], [], [f"Kilo's gate plugin {plugin} ({config})"])
    assert co.problems(OPENCODE, env, tmp_path) == ([], [], []), "OpenCode reads none of Kilo's folders"
    binary = str(Path(sys.executable).with_name("spanvisor"))
    command = gate_install.command_for("opencode", None, "/etc/spanvisor/hook-policy.toml", binary)
    gate_install.install_one(registry.need("opencode"), tmp_path / "managed" / "opencode.json", command, 900)
    # Kilo reads opencode.json too: OpenCode's locked copy in its folder would ask for OpenCode's rules.
    bad, _, _ = co.problems(kilo, env, tmp_path)
    assert len(bad) == 1 and "is locked to another CLI" in bad[0], bad


def test_a_copy_an_earlier_spanvisor_locked_still_decides_and_an_unlocked_one_in_the_managed_folder_is_warned(
    tmp_path: Path,
) -> None:
    """A copy locked before the plugin knew Kilo (its CLI in its arguments,
    no ``const CLI`` line) still runs its own spanvisor: a warning to write
    the current one, not the problems of a plugin the environment decides;
    for Kilo it would ask OpenCode's rules: a problem. The shipped plugin in
    the managed folder runs what the agent's environment names: a warning."""
    from spanvisor.clis import registry

    managed = tmp_path / "managed"
    managed.mkdir()
    earlier = (
        _shipped_text()
        .replace(
            'const BIN = process.env.SPANVISOR_BIN || "spanvisor"',
            'const BIN = "/opt/spanvisor/bin/spanvisor" // locked by spanvisor gate install',
        )
        .replace(
            '["hook", CLI, "--cli-timeout", String(LIMIT_S)]',
            '["hook", "opencode", "--cli-timeout", String(LIMIT_S), "--locked"]',
        )
    )
    (managed / "spanvisor-gate.js").write_text(earlier)
    (managed / "opencode.json").write_text(json.dumps({"plugin": ["./spanvisor-gate.js"]}))
    env = {**_home(tmp_path, None), "OPENCODE_TEST_MANAGED_CONFIG_DIR": str(managed)}
    env["KILO_TEST_MANAGED_CONFIG_DIR"] = str(managed)
    bad, warned, _ = co.problems(OPENCODE, env, tmp_path)
    assert bad == [] and len(warned) == 1 and "locked by an earlier spanvisor: it still decides" in warned[0], warned
    bad, _, _ = co.problems(registry.need("kilo"), env, tmp_path)
    assert len(bad) == 1 and "for OpenCode" in bad[0], bad
    (managed / "spanvisor-gate.js").write_bytes(asset("opencode", PLUGIN_FILE))
    env["SPANVISOR_BIN"] = str(Path(sys.executable).with_name("spanvisor"))
    _, warned, _ = co.problems(OPENCODE, env, tmp_path)
    assert len(warned) == 1 and "in its managed folder is not locked" in warned[0], warned


def _shipped_text() -> str:
    return asset("opencode", PLUGIN_FILE).decode()
