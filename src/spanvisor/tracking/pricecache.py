"""The price table kept in a file of the data dir, so that a ``serve`` does
not run the table's child process (about a second of CPU: Python's start
and genai-prices' import) on every start.

The file is one line of JSON naming what the table was read from (the
table's format, genai-prices' version, the size and time of its data
module) and the SHA-256 of the rest, then the table as the child printed
it. It is read in place of the child only when that line matches the
installed genai-prices and the digest the bytes; anything else (another
version, a torn or edited file, one that is not there) is ignored with one
log line, and the table read from the child replaces it. It is written to
a temporary file beside it and renamed over it, so a reader sees the old
file or the new one, never a part. A data dir that cannot be written to
costs the child on every start, nothing else: the cache is only an
optimisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from importlib import metadata, util
from pathlib import Path
from typing import Any

from spanvisor.tracking.priceexport import FORMAT

log = logging.getLogger("spanvisor.cost")

FILE_NAME = "pricetable.json"


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
    return {"format": FORMAT, "genai_prices": version, "data": data}


def read(path: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The table the file holds when it was written for ``wanted``; else
    None, said in one line when there was a file."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None  # none yet (what writing it says, if it cannot be written)
    except OSError as exc:
        log.info("price table cache %s not read (%s): reading genai-prices' data again", path, exc)
        return None
    try:
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        if not isinstance(header, dict):
            raise ValueError("no header")
        if header.get("key") != wanted:
            found = header.get("key")
            log.info("price table cache %s is for %s, not %s: reading genai-prices' data again", path, found, wanted)
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
    except OSError as exc:
        log.info("price table not cached in %s (%s): the next start reads genai-prices' data again", path, exc)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


__all__ = ["FILE_NAME", "key", "read", "write"]
