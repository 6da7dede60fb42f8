"""A stand-in ``gh`` for the CLIs' pull request tests: ``gh pr create`` as
GitHub's CLI answers it (a progress line, then the new request's address),
with no network and no GitHub."""

from __future__ import annotations

from pathlib import Path

PR = "https://github.com/acme/api/pull/12"


def gh(tmp: Path) -> Path:
    """A folder in ``tmp`` holding the stand-in ``gh``: put it first on the CLI's PATH."""
    tools = tmp / "tools"
    tools.mkdir()
    (tools / "gh").write_text(f"#!/bin/sh\necho 'Creating pull request for fix/login into main'\necho '{PR}'\n")
    (tools / "gh").chmod(0o755)
    return tools
