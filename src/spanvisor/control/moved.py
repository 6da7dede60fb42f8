"""A run whose task took the id its root named: its record moves (issue 66).

On the end-order paths a task may show before its root arrives, under a
derived id D (``<trace id>-<root span id>``); its root then names the task's
own id X, and every later view of the run carries ``former_id`` D. The run's
record moves from ``run_key(D, R)`` to ``run_key(X, R)`` and an *alias* stays
at the old key: where the record went, and the record as it was when it
moved (so a process stopped between the two writes loses nothing: whoever
next follows the alias merges it in). A change aimed at the old key (a
replica that saw only the run's earlier events, a button made while the task
showed as D) follows the alias, and D's list of runs keeps R, so a lookup by
either id finds the one record.

Only a run's own derived id moves, and only to that run's key under X: a
root naming the id of another live task adds a run to that id (as any root
naming an id does), and never reads or writes that task's runs' records.

Everything here is pure: records in, a record out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanvisor.control.runs import MAX_KEYS, finish, new_record, requests_of, state_of
from spanvisor.events import TaskView
from spanvisor.ids import run_id_of

MOVED_TO = "moved_to"
# The record as it was moved, kept in the alias (nested: readers of the
# namespace's records, such as the audit's recovery, see no decision twice).
CARRIED = "record"
# What a request's state says of how far it got: a merge never moves one back.
_RANK = {"open": 0, "expired": 1, "decided": 2}


@dataclass(frozen=True, slots=True)
class Moved:
    """A change met an alias (``alias``): the run's record is under ``to`` now."""

    to: str
    alias: Mapping[str, Any]


def former_of(view: TaskView) -> str | None:
    """The id the run's record moves from: ``former_id`` when it is the run's
    own derived id (the only id the tracker renames from), else None."""
    d = view.former_id
    if not d or d == view.task_id or not view.run_id or d != f"{view.trace_id}-{view.root_span_id}":
        return None
    return d if view.run_id == run_id_of(view.trace_id, view.root_span_id) else None


def target(raw: Mapping[str, Any] | None) -> str | None:
    """Where an alias says its run's record went; None for a record (or nothing)."""
    to = raw.get(MOVED_TO) if isinstance(raw, Mapping) else None
    return to if isinstance(to, str) and to else None


def carried(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The record an alias holds, as it is under its new id (a bare record of
    the run when none had been written under the old one)."""
    to = str(raw.get(MOVED_TO) or "")
    got = raw.get(CARRIED)
    if isinstance(got, Mapping):
        rec = dict(got)
    else:
        ids = TaskView(
            to,
            str(raw.get("trace_id") or ""),
            str(raw.get("root_span_id") or ""),
            str(raw.get("agent_id") or "unknown"),
            run_id=str(raw.get("run_id") or ""),
            started_ns=int(raw.get("started_ns") or 0),
        )
        rec = new_record(ids)
    rec.pop("v", None)
    rec["task_id"], rec["former_id"] = to, str(raw.get("task_id") or "")
    return rec


def alias(rec: Mapping[str, Any] | None, view: TaskView, former: str) -> dict[str, Any]:
    """What stays under the old id once the record ``rec`` (None: none was
    written there) moved to ``view.task_id``."""
    return {
        MOVED_TO: view.task_id,
        "task_id": former,
        "run_id": view.run_id,
        "trace_id": view.trace_id,
        "root_span_id": view.root_span_id,
        "agent_id": view.agent_id,
        "started_ns": view.started_ns,
        CARRIED: None if rec is None else {k: v for k, v in rec.items() if k != "v"},
    }


def _by_id(mine: Any, theirs: Any, *key: str) -> list[Any] | None:
    """``theirs`` (written first: before the move) missing from ``mine``,
    then ``mine``; None when nothing is missing."""
    have = [x for x in mine if isinstance(x, Mapping)] if isinstance(mine, list) else []
    ids = {tuple(x.get(k) for k in key) for x in have}
    given = [x for x in theirs if isinstance(x, Mapping)] if isinstance(theirs, list) else []
    extra = [x for x in given if tuple(x.get(k) for k in key) not in ids]
    return [*extra, *have] if extra else None


def _requests(mine: dict[str, Any], theirs: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Each request as far as either record got it (open, then expired or
    decided), with every vote either counted."""
    got = requests_of(mine)
    changed = False
    for aid, req in requests_of(theirs).items():
        have = got.get(aid)
        if have is None:
            got[aid], changed = req, True
            continue
        if _RANK.get(str(req.get("state")), 0) > _RANK.get(str(have.get("state")), 0):
            later = {k: v for k, v in req.items() if k != "votes"}
            have, changed = ({**later, "votes": have["votes"]} if have.get("votes") else later), True
        votes = _by_id(have.get("votes"), req.get("votes"), "intervention_id")
        if votes is not None:
            have, changed = {**have, "votes": votes}, True
        got[aid] = have
    return got if changed else None


def merge(dst: Mapping[str, Any] | None, src: Mapping[str, Any], view: TaskView | None = None) -> dict[str, Any] | None:
    """``src`` (the record as it moved) merged into ``dst`` (the run's record
    under its new id, None before it is made): the union of both, nothing
    moved back (a request closed or a run ended in either stays so, a
    decision, vote or consumed approval in either stays). None when ``dst``
    already holds all of it, so a repeated move writes nothing."""
    if dst is None:
        rec = {k: v for k, v in src.items() if k != "v"}
        if view is not None:  # its root's word on whose task it is, where the stand-in said less
            rec["task_id"], rec["former_id"] = view.task_id, view.former_id
            for field in ("agent_id", "task_name", "repo"):
                if getattr(view, field, None):
                    rec[field] = getattr(view, field)
        rec.setdefault("v", 0)
        return rec
    rec = dict(dst)
    for k, v in src.items():
        if k not in rec and k != "v":
            rec[k] = v
    reqs = _requests(rec, src)
    if reqs is not None:
        rec["requests"] = reqs
    for field, key in (("items", ("intervention_id",)), ("refused", ("approval_id", "digest"))):
        got = _by_id(rec.get(field), src.get(field), *key)
        if got is not None:
            rec[field] = got
    theirs = src.get("consumed")
    if isinstance(theirs, Mapping):
        mine = rec.get("consumed")
        used = dict(mine) if isinstance(mine, Mapping) else {}
        if any(aid not in used for aid in theirs):
            rec["consumed"] = {**theirs, **used}
    for fact in ("session", "proved"):
        if src.get(fact) and not rec.get(fact):
            rec[fact] = True
    keys = [k for k in (rec.get("keys") or []) if isinstance(k, str)]
    more = [k for k in (src.get("keys") or []) if isinstance(k, str) and k not in keys]
    if more:
        rec["keys"] = [*keys, *more][:MAX_KEYS]
    if state_of(rec) == "running" and state_of(src) not in (None, "running"):
        # Ended under the old id (a replica that held only its earlier events): ended here too.
        finish(rec, str(src.get("outcome") or "lost"), int(src.get("ended_ns") or 0))
    return None if rec == dict(dst) else rec


__all__ = ["CARRIED", "MOVED_TO", "Moved", "alias", "carried", "former_of", "merge", "target"]
