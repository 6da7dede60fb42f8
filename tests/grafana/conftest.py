"""Make ``tests.fakes`` importable however pytest was started.

With the default ``prepend`` import mode only this directory is put on
``sys.path``; the repository root is added so the shared fakes import as
``tests.fakes.*`` whether or not ``tests`` has an ``__init__.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
