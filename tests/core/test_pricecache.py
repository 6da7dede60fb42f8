"""The price table's cache file in the data dir: read in place of the child
process when it was written for the installed genai-prices; a stale, torn or
edited one is ignored (one log line) and replaced; a data dir that cannot be
written to costs only the child."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from spanvisor.tracking import pricecache, priceexport, pricetable
from spanvisor.tracking.prices import Pricer


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test builds its table anew (the table is otherwise read once per interpreter)."""
    monkeypatch.setattr(pricetable, "_BUILT", {})
    monkeypatch.setattr(pricetable, "_FAILED", {})


@pytest.fixture(scope="module")
def child_json() -> bytes:
    return json.dumps(priceexport.export(), separators=(",", ":")).encode()


class _StandIn:
    """The table's child, as far as pricetable uses ``subprocess.Popen``."""

    def __init__(self, args: list[str], out: bytes) -> None:
        self.args, self._out, self.returncode = args, out, 0

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        return self._out, b""

    def kill(self) -> None:
        self.returncode = -9


def _child(monkeypatch: pytest.MonkeyPatch, out: bytes) -> list[list[str]]:
    """The table's child process, stood in for by ``out`` and counted.
    ``subprocess.Popen`` is what is replaced: compiled, pricetable calls its
    own functions directly, past any patch of them."""
    runs: list[list[str]] = []
    real = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        if "spanvisor.tracking.priceexport" not in " ".join(map(str, args)):
            return real(args, *rest, **kwargs)
        runs.append(list(args))
        return _StandIn(list(args), out)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return runs


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch, child_json: bytes) -> list[list[str]]:
    """The child process, counted (its JSON made once for the module: the real one takes a second)."""
    return _child(monkeypatch, child_json)


def _cost_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "spanvisor.cost"]


def test_the_second_start_reads_the_file_instead_of_the_child(tmp_path: Path, children: list[list[str]]) -> None:
    first = pricetable.build(tmp_path)
    assert len(children) == 1
    assert (tmp_path / pricecache.FILE_NAME).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [pricecache.FILE_NAME]  # no temporary file left
    pricetable._BUILT.clear()
    assert pricetable.build(tmp_path) == first
    assert len(children) == 1


def test_the_real_child_writes_a_file_that_reads_back_as_its_table(tmp_path: Path) -> None:
    table = pricetable.build(tmp_path)
    pricetable._BUILT.clear()
    key = pricecache.key()
    assert key is not None and key["format"] == priceexport.FORMAT
    cached = pricecache.read(tmp_path / pricecache.FILE_NAME, key)
    assert cached is not None and pricetable.load(cached) == table


def test_a_pricer_warmed_with_a_data_dir_prices_from_the_file(tmp_path: Path, children: list[list[str]]) -> None:
    Pricer().warm(tmp_path)
    pricetable._BUILT.clear()
    p = Pricer()
    p.warm(tmp_path)
    assert len(children) == 1 and p._table is not None
    assert p.price({"gen_ai.system": "openai"}, "gpt-4o", 1000, 100, 1).source == "genai-prices"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="torn"),
        pytest.param(lambda raw: raw.replace(b'"starts_with"', b'"ends_with"', 1), id="edited"),
        pytest.param(
            lambda raw: b"%s\n%s" % (raw.partition(b"\n")[0], raw.partition(b"\n")[2].replace(b"0", b"1", 9)),
            id="digits changed",
        ),
        pytest.param(lambda raw: b"\x00\xff not json at all", id="garbage"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: b"[1, 2]\n" + raw.partition(b"\n")[2], id="a header that is no object"),
    ],
)
def test_a_damaged_file_is_ignored_with_one_line_and_replaced(
    tmp_path: Path, children: list[list[str]], caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    table = pricetable.build(tmp_path)
    path = tmp_path / pricecache.FILE_NAME
    good = path.read_bytes()
    path.write_bytes(damage(good))
    pricetable._BUILT.clear()
    with caplog.at_level(logging.INFO, "spanvisor.cost"):
        assert pricetable.build(tmp_path) == table
    assert len(children) == 2
    assert len(_cost_lines(caplog)) == 1 and " ignored (" in _cost_lines(caplog)[0]
    assert path.read_bytes() == good  # replaced by the child's


def test_a_file_for_another_genai_prices_or_format_is_stale(
    tmp_path: Path, children: list[list[str]], caplog: pytest.LogCaptureFixture, child_json: bytes
) -> None:
    path = tmp_path / pricecache.FILE_NAME
    real = pricecache.key()
    assert real is not None
    stale = [
        {**real, "genai_prices": "0.0.1"},
        {**real, "format": priceexport.FORMAT - 1},
        {**real, "data": [1, 2]},
        {**real, "export": "0" * 64},  # another spanvisor's export code, FORMAT the same
    ]
    for other in stale:
        pricecache.write(path, other, child_json)
        pricetable._BUILT.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, "spanvisor.cost"):
            pricetable.build(tmp_path)
        [line] = _cost_lines(caplog)
        # One short line naming what differs, not both keys in full.
        differ = next(k for k in real if other[k] != real[k])
        assert f"is out of date ({differ})" in line and str(real["data"]) not in line
        assert json.loads(path.read_bytes().partition(b"\n")[0])["key"] == real
    assert len(children) == len(stale)


