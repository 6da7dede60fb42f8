"""The session's diff (``launcher/diff.py``), with real git:

* against the commit the session started on: a change the agent committed,
  one it left in the tree and a new file all show; an ignored file does
  not; a binary new file is named only; the commit is read from git's files
  before the CLI starts (loose, packed, a worktree's);
* ``spanvisor run`` sends it on the task before its end: the receiver's
  ``DiffUpdated`` holds the CLI's work with a secret it wrote redacted;
  ``--no-diff`` sends none. A branch the agent switched to is said with
  it: the task started on ``main`` ends on the agent's branch.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from spanvisor.events import DiffUpdated
from spanvisor.gate import otlp
from spanvisor.launcher.diff import diff_of
from spanvisor.launcher.repo import head_commit
from spanvisor.spans import conventions as cv
from tests.cli.coding_harness import Serve, launch_claude
from tests.waiting import wait_until

SECRET = "ghp_" + "Z" * 36


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    return subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def _repo(root: Path) -> Path:
    work = root / "api"
    work.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "app.py").write_text("x = 1\n")
    (work / ".gitignore").write_text("build/\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "first", cwd=work)
    return work


def test_the_diff_is_against_the_sessions_first_commit(tmp_path: Path) -> None:
    work = _repo(tmp_path)
    base = head_commit(str(work))
    assert base == _git("rev-parse", "HEAD", cwd=work).strip()
    (work / "app.py").write_text("x = 2\n")
    _git("commit", "-qam", "the agent's commit", cwd=work)
    (work / "app.py").write_text("x = 3\n")  # and a change left in the tree
    (work / "new.py").write_text("y = 1\n")
    (work / "build").mkdir()
    (work / "build" / "out.txt").write_text("ignored\n")
    (work / "blob.bin").write_bytes(b"\0\1\2")
    assert base is not None
    read = diff_of(str(work), base)
    assert read is not None
    text, files = read
    assert "-x = 1\n+x = 3\n" in text  # against the first commit, not the agent's
    assert "+++ b/new.py\n@@ -0,0 +1,1 @@\n+y = 1\n" in text
    assert "Binary files /dev/null and b/blob.bin differ" in text
    assert "out.txt" not in text and files == 3


def test_the_first_commit_is_read_packed_and_in_a_worktree(tmp_path: Path) -> None:
    work = _repo(tmp_path)
    sha = _git("rev-parse", "HEAD", cwd=work).strip()
    _git("pack-refs", "--all", cwd=work)
    assert not (work / ".git" / "refs" / "heads" / "main").exists()
    assert head_commit(str(work)) == sha
    _git("worktree", "add", "-q", str(tmp_path / "wt"), "-b", "fix", cwd=work)
    assert head_commit(str(tmp_path / "wt")) == sha
    empty = tmp_path / "empty"
    empty.mkdir()
    _git("init", "-q", cwd=empty)
    assert head_commit(str(empty)) is None  # no commit yet: the watcher diffs against the empty tree


def test_the_launchers_names_are_the_conventions() -> None:
    assert (otlp.EVENT_DIFF, otlp.DIFF_TEXT, otlp.DIFF_FILES, otlp.DIFF_CLIPPED) == (
        cv.EVENT_DIFF,
        cv.DIFF_TEXT,
        cv.DIFF_FILES,
        cv.DIFF_CLIPPED,
    )


def _launch(serve: Serve, work: Path, tmp: Path, task: str, *options: str, then: str = "") -> None:
    does = f"echo 'x = 2' > app.py\necho 'TOKEN = \"{SECRET}\"' > settings.py" + then
    launch_claude(serve, work, tmp, task, does, *options)


def test_spanvisor_run_sends_the_sessions_diff_before_its_end(tmp_path: Path) -> None:
    work = _repo(tmp_path / "clone")
    serve = Serve(tmp_path / "serve")
    try:
        task = f"claude-code-{uuid.uuid4().hex[:8]}"
        _launch(serve, work, tmp_path, task, then="\ngit checkout -q -b fix/login")
        finished = wait_until(lambda: serve.finished(task), 120, "the launched task's end")
        events = serve.sink.for_task(task)
        assert (events[0].task.branch, finished.task.branch) == ("main", "fix/login")
        [diff] = [e for e in events if isinstance(e, DiffUpdated)]
        assert "-x = 1\n+x = 2\n" in diff.diff and "+++ b/settings.py" in diff.diff
        assert SECRET not in diff.diff and diff.files == 2 and not diff.clipped
        assert events.index(diff) < len(events) - 1  # before the end
        quiet = f"claude-code-{uuid.uuid4().hex[:8]}"
        _launch(serve, work, tmp_path, quiet, "--no-diff")
        wait_until(lambda: serve.finished(quiet), 120, "the second task's end")
        assert not [e for e in serve.sink.for_task(quiet) if isinstance(e, DiffUpdated)]
    finally:
        serve.close()


def test_nothing_the_agent_writes_into_the_repository_runs_or_is_read_outside_it(tmp_path: Path) -> None:
    """As the agent: a filter driver, an fsmonitor hook, an external diff and
    a textconv in the repository's config (and in a file it includes), a
    symlink to a file of the user's and a FIFO among the untracked files.
    Reading the diff runs none of the commands, reads no file outside the
    tree and never blocks."""
    work = _repo(tmp_path)
    base = head_commit(str(work))
    assert base is not None
    ran = tmp_path / "ran"
    touch = f"sh -c 'echo x >> {ran}; cat'"
    (tmp_path / "more.cfg").write_text(f'[filter "lfs2"]\n\tclean = {touch}\n\tprocess = {touch}\n')
    _git("config", "filter.evil.clean", touch, cwd=work)
    _git("config", "filter.evil.required", "true", cwd=work)
    _git("config", "core.fsmonitor", str(tmp_path / "monitor.sh"), cwd=work)
    _git("config", "diff.external", touch, cwd=work)
    _git("config", "diff.evil.textconv", touch, cwd=work)
    _git("config", "include.path", str(tmp_path / "more.cfg"), cwd=work)
    (tmp_path / "monitor.sh").write_text(f"#!/bin/sh\necho x >> {ran}\n")
    (tmp_path / "monitor.sh").chmod(0o755)
    (work / ".gitattributes").write_text("*.py filter=evil diff=evil\n*.txt filter=lfs2\n")
    (work / "app.py").write_text("x = 2\n")
    (work / "notes.txt").write_text("hello\n")
    secret = tmp_path / "home-secret"
    secret.write_text("the user's private file\n")
    (work / "link").symlink_to(secret)
    os.mkfifo(work / "pipe")
    read = diff_of(str(work), base, timeout_s=10)
    assert read is not None
    text, _ = read
    assert not ran.exists(), ran.read_text()
    assert "-x = 1\n+x = 2\n" in text and "+hello" in text
    assert "private file" not in text and f"+{secret}" in text  # the link's target, as git shows one
    assert "b/pipe" not in text


def test_a_submodules_own_config_runs_nothing_either(tmp_path: Path) -> None:
    """As the agent: a filter driver in a submodule's own config, which the
    top repository's settings do not name. The diff does not look inside
    the submodule, so nothing runs."""
    sub = _repo(tmp_path / "s")
    top = _repo(tmp_path / "t")
    _git("-c", "protocol.file.allow=always", "submodule", "-q", "add", str(sub), "sub", cwd=top)
    _git("commit", "-qm", "with its submodule", cwd=top)
    base = head_commit(str(top))
    assert base is not None
    ran = tmp_path / "ran"
    _git("config", "filter.evil.clean", f"sh -c 'echo x >> {ran}; cat'", cwd=top / "sub")
    (top / "sub" / ".gitattributes").write_text("* filter=evil\n")
    (top / "sub" / "app.py").write_text("x = 9\n")
    assert diff_of(str(top), base, timeout_s=10) is not None
    assert not ran.exists()
