"""Import paths and the PostgreSQL fixtures for the Grafana tests.

With the default ``prepend`` import mode only this directory is put on
``sys.path``. The repository root is added so the shared fakes import as
``tests.fakes.*``, and ``tests`` so the PostgreSQL plugin ``conftest_pg``
does, whether or not ``tests`` has an ``__init__.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

_root_conftest = ROOT / "tests" / "conftest.py"
if not (_root_conftest.exists() and "conftest_pg" in _root_conftest.read_text()):
    # Until tests/conftest.py loads the plugin for the whole suite.
    from conftest_pg import pg_server, pg_url  # noqa: F401
