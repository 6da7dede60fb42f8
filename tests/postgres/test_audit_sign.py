"""Decision rows signed by serve: evidence that does not trust the database.

The real sink writes people's decisions and signs them with a key in its
data directory. Then a role holding SELECT, INSERT, UPDATE and DELETE (what
an application's role has; not the tables' owner) INSERTs a backdated
"alice approved": the database's trigger gives it a link, so the chain
holds, but no signature covers it, and ``spanvisor audit verify`` (online)
and ``--offline`` over an export (with nothing but the public key) both
name it. A row altered (by the owner, its triggers off) or a signature
garbled fails too; honest rows verify; after a key rotation the old public
key, kept in a keys file, still covers the old rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from spanvisor.cli.main import main
from spanvisor.sink import SinkResult
from spanvisor_postgres import signing
from spanvisor_postgres.sink import PostgresSink

from .conftest import fetch, make_config, make_ctx
from .test_audit_chain import _decisions, _sql
from .test_interventions import bare, decision, intervention
from .test_sink_basic import export_all


def _cli(args: list[str], url: str, data_dir: Path, capsys: Any, monkeypatch: Any, **env: str) -> tuple[int, str]:
    monkeypatch.setenv("SPANVISOR_DATABASE_URL", url)
    monkeypatch.setenv("SPANVISOR_DATA_DIR", str(data_dir))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(args)
    return code, capsys.readouterr().out


async def _export_with(url: str, data_dir: Path, events: list[Any], **values: Any) -> None:
    sink = PostgresSink()
    await sink.start(make_ctx(make_config(data_dir, url, **values)))
    try:
        assert await sink.export(events) is SinkResult.SUCCESS
        assert await sink.force_flush(20)
    finally:
        await sink.shutdown(5)


def _offline(export: Path, keys: Path, capsys: Any) -> tuple[int, str]:
    code = main(["audit", "verify", "--offline", str(export), "--public-key", str(keys)])
    return code, capsys.readouterr().out


def _as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}:{parts.port}"))


async def _app_role(url: str) -> str:
    """A role with SELECT, INSERT, UPDATE, DELETE on every table, as an
    application's: its URL."""
    role, password = f"app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await _sql(
        url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    return _as_role(url, role, password)


BACKDATED = """
INSERT INTO human_interventions (intervention_id, task_id, at, actor, action, attributes, outcome, source,
                                 actor_name, time_ns, known, notes, approval_id)
VALUES ('forged-1', 'sign-1', '2025-06-15 12:00:00+00', 'alice', 'approve', '{"verified": true}', 'applied',
        'slack', 'alice', 1750000000000000000, false, '[]', 'a1')
"""


