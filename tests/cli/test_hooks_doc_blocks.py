"""docs/reference/coding-agents-hooks.md shows the JSON a hook receives and the
gate's answer to it: the block runs as printed, with the doc's own policy,
and answers what its comment says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "coding-agents-hooks.md"
BIN = Path(sys.executable).parent


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_the_hook_input_block_gets_the_answer_it_shows(tmp_path: Path) -> None:
    policy = next(b for b in _blocks("toml") if 'name = "no-force-push"' in b)
    (tmp_path / "policy.toml").write_text(policy)
    block = next(b for b in _blocks("sh") if "spanvisor hook claude-code --policy policy.toml" in b)
    command, _, shown = block.partition("\n# ")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        SPANVISOR_HOOK_DELIVERY="off",  # the audit note stays in the spool: no receiver here
        SPANVISOR_HOOK_SPOOL=str(tmp_path / "spool"),
        SPANVISOR_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    out = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == shown.strip(), (out.stdout, out.stderr)
