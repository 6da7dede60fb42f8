"""An optional compiled tracker: ``SPANVISOR_COMPILE=1 pip install .`` (or
``pip wheel .``) compiles the tracker's modules with mypyc; without it the
build is pure Python, as ``make install`` (editable) and every default
install are.

The compiled modules are the same source: the wheel holds the ``.py`` files
beside the extension modules, and Python imports an extension first. Where
no C compiler works, each extension is optional: the build warns and the
wheel is pure Python. Everything else about the package is in
``pyproject.toml``. Measured: docs/performance.md, "A compiled tracker".
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

# The modules the tracker's profile spends its time in. Left out, with the
# reason: spans/data.py (SpanData is built by callers that may hand a field
# something else than its type says; a compiled dataclass would refuse it),
# tracking/recent.py (a set subclass, which mypyc cannot compile natively),
# the receiver's decode (5 % faster compiled: its time is protobuf's), and
# events.py (the events' slotted dataclasses are built by a slot setter
# that only a Python class allows; sinks and codecs read them everywhere).
NATIVE_DIRS = ("src/spanvisor/tracking", "src/spanvisor/spans")
NATIVE_EXTRA = ("src/spanvisor/budgets/ledger.py",)
NOT_NATIVE = {"src/spanvisor/spans/data.py", "src/spanvisor/tracking/recent.py"}


def native_paths() -> list[str]:
    here = Path(__file__).parent
    paths = [
        p.relative_to(here).as_posix()
        for d in NATIVE_DIRS
        for p in sorted((here / d).glob("*.py"))
        if p.name != "__init__.py"
    ]
    return [p for p in paths if p not in NOT_NATIVE] + list(NATIVE_EXTRA)


def ext_modules() -> list[object]:
    if os.environ.get("SPANVISOR_COMPILE", "") not in ("1", "true", "yes"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # setup_requires brings mypy under pip's build isolation
        print("spanvisor: SPANVISOR_COMPILE is set but mypyc is missing: building pure Python")
        return []
    exts = mypycify(native_paths(), opt_level="3", group_name="spanvisor")
    for ext in exts:
        ext.optional = True  # no working compiler: warn and ship the pure-Python source
    return list(exts)


setup(
    ext_modules=ext_modules(),
    setup_requires=["mypy>=1.10"] if os.environ.get("SPANVISOR_COMPILE", "") in ("1", "true", "yes") else [],
)
