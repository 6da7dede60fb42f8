"""The repository a launched session works in (``launcher/repo.py``).

* Read from git's own files, without git: a clone's ``origin`` as
  ``owner/name`` whatever the URL's form, a worktree's common config, the
  folder's name without a remote, nothing outside a repository; never a
  credential the URL holds (a property over URLs).
* The branch a checkout is on (``agent.branch``): ``HEAD``'s branch, a
  worktree's own, none when detached or outside a repository.
* ``spanvisor run`` in a real git checkout names the task's repository and
  branch from its first record on, as the task shows it at its end; the
  operator's ``agent.repo`` in ``OTEL_RESOURCE_ATTRIBUTES`` wins; the CLI's
  resource (what the gate's rules on ``task.repo`` read) gets nothing from
  git.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.gate import otlp
from spanvisor.launcher.repo import branch_of, head_commit, place_of, repo_of
from spanvisor.spans import conventions as cv
from tests.cli.coding_harness import Serve, launch_claude
from tests.waiting import wait_until


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def _clone(root: Path, url: str | None) -> Path:
    work = root / "api"
    work.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=work)
    if url is not None:
        _git("remote", "add", "origin", url, cwd=work)
    return work


@pytest.mark.parametrize(
    ("url", "repo"),
    [
        ("git@github.com:acme/api.git", "acme/api"),
        ("https://x-access-token:ghp_s3cret@github.com/acme/api.git", "acme/api"),
        ("ssh://git@gitlab.example:2222/group/sub/api", "group/sub/api"),
        ("https://github.com/acme/api/?token=s3cret", "acme/api"),
        ("/srv/git/api.git", "api"),
        ("file:///srv/git/tools.git", "tools"),
    ],
)
def test_a_clone_names_its_origin(tmp_path: Path, url: str, repo: str) -> None:
    work = _clone(tmp_path, url)
    (work / "src" / "deep").mkdir(parents=True)
    assert repo_of(str(work)) == repo
    assert repo_of(str(work / "src" / "deep")) == repo  # from a folder inside it


def test_a_worktree_no_remote_and_no_repository(tmp_path: Path) -> None:
    work = _clone(tmp_path, "git@github.com:acme/api.git")
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "first", cwd=work)
    _git("worktree", "add", "-q", str(tmp_path / "wt"), "-b", "fix", cwd=work)
    assert (tmp_path / "wt" / ".git").is_file()
    assert repo_of(str(tmp_path / "wt")) == "acme/api"  # the common config's origin
    lone = _clone(tmp_path / "lone", None)
    assert repo_of(str(lone)) == "api"  # no remote: the folder's name
    plain = tmp_path / "plain"
    plain.mkdir()
    assert repo_of(str(plain)) is None


def test_the_branch_a_checkout_is_on(tmp_path: Path) -> None:
    work = _clone(tmp_path, "git@github.com:acme/api.git")
    assert branch_of(str(work)) == "main"  # no commit yet: HEAD names its branch all the same
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "first", cwd=work)
    _git("checkout", "-q", "-b", "fix/login", cwd=work)
    assert branch_of(str(work / ".git" / "..")) == "fix/login"
    _git("worktree", "add", "-q", str(tmp_path / "wt"), "-b", "wt-branch", cwd=work)
    assert branch_of(str(tmp_path / "wt")) == "wt-branch"  # a worktree's own HEAD
    assert place_of(str(tmp_path / "wt")) == {"agent.repo": "acme/api", "agent.branch": "wt-branch"}
    _git("checkout", "-q", "--detach", cwd=work)
    assert branch_of(str(work)) is None  # detached: on no branch
    assert place_of(str(work), "acme/mono") == {"agent.repo": "acme/mono"}  # the operator's repo wins
    (work / ".git" / "HEAD").write_text("ref: refs/heads/\x1b[31mred\n")
    assert branch_of(str(work)) == "[31mred"  # no control character reaches a sink
    plain = tmp_path / "plain"
    plain.mkdir()
    assert branch_of(str(plain)) is None and place_of(str(plain)) == {}


def test_a_fifo_or_a_device_the_agent_put_in_git_is_not_read(tmp_path: Path) -> None:
    """The launcher reads these before the CLI starts and while it runs: a
    FIFO would hang it (a read waits for a writer), a device never ends."""
    work = _clone(tmp_path, "git@github.com:acme/api.git")
    git = work / ".git"
    (git / "HEAD").unlink()
    os.mkfifo(git / "HEAD")
    (git / "config").unlink()
    (git / "config").symlink_to("/dev/zero")
    assert branch_of(str(work)) is None and head_commit(str(work)) is None
    assert repo_of(str(work)) == "api"  # no readable config: the folder's name
    assert place_of(str(work)) == {"agent.repo": "api"}


def test_the_first_remote_when_there_is_no_origin(tmp_path: Path) -> None:
    work = _clone(tmp_path, None)
    _git("remote", "add", "upstream", "https://github.com/acme/upstream-api.git", cwd=work)
    assert repo_of(str(work)) == "acme/upstream-api"


_part = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/@:?#[]\\\"'%"), min_size=1, max_size=40
)


@settings(max_examples=150, deadline=None)
@given(user=_part, secret=_part, host=_part, owner=_part, name=_part, scheme=st.sampled_from(["https", "ssh", "git"]))
def test_no_credential_of_a_url_reaches_the_repository(
    tmp_path_factory: pytest.TempPathFactory, user: str, secret: str, host: str, owner: str, name: str, scheme: str
) -> None:
    root = tmp_path_factory.mktemp("prop")
    git = root / ".git"
    git.mkdir()
    url = f"{scheme}://{user}:{secret}@{host}/{owner}/{name}"
    (git / "config").write_text(f'[core]\n\tbare = false\n[remote "origin"]\n\turl = {url}\n')
    got = repo_of(str(root))
    assert got is not None
    # Exactly the path's own parts: no user, secret or host. (Removing the
    # owner's and name's text and looking for the secret's failed on its own
    # when they share characters: owner "1", name "01", secret "0".)
    assert got == f"{owner}/{name.removesuffix('.git')}".strip("/")


def test_the_launchers_record_name_is_the_conventions() -> None:
    assert (otlp.REPO, otlp.BRANCH, otlp.LIVE_TASK_UPDATE) == (cv.REPO, cv.BRANCH, cv.LIVE_TASK_UPDATE)


def _launch(serve: Serve, work: Path, tmp: Path, task: str, resource: str | None = None) -> None:
    # The CLI writes down the resource it was given (what its hooks and telemetry carry).
    does = f"printf '%s' \"$OTEL_RESOURCE_ATTRIBUTES\" > {tmp / 'resource'}"
    launch_claude(serve, work, tmp, task, does, env={"OTEL_RESOURCE_ATTRIBUTES": resource} if resource else None)


def test_spanvisor_run_names_the_tasks_repository_but_not_the_gates(tmp_path: Path) -> None:
    work = _clone(tmp_path / "clone", "https://x-access-token:ghp_s3cret@github.com/acme/api.git")
    serve = Serve(tmp_path / "serve")
    try:
        task = f"claude-code-{uuid.uuid4().hex[:8]}"
        _launch(serve, work, tmp_path, task)
        finished = wait_until(lambda: serve.finished(task), 120, "the launched task's end")
        assert (finished.task.repo, finished.task.branch) == ("acme/api", "main")
        [started] = [e for e in serve.sink.for_task(task) if type(e).__name__ == "TaskStarted"]
        assert (started.task.repo, started.task.branch) == ("acme/api", "main")  # from its first record on
        resource = (tmp_path / "resource").read_text()
        assert "agent.repo" not in resource and "s3cret" not in resource  # the gate decides on the operator's word
        assert "agent.branch" not in resource
        # The operator's agent.repo wins, and is the resource's as before.
        other = f"claude-code-{uuid.uuid4().hex[:8]}"
        _launch(serve, work, tmp_path, other, resource="agent.repo=acme/mono")
        assert wait_until(lambda: serve.finished(other), 120, "the second task's end").task.repo == "acme/mono"
        assert "agent.repo=acme/mono" in (tmp_path / "resource").read_text()
    finally:
        serve.close()
