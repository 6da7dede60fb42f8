"""The README's agent snippets, read from the README itself and run as
pasted, each in a fresh Python process with the default configuration
(console sink, a temporary data dir).

* "Use it from an agent": the provider block and the helpers block, in one
  file, show the task in the console (before, the block never set the global
  provider: it printed nothing and exited 0). The helpers block alone warns
  once that the task is not recorded.
* "Asking a person": run with the ``SPANVISOR_CONTROL_LISTEN`` line the
  README gives, and answered with the command ``spanvisor approvals``
  prints, pasted into a shell (before, nothing in-process could answer it:
  it waited out its 900 s).
* "The programmatic API": runs and its asserts hold.
* The zero-code line (``opentelemetry-instrument``) with the helpers block
  as its agent, and the ``spanvisor assets`` lines.

Not run here: ``make demo``/``make test`` (the fresh-clone check runs
them), ``pip install`` (no network) and ``spanvisor serve`` (its own tests).

The one change to what is pasted: the README's port 4320 becomes a free one,
so parallel test processes do not collide.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent


def _section(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section("Use it from an agent"), re.S)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    # The venv first on PATH, as after `source .venv/bin/activate`.
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", SPANVISOR_DATA_DIR=str(tmp / "data"))
    env.update(SPANVISOR_SINKS="console", PYTHONUNBUFFERED="1", **extra)
    return env


def _run(tmp: Path, name: str, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp / name).write_text(code)
    return subprocess.run(
        [sys.executable, name], cwd=tmp, env=_env(tmp, **env), capture_output=True, text=True, timeout=120, check=False
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_provider_and_helpers_blocks_show_the_task(tmp_path: Path) -> None:
    setup, helpers = _blocks("python")[:2]
    done = _run(tmp_path, "agent.py", setup + "\n" + helpers)
    assert done.returncode == 0, done.stderr
    assert "Diagnose F47" in done.stdout and "complete" in done.stdout, done.stdout
    assert "Routed to siemens SME" in done.stdout and "report.md" in done.stdout
    assert "not recorded" not in done.stderr


def test_the_helpers_without_a_provider_say_so_once(tmp_path: Path) -> None:
    helpers = _blocks("python")[1]
    twice = helpers + "\n" + helpers.replace("from spanvisor.agent import task\n", "")
    done = _run(tmp_path, "agent.py", twice)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("no OpenTelemetry SDK TracerProvider is set") == 1, done.stderr


def test_the_programmatic_api_block_runs(tmp_path: Path) -> None:
    block = _blocks("python")[3]
    done = _run(tmp_path, "test_agent.py", block)
    assert done.returncode == 0, done.stderr


def test_asking_a_person_is_answered_from_a_terminal(tmp_path: Path) -> None:
    agent = _blocks("python")[2]
    shell = next(b for b in _blocks("sh") if "SPANVISOR_CONTROL_LISTEN" in b)
    port = str(_free_port())
    start, ask = [line.split("#")[0].strip().replace("4320", port) for line in shell.strip().splitlines()]
    (tmp_path / "migrate.py").write_text(agent)
    env = _env(tmp_path)
    proc = subprocess.Popen(
        ["bash", "-c", start], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        answer = ""
        deadline = time.monotonic() + 60
        while not answer and time.monotonic() < deadline:
            listed = subprocess.run(
                ["bash", "-c", ask], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
            )
            answer = next((ln for ln in listed.stdout.splitlines() if " approve " in ln), "")
            if not answer:
                time.sleep(0.3)
        assert answer, "spanvisor approvals never listed the request"
        command = answer.split("   (or:")[0].strip()
        approved = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert approved.returncode == 0, approved.stdout + approved.stderr
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "Applied orders-2" in out and "complete" in out, out


def _sh_block(containing: str) -> list[str]:
    """The command lines of the README's sh block that holds ``containing``, comments cut."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if containing in b]
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def test_the_zero_code_line_supervises_the_helpers_agent(tmp_path: Path) -> None:
    """`OTEL_TRACES_EXPORTER=otlp,spanvisor opentelemetry-instrument python
    agent.py`, with the helpers block as agent.py and nothing listening for
    OTLP (the otlp exporter fails; spanvisor's does its work)."""
    [line] = _sh_block("OTEL_TRACES_EXPORTER=")
    (tmp_path / "agent.py").write_text(_blocks("python")[1])
    env = _env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{_free_port()}", OTEL_EXPORTER_OTLP_TIMEOUT="1")
    done = subprocess.run(
        ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Diagnose F47" in done.stdout and "complete" in done.stdout, done.stdout + done.stderr


def test_the_assets_lines_list_and_write_the_files(tmp_path: Path) -> None:
    listed, export = _sh_block("spanvisor assets list")
    env = _env(tmp_path)
    for line in (listed, export):
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
    written = [p for p in (tmp_path / "spanvisor-assets").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written) and any(p.suffix in (".yml", ".yaml") for p in written)
