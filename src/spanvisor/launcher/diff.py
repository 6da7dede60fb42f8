"""The session's work as a diff: what ``spanvisor run``'s CLI changed in its
working tree, sent on the task as an ``agent.diff`` record (a code channel
shows it in its diff tab: tracking/diffs.py, the Slack plugin's codetab).

Against the commit the session started on (so work the agent committed
shows too; the empty tree in a repository without commits), tracked files
as ``git diff`` gives them, then the untracked ones that git does not
ignore, as new files (binary ones named only). Read every
:data:`EVERY_S` while the CLI runs and once after it exits, before the
task's end; sent only when it changed. Git runs with optional locks off
(it never takes the index lock the agent's own git needs), each call
within :data:`GIT_TIMEOUT_S`, and runs no command the repository's config
names (the agent writes it: an fsmonitor hook, a filter driver, an external
diff or textconv would run outside the gate; a submodule is not looked
inside, where its own config would apply). An untracked file is read only
if it is a regular file, never through a symlink (shown as its target, as
git shows one) or from a FIFO.

Secrets are redacted here, and again by serve; the diff is clipped at a
file's end to :data:`~spanvisor.tracking.diffs.MAX_DIFF_CHARS`. One diff
is in flight at a time and a newer one replaces one not yet taken, so a
receiver away for an hour costs one diff, not a queue of them.
``spanvisor run --no-diff`` sends none.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from spanvisor.gate import otlp
from spanvisor.gate.readlimit import read_at_most
from spanvisor.gate.session import TaskKey
from spanvisor.launcher.repo import branch_of

EVERY_S = 30.0
GIT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 5.0
MAX_UNTRACKED = 200  # untracked files read; more are counted
MAX_FILE_BYTES = 256 * 1024
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


# What git must not run for us: the repository's config is the agent's to
# write, and a command it names (an fsmonitor hook, a filter driver, an
# external diff or textconv) would run outside the gate. Command-line
# settings win over the repository's.
_SAFE = ("-c", "core.quotePath=false", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null")


def _no_filters(top: str, timeout_s: float) -> list[str]:
    """Settings that turn off every filter driver the repository's config
    (includes followed, as git reads them) defines: a driver's ``clean``
    would run on the tree's files while git diffs them."""
    out = _git(top, "config", "-z", "--get-regexp", r"^filter\.", timeout_s=timeout_s, ok=(0, 1))
    names = set()
    for item in (out or b"").split(b"\0"):
        key = item.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
        driver, dot, _ = key[len("filter.") :].rpartition(".")
        if dot and driver:
            names.add(driver)
    args: list[str] = []
    for name in sorted(names):
        for part, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")):
            args += ["-c", f"filter.{name}.{part}={value}"]
    return args


def _git(
    top: str, *args: str, timeout_s: float = GIT_TIMEOUT_S, ok: tuple[int, ...] = (0,), pre: tuple[str, ...] = ()
) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", *_SAFE, *pre, *args],
            cwd=top,
            env=_git_env(),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode in ok else None


def top_of(cwd: str) -> str | None:
    """The working tree's top folder (None: not in one)."""
    out = _git(cwd, "rev-parse", "--show-toplevel")
    return out.decode("utf-8", "surrogateescape").strip() or None if out else None


def base_of(top: str) -> str:
    """The commit the session starts on (the empty tree before any commit)."""
    out = _git(top, "rev-parse", "--verify", "-q", "HEAD")
    return out.decode().strip() if out else EMPTY_TREE


