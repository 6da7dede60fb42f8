"""How the old flat docs/ pages moved into docs/reference/ and docs/design/.

One page at a time, and again after others edited the old page (a merge):

    python -m tests.docs.moves move conventions    # git mv, split off sections, relink the repository
    python -m tests.docs.moves pointers            # a short page at each old path: where each section went

``move`` renames the page with ``git mv`` (so a merge follows the rename),
moves the sections ``Move.split`` names to pages of their own (their
heading as the title, their subsections promoted; a stub heading with a link
stays where each was), and rewrites every relative link of every Markdown
file (CHANGELOG.md's links only: its text is history) and every ``docs/….md`` mention in
the code, tests and assets that pointed at the old page or a moved section. ``pointers`` writes, at each old
path, a page whose headings are the old page's (as ``git show REF:path`` has
it, ``--ref``, default ``HEAD``), each a line linking to where that section
is now, so links from outside the repository keep landing on their section.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.test_links import SKIP, slug

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Move:
    old: str
    new: str
    split: dict[str, str] = field(default_factory=dict)  # a section's anchor -> the page it becomes


def _r(name: str) -> str:
    return f"docs/reference/{name}.md"


def _d(name: str) -> str:
    return f"docs/design/{name}.md"


MOVES = {
    "conventions": Move("docs/conventions.md", _r("conventions")),
    "frameworks": Move("docs/frameworks.md", _r("frameworks")),
    "interventions": Move(
        "docs/interventions.md",
        _r("interventions"),
        {"the-control-api": _r("control-api"), "how-a-decision-travels": _d("decisions")},
    ),
    "policy": Move("docs/policy.md", _r("policy")),
    "coding-agents": Move("docs/coding-agents.md", _r("coding-agents")),
    "coding-agents-hooks": Move(
        "docs/coding-agents-hooks.md", _r("coding-agents-hooks"), {"what-the-gate-guarantees": _d("gate")}
    ),
    "slack": Move("docs/slack.md", _r("slack")),
    "slack-app": Move("docs/slack-app.md", _r("slack-app")),
    "events": Move("docs/events.md", _r("events")),
    "webhooks": Move("docs/webhooks.md", _r("webhooks")),
    "decision-logs": Move("docs/decision-logs.md", _r("decision-logs")),
    "observability": Move("docs/observability.md", _r("observability")),
    "plugins": Move("docs/plugins.md", _r("plugins")),
    "deploy": Move("docs/deploy.md", _r("deploy")),
    "architecture": Move("docs/architecture.md", _d("architecture")),
    "performance": Move("docs/performance.md", _d("performance")),
    "audit": Move("docs/audit.md", _d("audit")),
    "budgets": Move("docs/budgets.md", _d("budgets")),
}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(\[[^\]]*\]\(\s*<?)([^)\s>#]*)(#[^)\s>]*)?(>?(?:\s+\"[^\"]*\")?\s*\))")
_MENTION = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w./-]+\.md)(#[\w-]+)?")


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, slug) of each heading outside code blocks."""
    out, fence = [], None
    for i, line in enumerate(lines):
        m = re.match(r"^ *(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None and (h := _HEADING.match(line)):
            out.append((i, len(h.group(1)), slug(h.group(2))))
    return out


def split_off(text: str, anchor: str, page_link: str) -> tuple[str, str, set[str]]:
    """The page without the section ``anchor`` (a stub heading and a link
    in its place), the section as a page of its own, and its anchors."""
    lines = text.splitlines()
    heads = _headings(lines)
    start, level = next((i, lvl) for i, lvl, s in heads if s == anchor)
    end = next((i for i, lvl, _ in heads if i > start and lvl <= level), len(lines))
    section = lines[start:end]
    anchors = {s for i, _, s in heads if start <= i < end}
    promoted = []
    for j, line in enumerate(section):
        h = _HEADING.match(line)
        if h and any(i == start + j for i, _, _ in heads):
            promoted.append("#" * max(1, len(h.group(1)) - level + 1) + " " + h.group(2))
        else:
            promoted.append(line)
    title = _HEADING.match(lines[start])
    assert title is not None
    stub = [lines[start], "", f"Now a page of its own: [{title.group(2).strip('`')}]({page_link}).", ""]
    rest = lines[:start] + stub + lines[end:]
    return "\n".join(rest).rstrip("\n") + "\n", "\n".join(promoted).rstrip("\n") + "\n", anchors


def _files(*suffixes: str) -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*")
        if p.is_file() and p.suffix in suffixes and not SKIP.intersection(p.relative_to(ROOT).parts)
    )


