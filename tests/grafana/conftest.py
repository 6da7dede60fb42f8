"""Import paths for the Grafana tests.

With the default ``prepend`` import mode only this directory is put on
``sys.path`` (the helpers import as ``grafana_helpers``, ``grafana_dash``).
The repository root is added so the shared fakes import as
``tests.fakes.*``. The PostgreSQL fixtures come from tests/conftest.py,
which loads tests/conftest_pg.py for the whole suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
