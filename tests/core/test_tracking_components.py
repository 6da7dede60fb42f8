"""tracking/ as components: the task's record and the concerns that read it
import nothing back, and no import cycle runs through the package (grimp:
imports under TYPE_CHECKING count too)."""

from __future__ import annotations

import grimp

CONCERNS = ("approvals", "artifacts", "calls", "results", "stalls", "statefacts", "taskbudget")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("spanvisor")


def test_no_import_cycle_in_tracking() -> None:
    g = _graph()
    mods = {m for m in g.modules if m.startswith("spanvisor.tracking.")}
    cycles = [
        (a, b)
        for a in sorted(mods)
        for b in sorted(g.find_modules_directly_imported_by(a) & mods)
        if g.chain_exists(importer=b, imported=a)
    ]
    assert cycles == []


def test_the_record_and_the_concerns_never_import_the_orchestrator() -> None:
    g = _graph()
    for name in ("record", "settings", *CONCERNS):
        module = f"spanvisor.tracking.{name}"
        assert not g.chain_exists(importer=module, imported="spanvisor.tracking.taskstate"), module
        assert not g.chain_exists(importer=module, imported="spanvisor.tracking.tracker"), module
