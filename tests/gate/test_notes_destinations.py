"""The gate's spool flows per destination (issue 64): a destination that
is dead holds back no other's notes, each backs off on its own, order is
kept within a destination, and junk in the spool is set aside (counted,
said once), never retried, never a crash.

The receivers here are local fakes of an OTLP/HTTP endpoint that take the
gate's OTLP/JSON (``tests/fakes/otlp_receiver.py`` decodes protobuf only)
and can be switched to answer 503; a dead destination is a closed loopback
port. Nothing waits on time: every delivery is one ``deliver()`` call in
the test's own thread, and a backoff's end is written, not waited for."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.gate import notes, otlp
from spanvisor.gate.contracts import Call

TOKEN = "t0ken-notes"


class Receiver:
    """An OTLP/HTTP endpoint taking OTLP/JSON: 200 while ``up``, else 503.
    ``requests`` is every POST it got, taken or not, in arrival order."""

    def __init__(self) -> None:
        self.up = True
        self.requests: list[tuple[str, bool, dict[str, Any]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                took = owner.up
                with owner._lock:
                    owner.requests.append((self.path, took, json.loads(body)))
                self.send_response(200 if took else 503)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-otlp-json", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self, up: bool = True) -> None:
        with self._lock:
            self.requests.clear()
        self.up = up

    def records(self, taken: bool = True) -> list[dict[str, Any]]:
        """The log records of the requests it took (or answered 503), each
        as its attributes."""
        with self._lock:
            got = [body for path, ok, body in self.requests if path == "/v1/logs" and ok == taken]
        return [
            _attrs(record)
            for body in got
            for rl in body["resourceLogs"]
            for sl in rl["scopeLogs"]
            for record in sl["logRecords"]
        ]

    def notes(self, taken: bool = True) -> list[str]:
        """The ids of the notes it got, one per request, in arrival order."""
        with self._lock:
            got = [body for path, ok, body in self.requests if path == "/v1/logs" and ok == taken]
        ids = []
        for body in got:
            [record, *_] = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            attrs = _attrs(record)
            if notes.NOTES_LOST not in attrs:  # a report of what was set aside is no note of the spool
                ids.append(str(attrs[otlp.RECORD_ID]).split(".")[0])
        return ids

    def reports(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if notes.NOTES_LOST in r]


def _attrs(record: dict[str, Any]) -> dict[str, Any]:
    """A log record's attributes as values (OTLP/JSON says an int as a string)."""
    out: dict[str, Any] = {}
    for a in record["attributes"]:
        [(kind, value)] = a["value"].items()
        out[a["key"]] = int(value) if kind == "intValue" else value
    return out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _note(endpoint: str, n: int, session: str = "sess-dest") -> dict[str, Any]:
    call = Call("claude-code", "PreToolUse", session, "Bash", {"command": f"ls {n}"}, f"toolu_{n}")
    item = notes.note(
        "policy", call, f"toolu_{n}", endpoint, 1_700_000_000_000_000_000 + n, {}, verdict="allow", by=f"policy:{n}"
    )
    assert item is not None
    return item


@pytest.fixture
def live() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in list(os.environ):
        if k.startswith(("SPANVISOR_", "OTEL_")):
            monkeypatch.delenv(k)
    where = tmp_path / "spool"
    monkeypatch.setenv("SPANVISOR_HOOK_SPOOL", str(where))
    return where


def test_25_notes_behind_a_dead_destinations_note_all_go_in_one_pass_in_order(spool: Path, live: Receiver) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    stuck = notes.write(_note(dead, 0), spool)
    later = [_note(live.url, n) for n in range(1, 26)]
    for item in later:
        notes.write(item, spool)
    assert notes.deliver(spool, TOKEN) == 25, "the dead destination held back the live one's notes"
    assert live.notes() == [item["id"] for item in later], "each once, oldest first"
    assert notes.pending(spool) == [stuck], "the dead destination's note waits"
    assert notes.backoff_file(dead, spool).exists(), "the dead destination backs off"
    assert not notes.backoff_file(live.url, spool).exists(), "the live one does not"
    # Apart from the notes: a hook call looks at every backoff, never at the
    # notes an outage left waiting.
    assert [p.name for p in (spool / notes.BACKOFF_DIR).iterdir()] == [notes.backoff_file(dead, spool).name]
    assert all(p.suffix == ".json" or p.name.startswith(".") for p in spool.iterdir())