def test_the_key_names_the_export_codes_source(tmp_path: Path) -> None:
    key = pricecache.key()
    source = Path(priceexport.__file__).with_name("priceexport.py").read_bytes()
    assert key is not None and key["export"] == hashlib.sha256(source).hexdigest()
    # compiled: the extension's stub is loaded, the .py beside it is what says the code
    stub = tmp_path / "priceexport.cpython-312-x86_64-linux-gnu.so"
    stub.write_bytes(b"a stub")
    assert pricecache.export_digest(str(stub)) == hashlib.sha256(b"a stub").hexdigest()
    (tmp_path / "priceexport.py").write_bytes(b"FORMAT = 2")
    assert pricecache.export_digest(str(stub)) == hashlib.sha256(b"FORMAT = 2").hexdigest()
    # nothing to read: spanvisor's version (beside FORMAT in the key)
    version = f"spanvisor {pricecache.metadata.version('spanvisor')}"
    assert pricecache.export_digest(str(tmp_path / "gone" / "priceexport.py")) == version
    assert pricecache.export_digest(None) == version


@pytest.mark.parametrize("how", ["a file where the data dir would be", "a read-only file system"])
def test_a_data_dir_that_cannot_be_written_costs_the_child_and_one_line(
    tmp_path: Path,
    children: list[list[str]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    data_dir = tmp_path / "data"
    if how.startswith("a file"):
        data_dir.write_text("")
    else:
        data_dir.mkdir()

        def read_only(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(pricecache.tempfile, "mkstemp", read_only)
    for _start in range(2):  # two starts: each pays the child, each says so once
        pricetable._BUILT.clear()
        caplog.clear()
        p = Pricer()
        with caplog.at_level(logging.INFO, "spanvisor.cost"):
            p.warm(data_dir)
        assert p._table is not None
        assert len(_cost_lines(caplog)) == 1 and "not cached" in _cost_lines(caplog)[0]
    assert len(children) == 2
    assert not (tmp_path / "data" / pricecache.FILE_NAME).exists() or how.startswith("a file")


def test_without_genai_prices_installed_there_is_no_file(
    tmp_path: Path, children: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> str:
        raise pricecache.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pricecache.metadata, "version", missing)
    assert pricecache.key() is None
    pricetable.build(tmp_path)
    assert len(children) == 1 and not (tmp_path / pricecache.FILE_NAME).exists()


def test_a_child_that_read_another_genai_prices_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_json: bytes
) -> None:
    other = json.loads(child_json)
    other["genai_prices"] = "0.0.1"
    _child(monkeypatch, json.dumps(other).encode())
    pricetable.build(tmp_path)
    assert not (tmp_path / pricecache.FILE_NAME).exists()


def _first(data: dict[str, Any], wanted: Any) -> list[Any]:
    """The first list in the table's JSON that ``wanted`` accepts (edited in place)."""
    stack: list[Any] = [data["providers"]]
    while stack:
        node = stack.pop(0)
        if isinstance(node, list):
            if wanted(node):
                return node
            stack.extend(node)
    raise AssertionError("the table holds no such list")


def _every_price(data: dict[str, Any], price: str) -> None:
    for provider in data["providers"]:
        for model in provider[4]:
            for _when, four in model[1] or ():
                four[:] = [price if isinstance(v, str) else v for v in four]


def _is_tiered(v: Any) -> bool:
    if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], list) and v[1]):
        return False
    return all(isinstance(t, list) and len(t) == 2 and isinstance(t[0], int) for t in v[1])


def _is_dated(node: list[Any]) -> bool:
    return len(node) == 2 and isinstance(node[0], str) and node[0][:2] == "20" and isinstance(node[1], list)


def _is_hourly(node: list[Any]) -> bool:
    return len(node) == 2 and isinstance(node[0], list) and len(node[0]) == 2 and isinstance(node[0][0], int)


def _tiers(data: dict[str, Any]) -> list[Any]:
    return _first(data, _is_tiered)[1]  # type: ignore[no-any-return]


