"""Every code block of README.md and of the guides (docs/guides/) works as
printed: each page's blocks run in order in a scratch folder, as a reader
pastes them (tests/docs/blocks.py says how, and how a block that cannot run
here is marked and why).

A page that runs a Collector (``<!-- test-page: needs otelcol-contrib -->``)
gets the one built for the tests first on its PATH under that name.

Not run, each marked on its page with the reason: ``make demo`` and
``make test`` (the demo's tests and this suite are those), ``pip install``
(no network), and what needs a Slack workspace, a coding-agent CLI with its
model account, Docker or a Grafana.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.build import as_otelcol_contrib
from tests.conftest import require
from tests.conftest_pg import scratch_dir
from tests.docs.blocks import ROOT, PageRun, parse

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The page's folder. Not under pytest's basetemp: a pytest session
    starting meanwhile resets /tmp/pytest-of-<user> to 0700, and an embedded
    PostgreSQL the page starts (a user of its own when we run as root) would
    lose its way to its files (tests/conftest_pg.py does the same)."""
    path = Path(tempfile.mkdtemp(prefix="spanvisor-docs-", dir=scratch_dir()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Slow by design: every block of a page runs as printed, as real processes
# (the demo, zero-code instrumentation, serve); getting-started is the longest.
@pytest.mark.timeout_s(600)
@pytest.mark.parametrize("page", PAGES, ids=[p.stem if p.parent.name == "guides" else p.name for p in PAGES])
def test_every_block_of_the_page_works_as_printed(page: Path, scratch: Path) -> None:
    run = PageRun(page, scratch)
    for tool in run.needs:
        if tool == "otelcol-contrib":
            # The Collector built for the tests (tests/collector/build.py), under
            # the name the docs give the contrib distribution: it has every
            # component the shipped configs use, at the same release.
            folder = as_otelcol_contrib(scratch / "collector-bin")
            run.env["PATH"] = f"{folder}{os.pathsep}{run.env['PATH']}"
        else:
            require(tool)
    run.run()
    assert run.ran, f"{page.name}: no block ran"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem if p.parent.name == "guides" else p.name for p in PAGES])
def test_blocks_that_do_not_run_are_few_and_say_why(page: Path) -> None:
    blocks, _ = parse(page)
    skipped = [b for b in blocks if b.get("skip") is not None]
    for b in skipped:
        assert len((b.get("skip") or "").split()) >= 3, f"{b.where}: say why it does not run"
    assert len(skipped) * 2 <= len(blocks), f"{page.name}: most blocks are skipped: {[b.where for b in skipped]}"


def test_the_runner_reads_directives_and_fences(tmp_path: Path) -> None:
    page = tmp_path / "sample.md"
    page.write_text(
        "<!-- test-page: ports 4320 -->\n"
        "<!-- test: file hello.py -->\n"
        "```python\nprint('hello from 4320')\n```\n\n"
        "Some text.\n\n"
        "<!-- test: expect hello from -->\n"
        "<!-- test: absent 4320 -->\n"
        "```sh\npython hello.py\n```\n\n"
        "<!-- test: output -->\n"
        "```text\nhello … \n```\n\n"
        "<!-- test: skip needs a Slack workspace -->\n"
        "```sh\nexit 1\n```\n\n"
        "  ```toml\n  a = 1\n  ```\n",
        encoding="utf-8",
    )
    blocks, page_directives = parse(page)
    assert [b.lang for b in blocks] == ["python", "sh", "text", "sh", "toml"]
    assert page_directives == ["ports 4320"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = PageRun(page, scratch)
    run.run()
    assert len(run.ran) == 3 and len(run.skipped) == 1
