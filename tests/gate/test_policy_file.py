"""The policy file is read on every call (``gate/policy.load``); what is
parsed from the same text is kept, so the launcher does not parse it again
for each call of a session, and an edit counts from the next call however
soon it comes (the same size, the same second)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spanvisor.gate.policy import PolicyError, load

ALLOW = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls"]\ndecision = "allow"\n'
DENY_ = ALLOW.replace('"allow"\n', '"deny"\n ')  # the same size


def test_an_edit_counts_from_the_next_load_whatever_its_size_and_time(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ALLOW)
    first = load(str(path))
    assert load(str(path)) is first  # parsed once for the same text
    stat = path.stat()
    path.write_text(DENY_)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as an edit within the clock's tick looks
    assert len(DENY_) == len(ALLOW) and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert [r.decision for r in load(str(path)).rules] == ["deny"]
    path.write_text("default = ")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load(str(path))
    path.write_text(ALLOW)
    assert [r.decision for r in load(str(path)).rules] == ["allow"]
