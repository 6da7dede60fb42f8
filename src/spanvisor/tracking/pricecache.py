"""The price table kept in a file of the data dir, so that a ``serve`` does
not run the table's child process (about a second of CPU: Python's start
and genai-prices' import) on every start.

The file is one line of JSON naming what the table was read from (the
table's format, the SHA-256 of spanvisor's export code, genai-prices'
version, the size and time of its data module) and the SHA-256 of the
rest, then the table as the child printed it. It is read in place of the child only when that line
matches what is installed, the digest the bytes, and the table passes
:func:`.pricetable.load`'s checks; anything else (another version, a torn
or damaged file, one that is not a regular file or is too large, prices
that are no prices, one that is not there) is ignored with one log line,
and the table read from the child replaces it. It is written to a
temporary file beside it and renamed over it, so a reader sees the old
file or the new one, never a part; a write removes the temporary files
left by a writer killed before its rename, once a minute old. A data dir
that cannot be written to costs the child on every start, nothing else:
the cache is only an optimisation.

The digest detects damage, not tampering: whoever can write the data dir
can write a file with a matching digest. The file is trusted as much as
the data dir is (the journal and ``state.db`` are there too); the checks
are against damage and obvious nonsense (a price NaN or negative, a regex
that does not compile, a FIFO that would block the start), not against a
crafted file: a regex that backtracks catastrophically, say, is not
detected.
"""

from __future__ import annotations

import email.parser  # noqa: F401 - what importlib.metadata imports on its first read, here rather than on the pipeline's thread
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from importlib import metadata, util
from pathlib import Path
from typing import Any

from spanvisor.tracking import priceexport
from spanvisor.tracking.priceexport import FORMAT

log = logging.getLogger("spanvisor.cost")

FILE_NAME = "pricetable.json"
# The most a cache file may hold: the table is 0.26 MB (genai-prices 0.2.3,
# 2,330 models); 60 times that leaves room for genai-prices' data to grow
# for years, and refuses a file that would take the start's memory.
MAX_BYTES = 16 * 1024 * 1024
# How old a temporary file beside the cache file must be to be a dead
# writer's: a write takes milliseconds, a minute is far past any live one.
STALE_TMP_S = 60.0


def key() -> dict[str, Any] | None:
    """What the table would be read from now, without importing genai-prices
    (None when it is not installed: no cache then)."""
    try:
        version = metadata.version("genai-prices")
        spec = util.find_spec("genai_prices")
    except (metadata.PackageNotFoundError, ImportError, ValueError):
        return None
    data: list[int] | None = None
    if spec is not None and spec.origin:
        try:
            st = os.stat(Path(spec.origin).parent / "data.py")
            data = [st.st_size, st.st_mtime_ns]
        except OSError:
            pass  # no data module to stat (a zipped or compiled install): the version alone
    return {"format": FORMAT, "export": export_digest(priceexport.__file__), "genai_prices": version, "data": data}


def export_digest(module_file: str | None) -> str:
    """What the export code (:mod:`.priceexport`, loaded from ``module_file``)
    is: the SHA-256 of its source, so that a spanvisor whose export writes
    another table reads no table an older one wrote, FORMAT bumped or not.
    Compiled, the module is an extension whose code lies in the group's
    shared library (the module's own file is a stub that does not change
    with it), so the ``.py`` the wheel holds beside it is read first; else
    the file the module was loaded from; else spanvisor's version."""
    if module_file:
        loaded = Path(module_file)
        for candidate in (loaded.with_name(loaded.name.split(".", 1)[0] + ".py"), loaded):
            try:
                return hashlib.sha256(candidate.read_bytes()).hexdigest()
            except OSError:
                continue
    try:  # the package's metadata: importing spanvisor's own __init__ here would cross the layers
        return f"spanvisor {metadata.version('spanvisor')}"
    except metadata.PackageNotFoundError:
        return "spanvisor, version unknown"


def read(path: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The table the file holds when it was written for ``wanted``; else
    None, said in one line when there was a file."""
    try:
        raw = _read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # none yet (what writing it says, if it cannot be written)
    except OSError as exc:
        log.info("price table cache %s not read (%s): reading genai-prices' data again", path, exc)
        return None
    try:
        if raw is None:
            raise ValueError(f"not a regular file of at most {MAX_BYTES} bytes")
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        if not isinstance(header, dict):
            raise ValueError("no header")
        if header.get("key") != wanted:
            found = header.get("key")
            # One short line: which parts of the key differ, not both keys in full.
            differ = sorted(k for k in wanted if not isinstance(found, dict) or found.get(k) != wanted[k])
            log.info(
                "price table cache %s is out of date (%s): reading genai-prices' data again", path, ", ".join(differ)
            )
            return None
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise ValueError("its digest does not match")
        table = json.loads(body)
        if not isinstance(table, dict):
            raise ValueError("not a table")
        return table
    except ValueError as exc:  # json's errors are ValueErrors too
        log.info("price table cache %s ignored (%s): reading genai-prices' data again", path, exc)
        return None


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary files a writer killed before its rename left
    beside ``path``; only those older than STALE_TMP_S, never another
    writer's (a replica's) that is still being written."""
    prefix, now = f".{path.name}.", time.time()
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TMP_S:
                        os.unlink(entry.path)
                except OSError:
                    pass  # gone already (another writer's sweep), or not ours to remove
    except OSError:
        pass  # the table is written: a leftover stays until the next write


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes; None when it is not a regular file (a FIFO would
    block the read, and the start, for ever; a device might never end) or holds
    more than MAX_BYTES."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            return None
        raw = f.read(MAX_BYTES + 1)
    return None if len(raw) > MAX_BYTES else raw


def write(path: Path, wanted: dict[str, Any], table_json: bytes) -> None:
    """Keep the table (the child's JSON) for ``wanted``; a data dir that
    cannot be written to is said in one line."""
    header = json.dumps({"key": wanted, "sha256": hashlib.sha256(table_json).hexdigest()}, separators=(",", ":"))
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(header.encode() + b"\n" + table_json)
        os.replace(tmp, path)
        _remove_leftovers(path)
    except OSError as exc:
        log.info("price table not cached in %s (%s): the next start reads genai-prices' data again", path, exc)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


__all__ = ["FILE_NAME", "MAX_BYTES", "STALE_TMP_S", "export_digest", "key", "read", "write"]