class Relinker:
    """Where each old page, and each of its sections, is now."""

    def __init__(self, page: str, new: str, sections: dict[str, str]) -> None:
        self.page, self.new, self.sections = page, new, sections

    def target(self, path: str, anchor: str) -> str:
        if path != self.page:
            return path
        return self.sections.get(anchor.lstrip("#"), self.new)

    def markdown(self, text: str, was: str, now: str, mentions: bool = True) -> str:
        """Relative links of a page that was at ``was`` and is at ``now``."""

        def fix(m: re.Match[str]) -> str:
            head, target, anchor, tail = m.group(1), m.group(2), m.group(3) or "", m.group(4)
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                return m.group(0)
            resolved = os.path.normpath(os.path.join(os.path.dirname(was), target)) if target else was
            goes = self.target(resolved, anchor)
            if goes == resolved and was == now:
                return m.group(0)
            if goes == now:
                rel = ""
            else:
                rel = os.path.relpath(goes, os.path.dirname(now))
                rel += "/" if target.endswith("/") and not rel.endswith("/") else ""
            if not rel and not anchor:
                rel = os.path.basename(now)
            return f"{head}{rel}{anchor}{tail}"

        out: list[str] = []
        prose: list[str] = []  # a link's text may run over lines: prose is rewritten a paragraph at a time
        fence = None
        for line in text.split("\n"):
            m = re.match(r"^ *(`{3,}|~{3,})", line)
            if fence is None and not m:
                prose.append(line)
                continue
            if prose:
                out.append(_LINK.sub(fix, "\n".join(prose)))
                prose = []
            if fence is None:
                fence = m.group(1) if m else None
            elif line.strip().startswith(fence):
                fence = None
            out.append(line)
        if prose:
            out.append(_LINK.sub(fix, "\n".join(prose)))
        return self.mentions("\n".join(out)) if mentions else "\n".join(out)

    def mentions(self, text: str) -> str:
        def fix(m: re.Match[str]) -> str:
            ups, path = re.match(r"((?:\.\./)*)(.*)", m.group(1)).groups()  # type: ignore[union-attr]
            goes = self.target(path, m.group(2) or "")
            return m.group(0) if goes == path else f"{ups}{goes}{m.group(2) or ''}"

        return _MENTION.sub(fix, text)


def move(name: str) -> None:
    spec = MOVES[name]
    source = ROOT / spec.old
    text = source.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    pages: dict[str, str] = {}
    for anchor, dest in spec.split.items():
        # Written as seen from the old path: the relinking below reads every link so.
        link = os.path.relpath(dest, os.path.dirname(spec.old))
        text, page, anchors = split_off(text, anchor, link)
        sections.update((a, dest) for a in anchors)
        pages[dest] = page
    (ROOT / spec.new).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "mv", spec.old, spec.new], cwd=ROOT, check=True)
    relink = Relinker(spec.old, spec.new, sections)
    (ROOT / spec.new).write_text(relink.markdown(text, spec.old, spec.new), encoding="utf-8")
    for dest, page in pages.items():
        (ROOT / dest).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / dest).write_text(relink.markdown(page, spec.old, dest), encoding="utf-8")
    done = {spec.new, *pages}
    for path in _files(".md"):
        rel = str(path.relative_to(ROOT))
        if rel not in done:
            before = path.read_text(encoding="utf-8")
            # CHANGELOG.md is history: its text says what was where; only its links follow the page.
            after = relink.markdown(before, rel, rel, mentions=rel != "CHANGELOG.md")
            if after != before:
                path.write_text(after, encoding="utf-8")
    for path in [*_files(".py", ".yml", ".yaml", ".toml", ".json", ".sh", ".txt"), ROOT / "Makefile"]:
        if path.resolve() == Path(__file__).resolve():
            continue
        before = path.read_text(encoding="utf-8")
        after = relink.mentions(before)
        if after != before:
            path.write_text(after, encoding="utf-8")
    subprocess.run(["git", "add", "-A", "docs"], cwd=ROOT, check=True)


def pointers(ref: str) -> None:
    """At each old path, the old page's headings, each linking to where its section is now."""
    for spec in MOVES.values():
        old = subprocess.run(
            ["git", "show", f"{ref}:{spec.old}"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if old.returncode != 0:
            raise SystemExit(f"{spec.old} is not in {ref}: {old.stderr.strip()}")
        lines = old.stdout.splitlines()
        heads = _headings(lines)
        here = os.path.dirname(spec.old)
        where: dict[str, str] = {}
        for anchor, dest in spec.split.items():
            _, _, anchors = split_off(old.stdout, anchor, "")
            where.update((a, dest) for a in anchors)
        title = _HEADING.match(lines[heads[0][0]]) if heads else None
        name = title.group(2) if title else spec.old
        new = os.path.relpath(spec.new, here)
        out = [f"# {name}", "", f"This page moved to [{spec.new.removeprefix('docs/')}]({new}).", ""]
        if spec.split:
            parts = ", ".join(f"[{d.removeprefix('docs/')}]({os.path.relpath(d, here)})" for d in spec.split.values())
            out += [f"Some of its sections are pages of their own now: {parts}.", ""]
        out += ["Each of its sections, and where it is now:", ""]
        for i, level, anchor in heads[1:]:
            h = _HEADING.match(lines[i])
            assert h is not None
            dest = os.path.relpath(where.get(anchor, spec.new), here)
            out += [f"{'#' * max(2, level)} {h.group(2)}", f"Now [here]({dest}#{anchor}).", ""]
        (ROOT / spec.old).write_text("\n".join(out).rstrip("\n") + "\n", encoding="utf-8")
        subprocess.run(["git", "add", spec.old], cwd=ROOT, check=True)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "move":
        for name in argv[1:]:
            move(name)
        return 0
    if argv and argv[0] == "pointers":
        pointers(argv[argv.index("--ref") + 1] if "--ref" in argv else "HEAD")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
