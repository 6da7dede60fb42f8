"""Every path a tool input names is decided: under a rule that denies
``/etc/*``, a forbidden path anywhere in the input (a list, a nested
object, a patch's text, beside allowed ones) is never allowed; under a
rule that allows ``src/*``, a call is allowed only when every path it
names is inside ``src/``."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.gate.contracts import Call
from spanvisor.gate.paths import PATH_KEYS, named
from spanvisor.gate.policy import parse

CWD = "/work/repo"
POLICY = parse(
    {
        "default": "ask",
        "rule": [
            {"name": "no-etc", "command": ["/etc/*"], "decision": "deny"},
            {"name": "src", "command": ["src/*"], "decision": "allow"},
        ],
    }
)
FORBIDDEN = ["/etc/shadow", "/etc/ssh/sshd_config", "../../etc/passwd", "src/../../../etc/shadow", "/etc/./shadow"]
ALLOWED = ["src/a.py", "src/pkg/b.py", f"{CWD}/src/c.py", "src/./d.py"]
TOOLS = ["read_many_files", "Read", "Write", "Edit", "MultiEdit", "glob", "apply_patch", "list_directory", "x_tool"]


def call(tool: str, tool_input: dict[str, Any]) -> Call:
    return Call("gemini", "BeforeTool", "s", tool, tool_input, None, CWD)


def codex_patch(paths: list[str]) -> str:
    body = []
    for i, p in enumerate(paths):
        kind = ("Add", "Update", "Delete")[i % 3]
        body += [f"*** {kind} File: {p}", "+x"]
    return "\n".join(["*** Begin Patch", *body, "*** End Patch"])


def unified(paths: list[str]) -> str:
    return "\n".join(f"diff --git a/{p} b/{p}\n--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-x\n+y" for p in paths)


def shaped(paths: list[str], shape: int, key: str) -> dict[str, Any]:
    """``paths`` put in the input in one of the shapes tools use."""
    shapes: list[dict[str, Any]] = [
        {"paths": paths},
        {key: paths[0], "paths": paths[1:]},
        {"edits": [{key: p} for p in paths]},
        {"files": paths, "include": ["src/*.md"]},
        {"input": codex_patch(paths)},
        {"patch": unified(paths)},
        {"nested": {"deeper": {"paths": paths}}},
        {"args": [{"file_path": p, "content": "y"} for p in paths]},
        {"command_args": [codex_patch(paths)]},
        {key: paths[0], "more": [{"include": paths[1:]}]},
    ]
    return shapes[shape % len(shapes)]


KEYS = sorted(PATH_KEYS - {"paths", "files", "include"})


@settings(max_examples=400)
@given(
    st.lists(st.sampled_from(ALLOWED), max_size=4),
    st.sampled_from(FORBIDDEN),
    st.integers(0, 10),
    st.integers(0, 100),
    st.sampled_from(KEYS),
    st.sampled_from(TOOLS),
)
def test_a_forbidden_path_anywhere_in_the_input_is_denied(
    allowed: list[str], forbidden: str, at: int, shape: int, key: str, tool: str
) -> None:
    paths = [*allowed]
    paths.insert(at % (len(paths) + 1), forbidden)
    tool_input = shaped(paths, shape, key)
    ruling = POLICY.decide(call(tool, tool_input))
    assert ruling.verdict == "deny", (json.dumps(tool_input), ruling)


@settings(max_examples=200)
@given(
    st.lists(st.sampled_from(ALLOWED), min_size=1, max_size=4),
    st.sampled_from(["README.md", "/tmp/x", "docs/a.md", "src2/a"]),
    st.integers(0, 10),
    st.integers(0, 100),
    st.sampled_from(KEYS),
)
def test_the_call_is_allowed_only_when_every_path_is(
    allowed: list[str], outside: str, at: int, shape: int, key: str
) -> None:
    assert POLICY.decide(call("read_many_files", shaped(allowed, shape, key))).verdict == "allow"
    paths = [*allowed]
    paths.insert(at % (len(paths) + 1), outside)
    ruling = POLICY.decide(call("read_many_files", shaped(paths, shape, key)))
    assert ruling.verdict == "ask", ruling  # the part no rule allows asks (the default)


def test_the_reproducer_read_many_files_with_a_list() -> None:
    ruling = POLICY.decide(call("read_many_files", {"paths": ["/etc/shadow"]}))
    assert (ruling.verdict, ruling.by) == ("deny", "policy:no-etc")


def test_patches_name_the_files_they_touch() -> None:
    text = codex_patch(["a.py", "b.py"]) + "\n*** Move to: c.py"
    assert named({"input": text}) == ("a.py", "b.py", "c.py")
    assert named({"patch": unified(["x/y.py"])}) == ("x/y.py",)
    assert named({"paths": ["a", 3, None, "a"], "path": "b"}) == ("a", "b")


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from([*KEYS, "x", "paths"]), inner),
        max_leaves=30,
    )
)
def test_any_input_shape_is_read_without_an_error(value: Any) -> None:
    tool_input = value if isinstance(value, dict) else {"v": value}
    ruling = POLICY.decide(call("x_tool", tool_input))
    assert ruling.verdict in ("allow", "ask", "deny")