def test_a_failing_destination_is_tried_once_a_pass_and_backs_off_alone(spool: Path, live: Receiver) -> None:
    down = Receiver()
    try:
        down.up = False
        for n in range(6):  # interleaved: down, live, down, live, ...
            notes.write(_note(down.url if n % 2 == 0 else live.url, n), spool)
        assert notes.deliver(spool, TOKEN) == 3
        assert len(down.requests) == 1, "a destination that failed is not tried again in the pass"
        # The down destination backs off; a new note for the live one still
        # goes, as a hook's delivery makes it (a released hook's keep).
        item = _note(live.url, 6)
        notes.keep(item, TOKEN, released=True)
        assert live.notes()[-1] == item["id"] and len(down.requests) == 1, "still backing off: not tried"
        assert notes.deliver(spool, TOKEN, backoff=True) == 0 and len(down.requests) == 1
        assert len(notes.pending(spool)) == 3
        # A last delivery (the launcher's, a session end's) tries it all the same: once.
        assert notes.deliver(spool, TOKEN) == 0 and len(down.requests) == 2
        # Its backoff ends (written, not waited for) and it is back: its notes
        # go in their order.
        notes.backoff_file(down.url, spool).write_text("0")
        down.up = True
        assert notes.deliver(spool, TOKEN) == 3 and notes.pending(spool) == []
        assert down.notes() == [_note(down.url, n)["id"] for n in (0, 2, 4)]
        assert not list((spool / notes.BACKOFF_DIR).iterdir()), "backoffs that ran out go"
    finally:
        down.close()


def test_a_kept_note_is_delivered_while_another_destination_backs_off(spool: Path, live: Receiver) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    notes.write(_note(dead, 0), spool)
    assert notes.deliver(spool, TOKEN) == 0 and notes.backoff_file(dead, spool).exists()
    item = _note(live.url, 1)
    notes.keep(item, TOKEN, released=True)  # the released hook delivers what waits
    assert live.notes() == [item["id"]], "another destination's backoff held this note"
    assert len(notes.pending(spool)) == 1


def test_a_released_note_handed_to_later_is_spooled_first_and_delivered_by_the_job(spool: Path, live: Receiver) -> None:
    """The launcher's keep (``later``: its workers): the note is in the
    spool before ``keep`` returns, nothing is sent on the caller's thread,
    and the one job handed over delivers it."""
    jobs: list[Callable[[], object]] = []
    item = _note(live.url, 1)
    notes.keep(item, TOKEN, released=True, later=jobs.append)
    assert len(notes.pending(spool)) == 1 and live.requests == [], "sent on the caller's thread"
    [job] = jobs
    job()
    assert live.notes() == [item["id"]] and notes.pending(spool) == []