def test_a_row_the_database_user_inserts_or_alters_is_reported_online_and_offline(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.database()
    data = tmp_path / "serve"
    asyncio.run(export_all(url, data, [_decisions("sign-1", 3)]))
    key_file = data / signing.KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = signing.load(key_file)
    assert isinstance(key, signing.SigningKey)
    keys = tmp_path / "keys"
    keys.write_text(key.public_line + "\n")
    sigs = asyncio.run(fetch(url, "SELECT chain_seq, key_id FROM decision_signatures ORDER BY chain_seq"))
    assert [(r["chain_seq"], r["key_id"]) for r in sigs] == [(1, key.key_id), (2, key.key_id), (3, key.key_id)]

    # A bogus signature written ahead for the next link blocks nothing: serve's is added beside it.
    app = asyncio.run(_app_role(url))
    asyncio.run(
        _sql(
            app,
            "INSERT INTO decision_signatures (chain_seq, intervention_id, key_id, signature) "
            f"VALUES (4, 'x', '{key.key_id}', '{'11' * 64}')",
        )
    )
    asyncio.run(export_all(url, data, [_decisions("sign-1", 1, first=4)]))
    # Honest rows: online and offline.
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 0 and "decision signatures intact: 4 links (4 signed, 0 removed)" in out, out
    honest = tmp_path / "honest.jsonl"
    code, _ = _cli(["audit", "export", "--out", str(honest)], url, data, capsys, monkeypatch)
    assert code == 0 and len(honest.read_text().splitlines()) == 4
    code, out = _offline(honest, keys, capsys)
    assert code == 0 and "decision signatures intact" in out, out

    # The application's role INSERTs a backdated "alice approved": the chain takes it in.
    asyncio.run(_sql(app, BACKDATED))
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and "decision log intact: 5 links" in out, out
    assert "link 5 (forged-1) is signed by no one" in out, out
    exported = tmp_path / "after.jsonl"
    assert _cli(["audit", "export", "--out", str(exported)], url, data, capsys, monkeypatch)[0] == 0
    code, out = _offline(exported, keys, capsys)
    assert code == 1 and "link 5 (forged-1) is signed by no one" in out, out
    # It cannot sign it: a signature of its own making does not hold.
    asyncio.run(
        _sql(
            app,
            "INSERT INTO decision_signatures (chain_seq, intervention_id, key_id, signature) "
            f"VALUES (5, 'forged-1', '{key.key_id}', '{'00' * 64}')",
        )
    )
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and "link 5 (forged-1): its signature does not hold" in out, out
    # Nor take another row's signature (the signature covers the link's number and hashes), nor
    # take a signature away (refused: the row would pass as written before signing began).
    asyncio.run(
        _sql(
            app,
            "INSERT INTO decision_signatures (chain_seq, intervention_id, key_id, signature) "
            "SELECT 5, 'forged-1', key_id, signature FROM decision_signatures WHERE chain_seq = 3",
        )
    )
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and "link 5 (forged-1): its signature does not hold" in out, out
    for sql in ("DELETE FROM decision_signatures", "UPDATE decision_signatures SET chain_seq = 5"):
        with pytest.raises(asyncpg.RaiseError, match="never changed or removed"):
            asyncio.run(_sql(app, sql))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(_sql(app, "TRUNCATE decision_signatures"))

    # An exported row altered on its way: offline names it.
    lines = [json.loads(x) for x in honest.read_text().splitlines()]
    lines[1]["content"]["actor"] = "mallory"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, out = _offline(tampered, keys, capsys)
    assert code == 1 and "link 2 (" in out and "its signature does not hold" in out, out

    # A row altered in the database (by its owner, the update-refusing trigger off): reported.
    asyncio.run(
        _sql(
            url,
            "ALTER TABLE human_interventions DISABLE TRIGGER human_interventions_unchanged",
            "UPDATE human_interventions SET actor = 'mallory' WHERE chain_seq = 2",
            "ALTER TABLE human_interventions ENABLE TRIGGER human_interventions_unchanged",
        )
    )
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and "link 2 (" in out and "its signature does not hold" in out, out


def test_after_a_rotation_old_rows_verify_with_the_old_public_key(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_server.database()
    data = tmp_path / "serve"
    asyncio.run(export_all(url, data, [_decisions("rot-1", 2)]))
    old = signing.load(data / signing.KEY_FILE)
    assert isinstance(old, signing.SigningKey)
    # Rotated: a new key file; the old public key goes to the keys file.
    new_file = tmp_path / "new.key"
    new = signing.load_or_create(new_file)
    assert isinstance(new, signing.SigningKey) and new.key_id != old.key_id
    monkeypatch.setenv("SPANVISOR_AUDIT_SIGNING_KEY", str(new_file))
    more = [intervention(dataclasses.replace(bare("rot-1"), agent_id="rivet"), decision("rot-1", 9), known=False)]
    asyncio.run(_export_with(url, data, more, audit_signing_key=str(new_file)))
    rows = asyncio.run(fetch(url, "SELECT key_id FROM decision_signatures ORDER BY chain_seq"))
    assert [r["key_id"] for r in rows] == [old.key_id, old.key_id, new.key_id]

    old_keys = tmp_path / "old.keys"
    old_keys.write_text(f"# rotated out\n{old.public_line}\n")
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch, SPANVISOR_AUDIT_PUBLIC_KEYS=str(old_keys))
    assert code == 0 and "3 signed" in out, out
    # Without the old key: its rows are named, not passed.
    monkeypatch.delenv("SPANVISOR_AUDIT_PUBLIC_KEYS")
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and f"signed with key {old.key_id}, which is not among the public keys given" in out, out
    both = tmp_path / "both.keys"
    both.write_text(f"{old.public_line}\n{new.public_line}\n")
    export = tmp_path / "log.jsonl"
    assert _cli(["audit", "export", "--out", str(export)], url, data, capsys, monkeypatch)[0] == 0
    code, out = _offline(export, both, capsys)
    assert code == 0 and "3 signed" in out, out


def test_a_sink_that_cannot_write_signatures_still_writes_its_decisions(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signatures that cannot be written (the table missing, as for a role
    that may not write it): the decisions are written all the same, not held
    in the outbox; unsigned, and verify says so once serve has signed any."""
    url = pg_server.database()
    data = tmp_path / "serve"
    asyncio.run(export_all(url, data, [_decisions("grant-1", 1)]))
    asyncio.run(_sql(url, "ALTER TABLE decision_signatures RENAME TO decision_signatures_away"))
    try:
        asyncio.run(export_all(url, data, [_decisions("grant-1", 1, first=2)]))
    finally:
        asyncio.run(_sql(url, "ALTER TABLE decision_signatures_away RENAME TO decision_signatures"))
    rows = asyncio.run(fetch(url, "SELECT chain_seq FROM human_interventions ORDER BY chain_seq"))
    assert [r["chain_seq"] for r in rows] == [1, 2]
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 1 and "link 2 (" in out and "is signed by no one" in out, out


def test_a_decision_twice_in_one_batch_is_signed_whichever_came_first(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a SIGKILL one batch can carry a decision twice: the killed
    process's event replayed from its outbox, and the row recovered from the
    control log (its note too). The first insert is the row; it is serve's
    either way, and signed (the fresh-clone run of 2026-11-27 found six
    decision rows unsigned after a kill)."""
    from spanvisor_postgres.recorded import NOTE

    url = pg_server.database()
    data = tmp_path / "serve"
    view = dataclasses.replace(bare("twice-1"), agent_id="rivet")
    d = decision("twice-1", 1)
    replayed, recovered = intervention(view, d), intervention(view, d, notes=(NOTE,), known=False)
    asyncio.run(_export_with(url, data, [replayed, recovered]))
    rows = asyncio.run(fetch(url, "SELECT chain_seq FROM decision_signatures"))
    assert len(rows) == 1
    asyncio.run(_export_with(url, data, [recovered, replayed]))  # again, the other way round: nothing changes
    assert len(asyncio.run(fetch(url, "SELECT chain_seq FROM decision_signatures"))) == 1
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 0 and "1 signed" in out, out


NO_SIGNATURES = """
CREATE FUNCTION _no_signatures() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'signatures are away'; END $$;
CREATE TRIGGER _no_signatures BEFORE INSERT ON decision_signatures FOR EACH ROW EXECUTE FUNCTION _no_signatures();
"""


@pytest.mark.parametrize("method", ["copy", "unnest", "executemany"])
def test_a_decision_row_is_committed_with_its_signature_or_not_at_all(
    pg_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """The rows and their signatures commit together: while signatures
    cannot be written, the decisions wait in the outbox, none in the table
    unsigned (a process killed between a commit and its signing left rows
    no one signed: the fresh-clone run of 2026-11-28 found three). Once
    they can, the outbox's replay writes and signs them."""
    url = pg_server.database()
    data = tmp_path / "serve"
    asyncio.run(export_all(url, data, [_decisions("whole-1", 1)], method))

    async def run() -> None:
        sink = PostgresSink(write_method=method)  # type: ignore[arg-type]
        await sink.start(make_ctx(make_config(data, url)))
        try:
            await _sql(url, NO_SIGNATURES)
            assert await sink.export(_decisions("whole-1", 2, first=2)) is SinkResult.SUCCESS
            assert sink.outbox is not None and sink.outbox.size == 2
            rows = await fetch(url, "SELECT chain_seq FROM human_interventions ORDER BY chain_seq")
            assert [r["chain_seq"] for r in rows] == [1]
            await _sql(url, "DROP TRIGGER _no_signatures ON decision_signatures")
            assert await sink.force_flush(20)
        finally:
            await sink.shutdown(5)

    asyncio.run(run())
    sigs = asyncio.run(fetch(url, "SELECT chain_seq FROM decision_signatures ORDER BY chain_seq"))
    assert [r["chain_seq"] for r in sigs] == [1, 2, 3]
    code, out = _cli(["audit", "verify"], url, data, capsys, monkeypatch)
    assert code == 0 and "3 signed" in out, out
