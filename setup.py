"""The compiled tracker: ``SPANVISOR_COMPILE=1`` compiles the tracker's
modules with mypyc where a C compiler works; the wheels the project
publishes are built that way (``make wheel``), as black's and mypy's are.
Any other build is pure Python: a plain ``pip install .`` or ``pip install
-e .`` needs neither mypy nor a compiler (an offline build from a
wheelhouse works), and an editable install stays pure so an edit takes
effect at once.

The compiled modules are the same source: the wheel holds the ``.py``
files beside the extension modules, and Python imports an extension first.
Where no C compiler works, each extension is optional: the build warns and
the wheel is pure Python; a mypy error also falls back to pure Python.
Everything else about the package is in ``pyproject.toml``. Measured:
benchmarks/HISTORY.md, "A compiled tracker".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

# The modules the tracker's profile spends its time in. Left out, with the
# reason: spans/data.py (SpanData is built by callers that may hand a field
# something else than its type says; a compiled dataclass would refuse it),
# the receiver's decode (5 % faster compiled: its time is protobuf's), and
# events.py (the events' slotted dataclasses are built by a slot setter
# that only a Python class allows; sinks and codecs read them everywhere).
NATIVE_DIRS = ("src/spanvisor/tracking", "src/spanvisor/spans")
NATIVE_EXTRA = ("src/spanvisor/budgets/ledger.py",)
NOT_NATIVE = {"src/spanvisor/spans/data.py"}


def native_paths() -> list[str]:
    here = Path(__file__).parent
    paths = [
        p.relative_to(here).as_posix()
        for d in NATIVE_DIRS
        for p in sorted((here / d).glob("*.py"))
        if p.name != "__init__.py"
    ]
    return [p for p in paths if p not in NOT_NATIVE] + list(NATIVE_EXTRA)


def _setting() -> str:
    return os.environ.get("SPANVISOR_COMPILE", "").strip().lower()


# The setuptools commands that build what is installed (metadata commands,
# egg_info and dist_info, need no extension); ``editable_wheel`` is
# ``pip install -e``.
_BUILDS = frozenset({"bdist_wheel", "build", "build_ext", "install", "bdist", "editable_wheel"})


def wanted() -> bool:
    """Compile only when asked (SPANVISOR_COMPILE=1) and building: pip asks
    for a build's requirements before it says which build it is, so a
    default that compiled would make every build from source fetch mypy
    (and fail offline)."""
    return _setting() in ("1", "true", "yes") and not _BUILDS.isdisjoint(sys.argv[1:])


def ext_modules() -> list[object]:
    if not wanted():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # setup_requires brings mypy under pip's build isolation
        print("spanvisor: mypyc is missing: building pure Python")
        return []
    try:
        exts = mypycify(native_paths(), opt_level="3", group_name="spanvisor")
    except (Exception, SystemExit) as exc:  # mypy found an error: the source still works
        print(f"spanvisor: mypyc could not compile the tracker ({exc!r}): building pure Python")
        return []
    for ext in exts:
        ext.optional = True  # no working compiler: warn and ship the pure-Python source
    return list(exts)


# mypyc type-checks the compiled modules as `mypy --strict` does, so the
# packages they import (and the rest of spanvisor they reach) must be there
# at build time, where pip has not installed the dependencies yet.
COMPILE_REQUIRES = ["mypy>=1.10", "opentelemetry-sdk>=1.40", "genai-prices>=0.2"]

setup(
    ext_modules=ext_modules(),
    setup_requires=COMPILE_REQUIRES if _setting() in ("1", "true", "yes") else [],
)
