"""The central policy: the rules a security team keeps on the server.

``SPANVISOR_POLICY`` names a TOML file, or a directory of them (read in
name order, their rules one after the other), in the hook's rule language
(:mod:`.policy`, :mod:`.rules`). Its **version** is its name (the ``name``
key, else the file's or directory's) and the first 12 hex digits of the
SHA-256 of its files' names and texts: ``acme@7c1e9a2b40d3``.

``serve`` (and the in-process pipeline) hold it in a :class:`Holder`,
which reloads it when a file changes (polled by modification time) and on
``SIGHUP``; a reload that fails keeps the version before it, and says so.
``serve`` publishes it (``GET /v1/control/policy``, :func:`document`);
hooks read it there and evaluate it themselves (:mod:`.centralcache`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from spanvisor.gate import contracts as gc
from spanvisor.gate.policy import Policy, PolicyError, Ruling, parse, read_text, toml_doc
from spanvisor.gate.requirement import STRICTNESS, Requirement, narrower
from spanvisor.gate.rules import Facts, server_facts

# A directory's policy files, and the most read.
SUFFIX = ".toml"
MAX_FILES = 256


class Central(NamedTuple):
    """One version of the central policy."""

    policy: Policy
    name: str
    sha256: str
    files: tuple[tuple[str, str], ...]  # (file name, text), in the order read

    @property
    def version(self) -> str:
        return f"{self.name}@{self.sha256[:12]}"

    def ruling(self, call: gc.Call, facts: Facts, resolve: bool = True) -> Ruling:
        return self.policy.decide(call, facts, resolve)

    def requirement(self, action: Mapping[str, Any] | None, facts: Facts) -> Requirement:
        """What this version requires of a request for ``action`` (``{"tool",
        "arguments"}``, or None for a question that names no action)."""
        got = self.ruling(call_of(action, facts), facts, resolve=False)
        rule = got.by.split(":", 1)[1] if ":" in got.by else got.by
        return Requirement(got.verdict, got.approvers, got.approvers_from, rule, got.reason, self.version)


def call_of(action: Mapping[str, Any] | None, facts: Facts) -> gc.Call:
    """A request's action as the call the rules read (a question without
    an action: a call of no tool, which only rules without a tool, command,
    path or URL condition match)."""
    tool = str(action.get("tool") or "") if action is not None else ""
    args = action.get("arguments") if action is not None else None
    cli = facts.cli[0] if facts.cli else ""  # no CLI: the keys every CLI's paths are named by
    return gc.Call(cli, "", None, tool, dict(args) if isinstance(args, Mapping) else {}, None)


def digest_of(files: tuple[tuple[str, str], ...]) -> str:
    h = hashlib.sha256(b"spanvisor.policy.v1\x00")
    for name, text in files:
        for part in (name, text):
            b = part.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "big"))
            h.update(b)
    return h.hexdigest()


def from_files(files: tuple[tuple[str, str], ...], default_name: str) -> Central:
    """A version from its files' texts (one document: each file's rules in
    turn; a top-level setting in one file only)."""
    merged: dict[str, Any] = {"rule": []}
    set_in: dict[str, str] = {}
    for file, text in files:
        doc = toml_doc(text, file)
        for key, value in doc.items():
            if key == "rule":
                if not isinstance(value, list):
                    raise PolicyError(f"{file}: rule must be an array of tables ([[rule]])")
                merged["rule"] = [*merged["rule"], *value]
                continue
            if key in set_in:
                raise PolicyError(f"{file}: {key} is set in {set_in[key]} already (set it in one file)")
            set_in[key] = file
            merged[key] = value
    try:
        policy = parse(merged, central=True)
    except PolicyError as exc:
        where = files[0][0] if len(files) == 1 else "the policy directory"
        raise PolicyError(f"{where}: {exc}") from None
    return Central(policy, policy.name or default_name, digest_of(files), files)


def _paths(path: str) -> list[str]:
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(SUFFIX) and not n.startswith("."))
        if not names:
            raise PolicyError(f"the policy directory {path} holds no {SUFFIX} file")
        if len(names) > MAX_FILES:
            raise PolicyError(f"the policy directory {path} holds over {MAX_FILES} files")
        return [os.path.join(path, n) for n in names]
    return [path]


def load(path: str) -> Central:
    """The central policy at ``path`` (a file or a directory); a
    :class:`PolicyError` saying what to fix."""
    files = tuple((os.path.basename(p), read_text(p)) for p in _paths(path))
    stem = os.path.basename(os.path.normpath(path))
    return from_files(files, stem[: -len(SUFFIX)] if stem.endswith(SUFFIX) else stem or "central")


def stamp(path: str) -> tuple[tuple[str, int, int], ...]:
    """What changes when a policy file does: each file's name, mtime and size."""
    try:
        paths = _paths(path)
    except (PolicyError, OSError):
        return ()
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append((p, -1, -1))
            continue
        out.append((p, st.st_mtime_ns, st.st_size))
    return tuple(out)