def _crafted(data: dict[str, Any], how: str) -> None:
    if how.startswith("every price "):
        _every_price(data, how.removeprefix("every price "))
    elif how == "tier starts descending":
        tiers = _tiers(data)
        tiers.append([tiers[-1][0] - 1, "1"])
    elif how == "a tier start negative":
        _tiers(data)[0][0] = -1
    elif how == "a tier start a string":
        _tiers(data)[0][0] = "200000"
    elif how == "an hourly interval past the day":
        _first(data, _is_hourly)[0][1] = 86_400 * 10**6 + 1
    elif how == "an hourly interval negative":
        _first(data, _is_hourly)[0][0] = -5
    elif how == "a start day that is no date":
        _first(data, _is_dated)[0] = "2025-13-45"
    elif how == "a regex that does not compile":
        _first(data, lambda n: n[:1] == ["regex"])[1] = "gpt-(4o"
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "every price NaN",
        "every price -1",
        "every price Infinity",
        "every price 1e999999",
        "every price lots",
        "tier starts descending",
        "a tier start negative",
        "a tier start a string",
        "an hourly interval past the day",
        "an hourly interval negative",
        "a start day that is no date",
        "a regex that does not compile",
    ],
)
def test_a_file_whose_digest_matches_but_whose_table_is_nonsense_is_ignored_and_replaced(
    tmp_path: Path, children: list[list[str]], caplog: pytest.LogCaptureFixture, child_json: bytes, how: str
) -> None:
    """A crafted (or corrupted then re-digested) file: its digest matches,
    its data is no table (before, NaN priced gpt-4o at NaN dollars)."""
    table = pricetable.build(tmp_path)
    path = tmp_path / pricecache.FILE_NAME
    good = path.read_bytes()
    key = pricecache.key()
    assert key is not None
    data = json.loads(child_json)
    _crafted(data, how)
    pricecache.write(path, key, json.dumps(data).encode())
    pricetable._BUILT.clear()
    with caplog.at_level(logging.INFO, "spanvisor.cost"):
        assert pricetable.build(tmp_path) == table
    assert len(_cost_lines(caplog)) == 1 and " ignored (" in _cost_lines(caplog)[0]
    assert path.read_bytes() == good and len(children) == 2
    p = Pricer()
    p.warm(tmp_path)
    assert p.price({"gen_ai.system": "openai"}, "gpt-4o", 1000, 100, 1).usd == pytest.approx(0.0035)


def test_a_file_over_the_cap_is_ignored_unread_and_replaced(
    tmp_path: Path, children: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    table = pricetable.build(tmp_path)
    path = tmp_path / pricecache.FILE_NAME
    good = path.read_bytes()
    assert len(good) * 20 < pricecache.MAX_BYTES  # room for genai-prices' data to grow
    with path.open("r+b") as f:
        f.truncate(pricecache.MAX_BYTES + 1)  # sparse: its size, without its bytes
    pricetable._BUILT.clear()
    with caplog.at_level(logging.INFO, "spanvisor.cost"):
        assert pricetable.build(tmp_path) == table
    assert len(_cost_lines(caplog)) == 1 and " ignored (" in _cost_lines(caplog)[0]
    assert path.read_bytes() == good


def test_a_fifo_in_place_of_the_file_does_not_block_the_start_and_is_replaced(
    tmp_path: Path, children: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / pricecache.FILE_NAME
    os.mkfifo(path)
    built: list[Any] = []
    with caplog.at_level(logging.INFO, "spanvisor.cost"):
        reader = threading.Thread(target=lambda: built.append(pricetable.build(tmp_path)), daemon=True)
        reader.start()
        reader.join(10)
        if reader.is_alive():  # blocked opening the FIFO: a writer's open and close lets it go
            with path.open("wb"):
                pass
            reader.join(10)
            pytest.fail("reading the cache blocked on a FIFO")
    assert built and len(_cost_lines(caplog)) == 1 and " ignored (" in _cost_lines(caplog)[0]
    assert path.is_file() and len(children) == 1


def test_a_write_removes_a_killed_writers_temporary_file_but_not_a_fresh_one(
    tmp_path: Path, children: list[list[str]]
) -> None:
    """A serve killed between its temporary file and the rename leaves the
    file; the next write removes it once a minute old, never one that a
    writer beside (a replica) may still be writing."""
    dead = tmp_path / f".{pricecache.FILE_NAME}.k1ll3d.tmp"
    fresh = tmp_path / f".{pricecache.FILE_NAME}.wr1t1ng.tmp"
    other = tmp_path / ".other.json.0ld.tmp"
    for f in (dead, fresh, other):
        f.write_bytes(b"{")
    old = time.time() - pricecache.STALE_TMP_S - 5
    for f in (dead, other):
        os.utime(f, (old, old))
    pricetable.build(tmp_path)
    assert len(children) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pricecache.FILE_NAME, fresh.name, other.name])