def test_the_destination_is_the_one_the_note_was_made_with(
    spool: Path, live: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a note goes is fixed when it is made: an endpoint named later
    (the deliverer's own environment) changes nothing."""
    item = _note(live.url, 1)
    notes.write(item, spool)
    monkeypatch.setenv("SPANVISOR_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert notes.deliver(spool, TOKEN) == 1 and live.notes() == [item["id"]]


def _raw(body: bytes) -> Callable[[Path, str], Any]:
    return lambda where, _url: (where / "00000000000000000001-junk.json").write_bytes(body)


def _dir(where: Path, _url: str) -> None:
    (where / "00000000000000000001-dir.json").mkdir()
    (where / "00000000000000000001-dir.json" / "inside").write_text("x")


def _fifo(where: Path, _url: str) -> None:
    os.mkfifo(where / "00000000000000000001-fifo.json")  # read, it would block forever


def _link(target: str) -> Callable[[Path, str], Any]:
    return lambda where, _url: os.symlink(target, where / "00000000000000000001-link.json")


def _unreadable(where: Path, _url: str) -> None:
    path = where / "00000000000000000001-unreadable.json"
    path.write_text("{")
    path.chmod(0)  # (as root it is read all the same: junk by its bytes)


def _note_lacking(drop: str, **changes: Any) -> Callable[[Path, str], Any]:
    def make(where: Path, url: str) -> None:
        item = {k: v for k, v in _note(url, 99).items() if k != drop}
        (where / "00000000000000000001-bad.json").write_text(json.dumps(item | changes))

    return make


def _too_big(where: Path, url: str) -> None:
    item = _note(url, 98)
    item["records"][-1][1]["pad"] = "x" * (notes.MAX_NOTE_BYTES + 1)
    (where / "00000000000000000001-big.json").write_text(json.dumps(item))


JUNK: dict[str, Callable[[Path, str], Any]] = {
    "a directory": _dir,
    "a fifo": _fifo,
    "a link to /dev/zero": _link("/dev/zero"),
    "a dangling link": _link("/nonexistent/note.json"),
    "an unreadable file": _unreadable,
    "bytes that are not JSON": _raw(b"\xff\xfe\x00 not json {"),
    "a note cut short": lambda where, url: (where / "00000000000000000001-cut.json").write_text(
        json.dumps(_note(url, 97))[:60]
    ),
    "an empty file": _raw(b""),
    "JSON nested past reason": _raw(b"[" * 200_000 + b"]" * 200_000),
    "a JSON list": _raw(b"[1, 2, 3]"),
    "a JSON string": _raw(b'"a note"'),
    "a JSON object that is no note": _raw(b'{"id": "x", "kind": "policy"}'),
    "a note with no endpoint": _note_lacking("endpoint"),
    "a note with an empty endpoint": _note_lacking("", endpoint=""),
    "a note with no session": _note_lacking("session"),
    "a note whose records are not records": _note_lacking("", records=[["x", {}, "at noon"]]),
    "a file over the size a note can have": _too_big,
}


def _real_notes(where: Path, url: str) -> list[str]:
    items = [_note(url, n) for n in range(3)]
    for item in items:
        notes.write(item, where)
    return [item["id"] for item in items]


@pytest.mark.parametrize("shape", list(JUNK))
def test_junk_is_set_aside_counted_and_said_once_and_the_notes_still_go(
    spool: Path, live: Receiver, shape: str
) -> None:
    spool.mkdir(mode=0o700)
    JUNK[shape](spool, live.url)  # named to sort first: oldest
    ids = _real_notes(spool, live.url)
    assert notes.deliver(spool, TOKEN) == 3, "the junk held back the notes"
    assert live.notes() == ids
    assert notes.pending(spool) == [], "the junk was left to be tried again"
    aside = list((spool / notes.JUNK_DIR).iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("00000000000000000001-"), "set aside, not deleted"
    assert notes.junk(spool) == 1 and notes.unreported(spool) == 0
    [report] = live.reports()
    assert report[notes.SPOOL_JUNK] == 1 and report[notes.NOTES_LOST] == 0
    assert "1 files in the gate's audit-note spool were not notes" in str(report[otlp.MESSAGE])
    # The next delivery neither meets the junk again nor says it again.
    later = _note(live.url, 3)
    notes.write(later, spool)
    assert notes.deliver(spool, TOKEN) == 1 and live.notes() == [*ids, later["id"]]
    assert len(live.reports()) == 1, "said once"


def test_every_shape_of_junk_at_once_is_counted_and_said_once(spool: Path, live: Receiver) -> None:
    spool.mkdir(mode=0o700)
    for n, make in enumerate(JUNK.values()):
        sub = spool / f"shape-{n}"  # each shape makes its own name: made apart, then brought in
        sub.mkdir()
        make(sub, live.url)
        [made] = list(sub.iterdir())
        made.rename(spool / f"{n:020d}-{made.name}")
        sub.rmdir()
    ids = _real_notes(spool, live.url)
    assert notes.deliver(spool, TOKEN) == 3 and live.notes() == ids
    assert notes.junk(spool) == len(JUNK) and notes.pending(spool) == []
    [report] = live.reports()
    assert report[notes.SPOOL_JUNK] == len(JUNK)


def test_junk_that_cannot_be_moved_is_listed_skipped_and_counted_once(spool: Path, live: Receiver) -> None:
    """With ``junk`` taken by a file, nothing can be moved there: the junk
    stays where it is, listed in ``.stuck``, never looked at again."""
    spool.mkdir(mode=0o700)
    (spool / notes.JUNK_DIR).write_text("a file where the junk directory goes")
    bad = spool / "00000000000000000001-bad.json"
    bad.write_text("not json")
    ids = _real_notes(spool, live.url)
    assert notes.deliver(spool, TOKEN) == 3 and live.notes() == ids
    assert bad.read_text() == "not json", "never deleted"
    assert notes.pending(spool) == [] and notes.junk(spool) == 1
    assert notes.deliver(spool, TOKEN) == 0
    later = _note(live.url, 3)
    notes.write(later, spool)
    assert notes.deliver(spool, TOKEN) == 1
    [report] = live.reports()
    assert report[notes.SPOOL_JUNK] == 1


def test_a_taken_note_that_cannot_be_removed_is_not_sent_again(
    spool: Path, live: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    [first, second, third] = _real_notes(spool, live.url)
    [path, *_] = notes.pending(spool)
    unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    assert notes.deliver(spool, TOKEN) == 3
    assert notes.deliver(spool, TOKEN) == 0 and path.exists()
    assert live.notes() == [first, second, third], "sent once"


def test_a_backoff_file_that_is_junk_backs_nothing_off(spool: Path, live: Receiver) -> None:
    (spool / notes.BACKOFF_DIR).mkdir(mode=0o700, parents=True)
    notes.backoff_file(live.url, spool).write_bytes(b"\xff soon")
    ids = _real_notes(spool, live.url)
    assert notes.deliver(spool, TOKEN) == 3 and live.notes() == ids


# -- random interleavings of destinations up and down ---------------------------------

DESTINATIONS = 4  # three receivers that can be switched, one closed port


@pytest.fixture(scope="module")
def receivers() -> Iterator[list[Receiver]]:
    rs = [Receiver() for _ in range(DESTINATIONS - 1)]
    yield rs
    for r in rs:
        r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.lists(st.integers(0, DESTINATIONS - 1), min_size=1, max_size=24),
    first=st.lists(st.booleans(), min_size=DESTINATIONS - 1, max_size=DESTINATIONS - 1),
    second=st.lists(st.booleans(), min_size=DESTINATIONS - 1, max_size=DESTINATIONS - 1),
)
def test_any_interleaving_every_live_destinations_note_once_in_order(
    receivers: list[Receiver], order: list[int], first: list[bool], second: list[bool]
) -> None:
    """Notes for four destinations in any order, each up or down in a first
    pass and again in a second (the closed port always down): after each
    pass every destination that was up has had each of its notes exactly
    once, oldest first, whatever the others did; the rest wait in order."""
    dead = f"http://127.0.0.1:{_closed_port()}"
    urls = [r.url for r in receivers] + [dead]
    where = Path(tempfile.mkdtemp(prefix="spool-"))
    try:
        for i, d in enumerate(order):
            notes.write(_note(urls[d], i, session=f"sess-{d}"), where)
        # Oldest first is the spool's order, by name.
        expected: list[list[str]] = [[] for _ in urls]
        for path in notes.pending(where):
            item = json.loads(path.read_bytes())
            expected[urls.index(item["endpoint"])].append(item["id"])
        had = [False] * DESTINATIONS
        for ups in (first, second):
            for r, up in zip(receivers, ups, strict=True):
                r.reset(up)
            for path in (where / notes.BACKOFF_DIR).glob("*"):  # the backoffs end (written, not waited for)
                path.write_text("0")
            going = [d for d in range(DESTINATIONS - 1) if ups[d] and not had[d]]
            assert notes.deliver(where, TOKEN) == sum(len(expected[d]) for d in going)
            for d, r in enumerate(receivers):
                if ups[d]:
                    assert r.notes() == ([] if had[d] else expected[d]), f"destination {d}"
                    had[d] = True
                else:
                    assert r.notes() == [], f"destination {d} took nothing"
                    assert len(r.requests) == (1 if expected[d] and not had[d] else 0), "tried once, then backs off"
                waiting = not had[d] and bool(expected[d])
                assert notes.backoff_file(urls[d], where).exists() == waiting
            left = [json.loads(p.read_bytes())["id"] for p in notes.pending(where)]
            for d in range(DESTINATIONS):  # the rest wait, each destination's in its order
                assert [i for i in left if i in expected[d]] == ([] if had[d] else expected[d]), f"destination {d}"
            assert len(left) == sum(len(expected[d]) for d in range(DESTINATIONS) if not had[d])
    finally:
        shutil.rmtree(where, ignore_errors=True)
