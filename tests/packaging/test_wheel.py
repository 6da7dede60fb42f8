"""The wheel a user installs: what it holds, and that it works without the repository.

The wheel is built from a copy of the working tree (so the build leaves
nothing in the checkout) with pip, as a user would (``pip wheel``; the build
backend comes from the package index). Installed here means unpacked and put
first on ``PYTHONPATH``: the venv's dependencies are used, this checkout's
code is not (each run checks where ``spanvisor`` was imported from).
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .deps import imported_distributions, normalize, provided_by_meta
from .layout import ASSET_SOURCES, EXPORTED, ROOT, repo_files

SKIP_DIRS = {".venv", ".git", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIP_DIRS |= {"node_modules", ".collector", ".data", ".hypothesis", ".bench-peers", ".clis-latest"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(600)]


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")}


def _copy_tree(dest: Path) -> None:
    """What the checkout holds, as a clone has it: the files git knows
    (tracked, or new and not ignored) when it is a git checkout, without the
    ignored ones (the npm packages of the CLI tests alone are 2.7 GB);
    otherwise the tree without the known build and cache folders."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0 or not (ROOT / ".git").exists():
        shutil.copytree(ROOT, dest, symlinks=True, ignore=_ignore)
        return
    for rel in sorted({r for r in listed.stdout.decode().split("\0") if r}):
        source = ROOT / rel
        target = dest / rel
        if not os.path.lexists(source):
            continue  # deleted in the working tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


# Slow by design: the wheel is built once for the file (pip wheel), in the
# first test's setup.
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    # symlinks=True: src/spanvisor/_assets is links, and the build must follow them itself.
    _copy_tree(src)
    out = tmp / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(out), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    # The copy is only the build's input: gone before the tests, so a run
    # does not keep a second checkout in pytest's temporary folders.
    shutil.rmtree(src, ignore_errors=True)
    assert build.returncode == 0, build.stdout + build.stderr
    [whl] = out.glob("spanvisor-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def run_installed(
    site: Path, *args: str, cwd: Path, timeout: float = 120, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "SPANVISOR_DATA_DIR": str(cwd / "data"), **extra_env}
    env.pop("SLACK_BOT_TOKEN", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _metadata(z: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(z.read(name).decode())


def test_the_wheel_carries_every_asset_byte_for_byte(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for rel, inside in ASSET_SOURCES.items():
            expected = repo_files(rel)
            assert expected, rel
            for sub, data in expected.items():
                member = f"{inside}/{sub}" if sub else inside
                assert member in names, f"{member} is not in the wheel"
                assert z.read(member) == data, f"{member} differs from {rel}/{sub}"
        # No link made it in as a link: every asset member has content.
        assert all(z.getinfo(n).file_size > 0 for n in names if "/_assets/" in n)


def test_the_wheel_has_the_license_urls_and_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        licenses = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and z.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        meta = _metadata(z)
        [eps_name] = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        eps = z.read(eps_name).decode()
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert meta["License-Expression"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    assert "spanvisor = spanvisor.cli.entry:main" in eps
    section = eps.split("[spanvisor.commands]", 1)[1].split("\n\n", 1)[0]
    assert "assets = spanvisor.cli.assets:register" in section
    assert "postgres = spanvisor_postgres.cli:register" in section


def test_every_imported_distribution_is_a_declared_requirement(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta = _metadata(z)
    required = {
        normalize(r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip())
        for r in meta.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    missing = {d for d in imported_distributions() if d not in required and not provided_by_meta(d, required)}
    assert not missing, f"imported but not in the wheel's Requires-Dist: {sorted(missing)}"


@pytest.fixture(scope="module")
def exported(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    work = tmp_path_factory.mktemp("export")
    where = run_installed(installed, "-c", "import spanvisor; print(spanvisor.__file__)", cwd=work)
    assert where.stdout.strip().startswith(str(installed)), where.stdout + where.stderr
    out = run_installed(installed, "-m", "spanvisor.cli", "assets", "export", str(work / "assets"), cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    yield work / "assets", out.stdout


def test_the_installed_wheel_exports_its_assets_ready_to_mount(exported: tuple[Path, str]) -> None:
    dest, stdout = exported
    for rel, target in EXPORTED:
        for sub, data in repo_files(rel).items():
            path = dest / target / sub if sub else dest / target
            assert path.is_file(), path
            assert path.read_bytes() == data, path
    assert "grafana/provisioning/: mount as /etc/grafana/provisioning" in stdout


def test_the_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    # The console sink alone (what every install has), found through the wheel's entry points.
    demo = run_installed(
        installed,
        "-m",
        "spanvisor.cli",
        "demo",
        "--fast",
        cwd=tmp_path,
        timeout=180,
        SPANVISOR_SINKS="console",
        SPANVISOR_CONSOLE_COLOR="never",
    )
    out = demo.stdout + demo.stderr
    assert demo.returncode == 0, out
    assert "into sinks: console" in out and "dropped 0" in out, out
    assert "sprocket" in out and "gauge" in out and "rivet" in out
