"""A package's names, imported when first used (PEP 562).

A sink's package is imported to read its settings (``.settings``) and a
command's to reach one name; neither should pay for the rest. A package
lists where each of its names lives::

    if TYPE_CHECKING:
        from .sink import PostgresSink
    __getattr__ = exports(__name__, {"PostgresSink": ".sink"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The package's module ``__getattr__``: ``name`` from the module ``where`` names (relative to ``package``)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
