"""The gate's bounded read gives what ``read(limit + 1)`` gives, from a file
and from a pipe, whatever the sizes against its chunk."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.gate import policy
from spanvisor.gate.readlimit import CHUNK, read_at_most

_SIZES = st.sampled_from([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7]) | st.integers(0, 4 * CHUNK)


@given(size=_SIZES, limit=_SIZES)
def test_as_read_of_one_more_than_the_limit(size: int, limit: int) -> None:
    data = bytes(i % 251 for i in range(size))
    got = read_at_most(io.BufferedReader(io.BytesIO(data)), limit)  # type: ignore[arg-type]
    assert got == io.BytesIO(data).read(limit + 1)
    assert (len(got) > limit) == (size > limit)


def test_a_pipe_written_in_pieces_is_read_to_its_end_or_the_bound() -> None:
    # A pipe gives what its writer has written so far: the read goes on to
    # the end, as read(limit + 1) does, and stops one byte past the bound.
    for size, limit in ((5 * CHUNK + 3, 10 * CHUNK), (5 * CHUNK + 3, 2 * CHUNK)):
        r, w = os.pipe()

        def write(size: int = size, w: int = w) -> None:
            with os.fdopen(w, "wb", buffering=0) as out, contextlib.suppress(BrokenPipeError):
                # Broken once a bounded read has stopped and closed its end.
                for start in range(0, size, 1000):
                    out.write(b"x" * min(1000, size - start))

        writer = threading.Thread(target=write)
        writer.start()
        with os.fdopen(r, "rb") as f:
            got = read_at_most(f, limit)
        writer.join()
        assert len(got) == min(size, limit + 1)


def test_a_policy_file_over_its_bound_is_still_refused(tmp_path: Path) -> None:
    big = tmp_path / "policy.toml"
    big.write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    try:
        policy.read_text(str(big))
    except policy.PolicyError as exc:
        assert "over 16 MiB" in str(exc)
    else:
        raise AssertionError("a policy file over 16 MiB was read")