def document(central: Central, error: str | None = None, loaded_ns: int = 0) -> dict[str, Any]:
    """What ``serve`` publishes: the version, the files (hooks evaluate
    them) and the rules in short (``spanvisor policy show``)."""
    p = central.policy
    return {
        "name": central.name,
        "version": central.version,
        "sha256": central.sha256,
        "loaded_ns": loaded_ns,
        "reload_error": error,
        "default": p.default,
        "files": [{"name": n, "text": t} for n, t in central.files],
        "rules": [
            {
                "name": r.name,
                "decision": r.decision,
                "approvers": r.approvers if r.decision == "ask" else None,
                "from": list(r.approvers_from),
                "reason": r.reason,
            }
            for r in p.rules
        ],
    }


def from_document(doc: Any) -> Central:
    """A published version, its files checked against its digest."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("files"), list):
        raise PolicyError("not a published policy (no files)")
    files = []
    for f in doc["files"]:
        if not isinstance(f, Mapping) or not isinstance(f.get("name"), str) or not isinstance(f.get("text"), str):
            raise PolicyError("not a published policy (a file without a name or text)")
        files.append((f["name"], f["text"]))
    got = from_files(tuple(files), str(doc.get("name") or "central"))
    if got.sha256 != doc.get("sha256"):
        raise PolicyError("the published policy's files do not match its version")
    return got


class Holder:
    """The central policy of this process: the version loaded, reloaded
    when its files change (checked at most every ``poll_s`` when read) and
    on :meth:`reload`. A reload that fails keeps the version before it."""

    def __init__(self, path: str, poll_s: float = 1.0) -> None:
        self.path = path
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._stamp = stamp(path)
        self._central = load(path)  # the first load's error stops the caller
        self.loaded_ns = time.time_ns()
        self.error: str | None = None
        self._checked = time.monotonic()
        self.on_reload: list[Callable[[], None]] = []  # told when a new version is in force

    @property
    def central(self) -> Central:
        if time.monotonic() - self._checked >= self.poll_s:
            self.poll()
        return self._central

    @property
    def version(self) -> str:
        return self.central.version

    def requirement(self, action: Mapping[str, Any] | None, facts: Facts) -> Requirement:
        return self.central.requirement(action, facts)

    def poll(self) -> bool:
        """Reload when a file changed since the last load; whether it did."""
        self._checked = time.monotonic()
        now = stamp(self.path)
        return now != self._stamp and self.reload("a policy file changed", now)

    def reload(self, why: str = "asked to", seen: tuple[tuple[str, int, int], ...] | None = None) -> bool:
        """Load the files again; True when a new version is in force."""
        import logging  # the server's: off the hook's path

        log = logging.getLogger("spanvisor.policy")
        with self._lock:
            now = stamp(self.path) if seen is None else seen
            before = self._central
            try:
                got = load(self.path)
            except PolicyError as exc:
                if str(exc) != self.error:
                    log.error(
                        "central policy %s not reloaded (%s): %s; %s stays in force",
                        self.path,
                        why,
                        exc,
                        before.version,
                    )
                self.error, self._stamp = str(exc), now
                return False
            self._stamp, self.error = now, None
            if got.sha256 == before.sha256:
                return False
            self._central, self.loaded_ns = got, time.time_ns()
            log.warning("central policy reloaded (%s): %s replaces %s", why, got.version, before.version)
        for told in self.on_reload:
            told()
        return True

    def document(self) -> dict[str, Any]:
        return document(self.central, self.error, self.loaded_ns)


class Broken:
    """A central policy that cannot be read where it must be obeyed: every
    request is denied, with the reason (fail closed)."""

    def __init__(self, error: str) -> None:
        import logging

        self.error = error
        logging.getLogger("spanvisor.policy").error(
            "the central policy cannot be read: %s; every request is denied", error
        )

    @property
    def version(self) -> str:
        return "unreadable"

    def requirement(self, action: Mapping[str, Any] | None, facts: Facts) -> Requirement:
        why = f"the central policy cannot be read ({self.error}): every request is denied until it is fixed"
        return Requirement("deny", rule="unreadable", reason=why, version=self.version)


def combine(local: Ruling, central: Ruling | None) -> Ruling:
    """A call's ruling when a local policy and the central one both have a
    say: the strictest wins (deny > ask > allow; of two asks, the most
    people and the narrower ``from``, the central's when they name nobody
    in common)."""
    if central is None:
        return local
    if STRICTNESS[local.verdict] != STRICTNESS[central.verdict]:
        return local if STRICTNESS[local.verdict] > STRICTNESS[central.verdict] else central
    if local.verdict != "ask":
        return central if local.verdict == "deny" else local
    first = central if central.approvers >= local.approvers else local
    return first._replace(
        approvers=max(local.approvers, central.approvers),
        approvers_from=narrower(central.approvers_from, local.approvers_from),
    )


__all__ = [
    "Broken",
    "Central",
    "Holder",
    "PolicyError",
    "call_of",
    "combine",
    "document",
    "from_document",
    "from_files",
    "load",
    "server_facts",
    "stamp",
]
