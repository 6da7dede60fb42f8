"""The reference agrees with the code.

* docs/reference/settings.md and docs/reference/cli.md are what
  ``make reference`` generates from the settings tables and the CLI's parser
  now; every ``SPANVISOR_*`` variable the code or the shipped assets name is
  on the settings page, and every variable it lists as read elsewhere is
  still read.
* The span conventions page names every key the tracker reads
  (``conventions.READ_KEYS``), every span and live-channel event, every
  approval key, and no ``agent.*`` key the code does not know.
* The control API's reference names every route ``serve`` answers, and
  documents no route it does not; the event stream's page names every kind.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.reference import ELSEWHERE, PAGES, REGENERATE, ROOT, SETTINGS_MD

CONVENTIONS = ROOT / "docs" / "reference" / "conventions.md"
CONTROL_API = ROOT / "docs" / "reference" / "control-api.md"
HOOKS = ROOT / "docs" / "reference" / "coding-agents-hooks.md"
EVENTS = ROOT / "docs" / "reference" / "events.md"
_VARIABLE = re.compile(r"\bSPANVISOR_[A-Z0-9_]*[A-Z0-9]\b")


def test_the_generated_reference_is_current() -> None:
    for path, make in PAGES.items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `{REGENERATE}`"
        assert path.read_text(encoding="utf-8") == make(), (
            f"{path.relative_to(ROOT)} and the code disagree: run `{REGENERATE}` and commit the page"
        )


def _read_by_the_code() -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "plugins").rglob("*.py"), ROOT / "setup.py"]
    files += [p for d in ("grafana", "collector-config", "docs/deploy") for p in (ROOT / d).rglob("*") if p.is_file()]
    for path in files:
        if path.suffix in (".py", ".yml", ".yaml", ".json", ".service", ".toml", ""):
            for name in _VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace")):
                where.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return where


def test_every_variable_the_code_reads_is_in_the_settings_reference() -> None:
    page = SETTINGS_MD.read_text(encoding="utf-8")
    where = _read_by_the_code()
    missing = {name: sorted(files)[:2] for name, files in where.items() if f"`{name}`" not in page}
    assert not missing, f"not on {SETTINGS_MD.name} (add to a settings table, or to ELSEWHERE): {missing}"
    stale = [name for name in ELSEWHERE if name not in where]
    assert not stale, f"ELSEWHERE lists variables no code reads: {stale}"


def _code_keys() -> tuple[set[str], set[str]]:
    """(the keys the tracker reads or the helpers write, every dotted string the conventions modules name)."""
    from spanvisor.spans import conventions as cv
    from spanvisor.spans import current, live

    named: set[str] = set()
    for mod in (cv, current, live):
        for value in vars(mod).values():
            if isinstance(value, str):
                named.add(value)
            elif isinstance(value, frozenset | set | tuple):
                named |= {v for v in value if isinstance(v, str)}
    read = set(cv.READ_KEYS) | set(cv.KNOWN_EVENTS) | set(cv.STAMP_KEYS)
    read |= {v for k, v in vars(cv).items() if k.startswith(("EVENT_", "APPROVAL_", "LIVE_", "ARTIFACT_"))}
    read |= {live.RECORD_ID}
    return read, named


def test_the_conventions_page_names_every_key_the_code_reads() -> None:
    page = CONVENTIONS.read_text(encoding="utf-8")
    read, _ = _code_keys()
    missing = sorted(k for k in read if isinstance(k, str) and f"`{k}`" not in page)
    assert not missing, f"{CONVENTIONS.name} does not name: {missing}"
    assert "`agent.result.<name>`" in page


def test_the_conventions_page_names_no_agent_key_the_code_does_not_know() -> None:
    page = CONVENTIONS.read_text(encoding="utf-8")
    _, named = _code_keys()
    unknown = sorted(set(re.findall(r"`(agent\.[a-z0-9_.]+)`", page)) - named)
    assert not unknown, f"{CONVENTIONS.name} names keys no code reads or writes: {unknown}"


def _routes() -> set[tuple[str, str]]:
    from spanvisor.receiver.control_api import make_app

    app = make_app(None)
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method not in ("HEAD", "*") and r.resource is not None
    }


def _known(path: str, routes: set[str]) -> bool:
    """A route with its {parameters} filled in any way (``/v1/control/tasks/T``),
    or, ending in ``/``, the start of one."""
    want = path.rstrip("/").split("/")
    for route in routes:
        have = route.split("/")
        fits = len(want) == len(have) or (path.endswith("/") and len(want) < len(have))
        if fits and all(h == w or (h.startswith("{") and w) for h, w in zip(have, want, strict=False)):
            return True
    return False


def test_every_control_route_is_documented_and_every_documented_route_exists() -> None:
    pages = {
        "/v1/events": EVENTS,
        "/v1/hooks/claude-code": HOOKS,
    }
    routes = _routes()
    for method, path in sorted(routes):
        page = pages.get(path, CONTROL_API)
        text = page.read_text(encoding="utf-8")
        assert path in text, f"{method} {path} is not in {page.relative_to(ROOT)}"
    paths = {path for _, path in routes}
    named = set(re.findall(r"/v1/control/[A-Za-z0-9_{}/-]*", CONTROL_API.read_text(encoding="utf-8")))
    ghosts = sorted(p for p in named if not _known(p, paths))
    assert not ghosts, f"{CONTROL_API.name} names routes serve does not answer: {ghosts}"


def test_the_event_stream_page_names_every_kind() -> None:
    from spanvisor.stream.sse import KINDS

    text = EVENTS.read_text(encoding="utf-8")
    missing = [kind for kind in KINDS if f"`{kind}`" not in text]
    assert not missing, f"{EVENTS.name} does not name the kinds {missing}"


def test_the_pages_say_how_they_are_made() -> None:
    for path in PAGES:
        head = Path(path).read_text(encoding="utf-8")[:400]
        assert REGENERATE in head, path
