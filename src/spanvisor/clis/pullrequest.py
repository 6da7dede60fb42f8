"""The pull request a coding session made, as its CLI's output shows it.

A CLI makes one by running a shell command (``gh pr create``, ``glab mr
create``, ``hub pull-request``, ``tea pulls create``), which prints the new
request's web address. Each CLI's output reader pairs the command with what
it printed (Claude Code's ``stream-json``, Codex's ``exec --json``) and
asks :func:`made_by`; ``spanvisor run`` then says it on the task
(``agent.pull_request``), where the code channel's context bar shows it.

What the agent printed is display only, as its branch is: it never decides
anything (the agent could print any address), and a sink links it only when
it is a plain web address (:mod:`spanvisor_slack.codechannels`).
"""

from __future__ import annotations

import re
from typing import Any

# The commands that make one, as a word of the command line (after `cd x &&`, in `bash -lc '…'`).
_MAKES = re.compile(
    r"(?:^|[\s;&|(`'\"])(?:gh\s+pr\s+create|glab\s+mr\s+create|hub\s+pull-request|tea\s+pulls?\s+create)\b"
)
# A web address as printed (greedy, no backtracking over a long line), and
# the number in one of a pull request: GitHub's /pull/N, GitLab's
# /-/merge_requests/N, Bitbucket's /pull-requests/N, Gitea's /pulls/N.
_LINK = re.compile(r"https?://[^\s<>\"'`|\\]{1,2048}")
_NUMBERED = re.compile(r"/(?:pull|pulls|pull-requests|merge_requests)/(\d{1,12})(?![\w-])")
# What is looked at of a command's output: the address comes last, after any progress lines.
TAIL = 16_384
# Commands held while their output is awaited (a reader pairs them by call id).
MAX_WAITING = 64


def makes_one(command: Any) -> bool:
    """Whether ``command`` (a shell command line) makes a pull request."""
    return isinstance(command, str) and _MAKES.search(command[:TAIL]) is not None


def made_by(command: Any, output: Any) -> str | None:
    """The web address of the pull request ``command`` made, from what it
    printed (the last address of one); None when it makes none or printed none."""
    if not makes_one(command) or not isinstance(output, str):
        return None
    links: list[str] = _LINK.findall(output[-TAIL:])
    for link in reversed(links):
        if (found := _NUMBERED.search(link)) is not None:
            return link[: found.end()]
    return None


def number(address: str) -> str | None:
    """The request's number in its web address (``12`` of ``…/pull/12``)."""
    found = _NUMBERED.search(address)
    return found.group(1) if found else None


def text_of(content: Any) -> str:
    """A tool result's text: a string, or a list of text blocks (Claude's)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def from_messages(notes: dict[str, Any], doc: dict[str, Any], shells: frozenset[str]) -> str | None:
    """What one line of a ``stream-json`` in Claude Code's shape (Claude
    Code's, Qwen Code's) says: a shell tool's ``tool_use`` (one of
    ``shells``) is held by its id; its ``tool_result`` is read for the
    address (None for every other line, and for a failed call)."""
    msg = doc.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    made = None
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "tool_use" and part.get("name") in shells:
            args = part.get("input")
            hold(notes, part.get("id"), args.get("command") if isinstance(args, dict) else None)
        elif part.get("type") == "tool_result":
            # Let go of whatever its result: a failed call made none.
            command = waiting(notes).pop(str(part.get("tool_use_id")), None)
            if part.get("is_error") is not True:
                made = made_by(command, text_of(part.get("content"))) or made
    return made


def waiting(notes: dict[str, Any]) -> dict[str, str]:
    """The commands that make one, by call id, until their output is read."""
    held: dict[str, str] = notes.setdefault("pull_request_commands", {})
    return held


def hold(notes: dict[str, Any], call_id: Any, command: Any) -> None:
    """Keep ``command`` until its output comes, if it makes a pull request
    (its first :data:`TAIL` characters: all :func:`made_by` reads of it)."""
    held = waiting(notes)
    if isinstance(call_id, str) and makes_one(command) and len(held) < MAX_WAITING:
        held[call_id] = command[:TAIL]


__all__ = ["from_messages", "hold", "made_by", "makes_one", "number", "text_of", "waiting"]
