"""The words of a parsed shell command: what each is when it has no
expansion (quotes and escapes removed), else its text as written; read from
the real bytes of the command by offset (:mod:`.shell` parses a shape of
it with non-ASCII characters as ASCII letters).
"""

from __future__ import annotations

import threading

import tree_sitter


class Source(threading.local):
    """The bytes being read (a stack: ``bash -c`` strings nest), per thread."""

    def __init__(self) -> None:
        self.stack: list[bytes] = []


SOURCE = Source()


def text(node: tree_sitter.Node) -> str:
    return SOURCE.stack[-1][node.start_byte : node.end_byte].decode("utf-8", "replace")


def word(node: tree_sitter.Node) -> str:
    """A word as the gate shows and matches it: its literal value, else its
    source text."""
    value = literal(node)
    return value if value is not None else text(node)


def literal(node: tree_sitter.Node) -> str | None:
    """The word's value when it has no expansion (quotes and escapes
    removed); None when part of it is only known at run time."""
    kind = node.type
    if kind in ("word", "number", "command_name"):
        if kind == "command_name":
            return literal(node.children[0]) if node.child_count == 1 else None
        return unescape(text(node))
    if kind == "raw_string":
        return text(node)[1:-1]
    if kind == "string":
        parts = [c for c in node.children if c.type not in ('"',)]
        if all(c.type == "string_content" for c in parts):
            return unescape_dq("".join(text(c) for c in parts))
        return None
    if kind == "concatenation":
        values = [literal(c) for c in node.children]
        if any(v is None for v in values):
            return None
        joined = "".join(v or "" for v in values)
        return None if braces(joined) else joined
    return None


def prefix(node: tree_sitter.Node) -> str | None:
    """What a word that is not literal certainly starts with, as one word
    (``"--message=$x"``: ``--message=``; ``"fix: $(date)"``: ``fix: ``);
    None when nothing is known of its start, or when an unquoted expansion
    in it may split it into more words (``foo$x``: x may be `` --output=y``)."""
    parts = list(node.children) if node.type == "concatenation" else [node]
    known: list[str] = []
    for i, part in enumerate(parts):
        value = literal(part)
        if value is not None:
            known.append(value)
            continue
        if part.type != "string":
            return None  # an unquoted expansion: it may split
        inner = [c for c in part.children if c.type != '"']
        lead = []
        for c in inner:
            if c.type != "string_content":
                break
            lead.append(unescape_dq(text(c)))
        known.append("".join(lead))
        if any(p.type not in ("string", "raw_string", "word") for p in parts[i + 1 :]):
            return None
        break
    start = "".join(known)
    return start or None


def braces(text: str) -> bool:
    """Whether bash would brace-expand ``text`` (``{rm,-rf,/}`` runs rm)."""
    start = text.find("{")
    while start != -1:
        end = text.find("}", start)
        if end == -1:
            return False
        inner = text[start + 1 : end]
        if "," in inner or ".." in inner:
            return True
        start = text.find("{", start + 1)
    return False


def globbing(name: str) -> bool:
    return any(ch in name for ch in "*?[{") or name.startswith("~")


def unescape(text: str, escapable: str | None = None) -> str:
    """``text`` with bash's backslash escapes removed: before any character
    outside quotes, only before ``escapable`` ones inside double quotes; a
    backslash-newline is a line continuation, nothing."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and (escapable is None or text[i + 1] in escapable):
            if text[i + 1] != "\n":
                out.append(text[i + 1])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def unescape_dq(text: str) -> str:
    return unescape(text, '$`"\\\n')


__all__ = ["SOURCE", "braces", "globbing", "literal", "prefix", "text", "word"]
