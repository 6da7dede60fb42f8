"""``spanvisor assets list | export DIR`` through the CLI's own entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from spanvisor.cli.assets import hook_setups
from spanvisor.cli.main import main

from .layout import EXPORTED, ROOT, repo_files


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(tmp_path / "data"))

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def test_export_writes_every_asset_and_a_second_run_changes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "assets"
    code, out, err = cli("assets", "export", str(dest))
    assert code == 0, err
    expected = {
        (dest / target / sub if sub else dest / target): data
        for rel, target in EXPORTED
        for sub, data in repo_files(rel).items()
    }
    expected |= {dest / rel: data for rel, data, _ in hook_setups()}  # each CLI's hook settings
    written = {p for p in dest.rglob("*") if p.is_file()}
    assert written == set(expected)
    assert all(p.read_bytes() == data for p, data in expected.items())
    assert f"wrote {len(expected)} file(s)" in out
    for hint in ("/etc/grafana/provisioning", "/var/lib/grafana/dashboards/spanvisor", "/etc/prometheus/rules"):
        assert hint in out

    code, out, _ = cli("assets", "export", str(dest))
    assert code == 0 and f"wrote 0 file(s) to {dest} ({len(expected)} already current)" in out


def test_export_keeps_a_changed_file_unless_forced(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "assets"
    assert cli("assets", "export", str(dest))[0] == 0
    edited = dest / "collector-config" / "gateway.yaml"
    edited.write_text("# my own gateway\n")
    other = dest / "grafana" / "dashboards" / "agents-overview.json"
    other.unlink()

    code, _, err = cli("assets", "export", str(dest))
    assert code == 1 and str(edited) in err and "--force" in err
    assert edited.read_text() == "# my own gateway\n"
    assert not other.exists()  # nothing at all was written

    code, out, _ = cli("assets", "export", "--force", str(dest))
    assert code == 0 and "wrote 2 file(s)" in out
    assert edited.read_bytes() == (ROOT / "collector-config" / "gateway.yaml").read_bytes()
    assert other.exists()


def test_list_names_each_file_and_where_it_goes(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("assets", "list")
    assert code == 0
    assert "collector-config/gateway.yaml" in out and "alertmanager/alertmanager-example.yml" in out
    assert "prometheus/rules/spanvisor-rules.yml" in out
