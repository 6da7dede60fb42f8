"""A reader for the YAML subset the Collector configs in collector-config/ use.

No YAML library is a dependency, so this reads block mappings, block lists,
plain, quoted and folded (``>-``) scalars, flow lists of plain words and
comments; anything else (anchors, flow mappings, literal blocks) raises, so
a file outside the subset fails loudly rather than passing unchecked.
"""

from __future__ import annotations

import re
from typing import Any

_COMMENT = re.compile(r"(^|\s)#.*$")


def _lines(text: str) -> list[tuple[int, str]]:
    out = []
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).rstrip()
        if line.strip():
            out.append((len(line) - len(line.lstrip(" ")), line.strip()))
    return out


def _scalar(s: str) -> Any:
    s = s.strip()
    if s in ("true", "false"):
        return s == "true"
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    if s.startswith(("'", '"')):
        return s[1:-1]
    if s.startswith("[") and s.endswith("]") and not re.search(r"[\[\]{}'\"]", s[1:-1]):
        return [_scalar(x) for x in s[1:-1].split(",") if x.strip()]
    if s.startswith(("{", "[", "&", "*", "|")):
        raise ValueError(f"unsupported YAML: {s}")
    return s


def parse_yaml(text: str) -> Any:
    lines = _lines(text)
    pos = 0

    def folded(ind: int) -> str:
        nonlocal pos
        parts = []
        while pos < len(lines) and lines[pos][0] > ind:
            parts.append(lines[pos][1])
            pos += 1
        return " ".join(parts)

    def block(indent: int) -> Any:
        nonlocal pos
        if pos >= len(lines):
            return None
        is_list = lines[pos][1].startswith("- ") or lines[pos][1] == "-"
        result: Any = [] if is_list else {}
        while pos < len(lines):
            ind, text = lines[pos]
            if ind < indent:
                break
            if ind > indent:
                raise ValueError(f"bad indentation at {text!r}")
            pos += 1
            if is_list:
                item = text[2:].strip()
                result.append(folded(ind) if item == ">-" else _scalar(item))
                continue
            key, sep, rest = text.partition(":")
            if not sep:
                raise ValueError(f"expected 'key:' at {text!r}")
            rest = rest.strip()
            if rest == ">-":
                result[key] = folded(ind)
            elif rest:
                result[key] = _scalar(rest)
            elif pos < len(lines) and lines[pos][0] > ind:
                result[key] = block(lines[pos][0])
            elif pos < len(lines) and lines[pos][0] == ind and lines[pos][1].startswith("- "):
                result[key] = block(ind)
            else:
                result[key] = None
        return result

    return block(0)