def _read_regular(path: str) -> bytes | None:
    """A regular file's first bytes, never through a symlink (which could
    name any file of the user's) and never blocking on a FIFO; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return read_at_most(f, MAX_FILE_BYTES)
    finally:
        os.close(fd)


def _new_file(top: str, rel: str) -> str:
    path = os.path.join(top, rel)
    try:
        if os.path.islink(path):  # as git shows one: its target, never what it points at
            target = os.readlink(path)
            return f"diff --git a/{rel} b/{rel}\nnew file mode 120000\n--- /dev/null\n+++ b/{rel}\n@@ -0,0 +1 @@\n+{target}\n"
    except OSError:
        return ""
    data = _read_regular(path)
    if data is None:
        return ""
    head = f"diff --git a/{rel} b/{rel}\nnew file mode 100644\n"
    if b"\0" in data[:8192]:
        return head + f"Binary files /dev/null and b/{rel} differ\n"
    text = data[:MAX_FILE_BYTES].decode("utf-8", "replace")
    lines = text.splitlines()
    body = "".join(f"+{ln}\n" for ln in lines)
    more = "" if len(data) <= MAX_FILE_BYTES else "\\ spanvisor: the rest of this file is not shown\n"
    return head + f"--- /dev/null\n+++ b/{rel}\n@@ -0,0 +1,{len(lines)} @@\n" + body + more


def diff_of(top: str, base: str, timeout_s: float = GIT_TIMEOUT_S) -> tuple[str, int] | None:
    """(the diff, the files it covers) of the tree against ``base``; None
    when git could not say within ``timeout_s`` a call."""
    from spanvisor.tracking.diffs import MAX_DIFF_CHARS

    off = tuple(_no_filters(top, timeout_s))
    # A submodule's changes are its commit's only: looking inside one would
    # run git there, under a config these settings do not cover.
    args = ("diff", "--no-color", "--no-ext-diff", "--no-textconv", "--ignore-submodules=dirty", base, "--")
    tracked = _git(top, *args, timeout_s=timeout_s, pre=off)
    if tracked is None:
        return None
    text = tracked.decode("utf-8", "replace")
    files = text.count("\ndiff --git ") + text.startswith("diff --git ")
    others = _git(top, "ls-files", "--others", "--exclude-standard", "-z", timeout_s=timeout_s, pre=off)
    names = [n.decode("utf-8", "surrogateescape") for n in (others or b"").split(b"\0") if n]
    parts, size = [text], len(text)
    for name in sorted(names)[:MAX_UNTRACKED]:
        if size > MAX_DIFF_CHARS:
            break  # clipped there anyway: no more files read
        parts.append(_new_file(top, name))
        size += len(parts[-1])
    return "".join(parts), files + len(names)


class DiffWatcher:
    """Sends the session's diff while its CLI runs and once after it exits."""

    def __init__(
        self,
        cwd: str,
        session: TaskKey,
        endpoint: str,
        token: str | None,
        task_id: str,
        base: str | None = None,
        branch: str | None = None,
        every_s: float = EVERY_S,
    ) -> None:
        """``base``: the commit the session started on, read before the CLI
        started (launcher/repo.py's ``head_commit``); None: read here, or
        the empty tree. ``branch``: the branch the task's start said (a
        switch since is said with the next diff's look)."""
        self.cwd, self.session, self.endpoint, self.token, self.task_id = cwd, session, endpoint, token, task_id
        self.every_s = every_s
        self.top: str | None = None
        self.started_on = base
        self.base: str | None = None
        self.sent: str | None = None  # the digest the receiver took last
        self.branch = branch  # the branch the receiver took last
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one read and send at a time
        self._thread = threading.Thread(target=self._run, name="spanvisor-run-diff", daemon=True)

    def start(self) -> DiffWatcher:
        self._thread.start()
        return self

    def close(self, within_s: float) -> bool:
        """Stop watching, then read and send the diff once more (the CLI has
        exited): whether the receiver has the newest diff."""
        self._stop.set()
        self._thread.join(within_s)
        return self.once(within_s)

    def _run(self) -> None:
        with self._lock:
            self._where()
        while not self._stop.wait(self.every_s):
            self.once(GIT_TIMEOUT_S)

    def _where(self) -> bool:
        """The tree and the commit it started on, read once (under the lock)."""
        if self.base is None:
            self.top = top_of(self.cwd)
            self.base = (self.started_on or base_of(self.top)) if self.top is not None else ""
        return bool(self.top)

    def once(self, timeout_s: float) -> bool:
        """Read the diff and send it if it changed: whether the receiver has
        it (False too when a read in progress did not end within ``timeout_s``)."""
        if not self._lock.acquire(timeout=timeout_s):
            return False
        try:
            return self._send(timeout_s)
        finally:
            self._lock.release()

    def _send(self, timeout_s: float) -> bool:
        from spanvisor.redaction import redact
        from spanvisor.tracking.diffs import clip

        if not self._where():
            return True  # not a git working tree: no diff to send
        assert self.top is not None and self.base is not None
        read = diff_of(self.top, self.base, min(timeout_s, GIT_TIMEOUT_S))
        if read is None:
            return False
        text, clipped = clip(redact(read[0]))
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        records: list[otlp.Record] = []
        now = time.time_ns()
        branch = branch_of(self.cwd)  # the agent may have switched (a detached HEAD says nothing)
        if branch is not None and branch != self.branch:
            records.append((otlp.LIVE_TASK_UPDATE, {otlp.TASK_ID: self.task_id, otlp.BRANCH: branch}, now))
        if digest != self.sent:
            attrs: Mapping[str, Any] = {
                otlp.TASK_ID: self.task_id,
                otlp.DIFF_TEXT: text,
                otlp.DIFF_FILES: read[1],
                otlp.DIFF_CLIPPED: clipped,
            }
            records.append((otlp.EVENT_DIFF, attrs, now))
        if not records:
            return True
        trace_hex, span_hex = self.session.ids
        body = otlp.encode(self.session.service, trace_hex, span_hex, records)
        if otlp.post(self.endpoint, self.token, body, REQUEST_TIMEOUT_S):
            self.sent, self.branch = digest, branch or self.branch
            return True
        return False  # the next read sends the newest


__all__ = ["EVERY_S", "DiffWatcher", "base_of", "diff_of", "top_of"]
