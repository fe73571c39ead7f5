"""Innate immune cells: one cell type per module, registered by type name through ``Cell``.

Adding a cell type means adding a module here that defines a ``Cell`` subclass with a ``cell_type``;
``load_cell_types()`` imports every module of this package so the registry sees it.
"""

from __future__ import annotations

import importlib
import pkgutil

_LOADED = False


def load_cell_types() -> None:
    """Import every cell module once so that each subclass registers itself."""
    global _LOADED
    if _LOADED:
        return
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    _LOADED = True
