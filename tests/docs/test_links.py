"""Every relative link in the repository's Markdown resolves: the file
exists and, for ``page.md#anchor``, the page has that heading (GitHub's
anchors). The same for every ``docs/….md#anchor`` the code, the tests and
the shipped assets mention (a log line, a setting's help, a comment), so a
page moved or a heading renamed fails here instead of leaving a dead link."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from tests.docs.reference import ROOT

SKIP = {".venv", "node_modules", ".git", "build", "dist", ".bench-peers", ".pytest_cache", ".mypy_cache"}
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEF = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*(\S*[/.#]\S*)[ \t]*$", re.M)
_FENCE = re.compile(r"^ *(`{3,}|~{3,})")
_MENTION = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w./-]+\.md)(#[\w-]+)?")
# docs/… paths that are not this repository's: other projects' pages a
# comment cites (their folders are not ours), and a test's sample path.
NOT_OURS = {"docs/a.md"}


def _files(*suffixes: str) -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).parts
        if path.is_file() and path.suffix in suffixes and not SKIP.intersection(rel):
            out.append(path)
    return sorted(out)


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    keep, fence = [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            keep.append(line)
    return "\n".join(keep)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(page.read_text(encoding="utf-8")).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return frozenset(found)


def _broken(source: Path, target: str, base: Path) -> str | None:
    path_part, _, anchor = target.partition("#")
    dest = (base / path_part).resolve() if path_part else source
    if not dest.exists():
        return f"{target}: no such file"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: {dest.relative_to(ROOT)} has no heading #{anchor}"
    return None


def test_every_relative_link_in_the_markdown_resolves() -> None:
    broken = []
    for page in _files(".md"):
        text = _prose(page.read_text(encoding="utf-8"))
        for target in [*_LINK.findall(text), *_DEF.findall(text)]:
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:
            if problem := _broken(page, target, page.parent):
                broken.append(f"{page.relative_to(ROOT)}: {problem}")
    assert not broken, "\n".join(broken)


def test_every_docs_page_the_code_and_assets_mention_exists() -> None:
    broken = []
    for path in [*_files(".py", ".yml", ".yaml", ".toml", ".json", ".sh", ".txt"), ROOT / "Makefile"]:
        if path.name == "test_links.py" and path.parent.name == "docs":
            continue  # it names the old pages by design
        for mentioned, anchor in _MENTION.findall(path.read_text(encoding="utf-8", errors="replace")):
            page = mentioned.lstrip("./")
            folder = page.split("/")[1:-1]
            if page in NOT_OURS or (folder and not (ROOT / "docs" / folder[0]).is_dir()):
                continue
            target = page + anchor
            if problem := _broken(path, target.removeprefix("../"), ROOT):
                broken.append(f"{path.relative_to(ROOT)}: {problem}")
    assert not broken, "\n".join(broken)


def test_the_slugs_are_githubs() -> None:
    assert slug("Sanitisation and `notes`") == "sanitisation-and-notes"
    assert slug("`spanvisor login`") == "spanvisor-login"
    assert slug("Two people, never the requester") == "two-people-never-the-requester"
    assert (
        slug("`GET`, `POST /v1/control/grants`, `DELETE /v1/control/grants/{grant_id}`")
        == "get-post-v1controlgrants-delete-v1controlgrantsgrant_id"
    )
    assert slug("1. Point Prometheus at spanvisor") == "1-point-prometheus-at-spanvisor"
