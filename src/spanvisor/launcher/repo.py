"""The repository a launched session works in, as its task shows it
(``agent.repo``): Slack's context bar, routes and code-channel rules by
``repo:``, the console and the audit trail; and the branch its checkout is
on (``agent.branch``, for display: the context bar, the console, the audit).

Read from the working folder's git metadata without running git (the
launcher starts the CLI within milliseconds): the folder's ``.git`` (a
worktree's ``.git`` file leads to its common folder), then the ``origin``
remote's URL (else the first remote's) as ``owner/name``: the URL's path
without host, credentials or ``.git`` (``git@github.com:acme/api.git`` and
``https://token@github.com/acme/api`` both read ``acme/api``; a GitLab
subgroup keeps its path). A remote on a local path, or none, gives the
top-level folder's name. Not a repository: nothing.

It is a fact for display and routing only, never for the gate: the agent
can edit ``.git/config``, so the launcher does not put it in the resource
the gate's rules on ``task.repo`` are decided by (:func:`spanvisor.gate.
verdict.hook_facts`; those take ``agent.repo`` from the operator's
``OTEL_RESOURCE_ATTRIBUTES``, which also wins here).
"""

from __future__ import annotations

import os
import re
import stat
from typing import TextIO
from urllib.parse import urlsplit

from spanvisor.gate import otlp

MAX_DEPTH = 64  # folders walked up from the working folder
MAX_CONFIG = 256 * 1024  # bytes of a config file read
MAX_REPO = 256  # characters, as the tracker keeps agent.repo
_SECTION = re.compile(r'^\[\s*remote\s+"((?:[^"\\]|\\.)*)"\s*\]\s*(?:[#;].*)?$')
_URL = re.compile(r"^url\s*=\s*(.*?)\s*$", re.IGNORECASE)
_HEADS = "refs/heads/"
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SCP = re.compile(r"^(?:[^@/\s]+@)?[^:/\s]+:(?!//)(.+)$")  # user@host:path, as git reads it


def repo_of(cwd: str) -> str | None:
    """The repository ``cwd`` is in, as ``owner/name`` (see the module doc)."""
    try:
        found = _git_dir(cwd)
        if found is None:
            return None
        top, _, common = found
        url = _remote_url(os.path.join(common, "config"))
        name = _from_url(url) if url else None
        return _clean(name or os.path.basename(top.rstrip(os.sep)))
    except (OSError, UnicodeError, ValueError):
        return None


def branch_of(cwd: str) -> str | None:
    """The branch ``cwd``'s checkout is on (``HEAD`` naming ``refs/heads/…``),
    read from git's files; None when it is on none (a detached ``HEAD``, no
    repository). The agent can switch it: shown, never decided by."""
    try:
        found = _git_dir(cwd)
        if found is None:
            return None
        head = _read(os.path.join(found[1], "HEAD")) or ""
    except (OSError, UnicodeError, ValueError):
        return None
    ref = head[4:].strip() if head.startswith("ref:") else ""
    return _clean(ref[len(_HEADS) :]) if ref.startswith(_HEADS) else None


def place_of(cwd: str, repo: str | None = None) -> dict[str, str]:
    """The task's ``agent.repo`` and ``agent.branch`` as ``spanvisor run``
    names them (``repo``: the operator's, which wins over git's); only those
    it knows."""
    place = {otlp.REPO: repo or repo_of(cwd), otlp.BRANCH: branch_of(cwd)}
    return {k: v for k, v in place.items() if v}


def head_commit(cwd: str) -> str | None:
    """The commit ``cwd``'s checkout is on (its ``HEAD``, a branch's ref
    followed, loose or packed), read from git's files; None when there is
    none (no repository, no commit yet, a ref it cannot read)."""
    try:
        found = _git_dir(cwd)
        if found is None:
            return None
        _, git, common = found
        head = _read(os.path.join(git, "HEAD")) or ""
        for _ in range(5):  # a symbolic ref to a symbolic ref, at most a few deep
            if not head.startswith("ref:"):
                return head if _SHA.fullmatch(head) else None
            ref = head[4:].strip()
            if ".." in ref.split("/"):
                return None
            head = _ref(git, common, ref) or ""
        return None
    except (OSError, UnicodeError, ValueError):
        return None


def _ref(git: str, common: str, ref: str) -> str | None:
    for folder in (git, common):
        path = os.path.join(folder, ref)
        if os.path.isfile(path):
            return _read(path)
    packed = os.path.join(common, "packed-refs")
    if os.path.isfile(packed):
        f = _open_regular(packed)
        if f is None:
            return None
        with f:
            for line in f:
                sha, _, name = line.strip().partition(" ")
                if name == ref and _SHA.fullmatch(sha):
                    return sha
    return None


def _open_regular(path: str, errors: str = "strict") -> TextIO | None:
    """``path`` opened for reading if it is a regular file (followed if a
    symlink), else None: never a FIFO or a device the agent put there,
    whose read would hang the launcher or never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        return None
    return open(fd, encoding="utf-8", errors=errors)


def _read(path: str, limit: int = 4096, errors: str = "strict") -> str | None:
    """At most ``limit`` characters of a regular file, stripped (None: not one)."""
    f = _open_regular(path, errors)
    if f is None:
        return None
    with f:
        return f.read(limit).strip()


def _git_dir(cwd: str) -> tuple[str, str, str] | None:
    """(the top-level folder, its git folder (HEAD), the one holding its config and refs)."""
    here = os.path.abspath(cwd)
    for _ in range(MAX_DEPTH):
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            return here, dot, dot
        if os.path.isfile(dot):
            line = _read(dot) or ""
            if not line.startswith("gitdir:"):
                return None
            git = os.path.normpath(os.path.join(here, line[len("gitdir:") :].strip()))
            common = git
            shared = os.path.join(git, "commondir")
            if os.path.isfile(shared):
                common = os.path.normpath(os.path.join(git, _read(shared) or "."))
            return here, git, common
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return None


def _remote_url(config: str) -> str | None:
    """``origin``'s URL, else the first remote's that has one."""
    try:
        text = _read(config, MAX_CONFIG, "replace")
    except OSError:
        return None
    if text is None:
        return None
    remote: str | None = None
    urls: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            m = _SECTION.match(line)
            remote = m.group(1) if m else None
            continue
        if remote is not None and remote not in urls and (u := _URL.match(line)):
            urls[remote] = u.group(1).strip('"')
    return urls.get("origin") or next(iter(urls.values()), None)


def _from_url(url: str) -> str | None:
    """The URL's path as ``owner/name``: no scheme, host or credentials."""
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.netloc:
            return _last(parts.path)
        path = parts.path
    elif (m := _SCP.match(url)) is not None and not url.startswith(("/", ".")):
        path = m.group(1)
    else:
        return _last(url)  # a local path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return path.strip("/") or None


def _last(path: str) -> str | None:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return (name[:-4] if name.endswith(".git") else name) or None


def _clean(name: str) -> str | None:
    out = "".join(c for c in name if c.isprintable()).strip()
    return out[:MAX_REPO] or None


__all__ = ["branch_of", "head_commit", "place_of", "repo_of"]
