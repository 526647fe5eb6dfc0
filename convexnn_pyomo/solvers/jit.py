"""numba for the structured round's kernels, imported without loading half of scipy.

``import numba`` imports ``scipy`` (numba checks its version).  Once Pyomo is imported, its
deferred-import hook (``pyomo.common.dependencies``) answers any import of ``scipy`` by also
importing ``scipy.stats``, ``scipy.sparse``, ``scipy.spatial`` and ``scipy.integrate``, which the
kernels never use: measured, ``import numba`` after ``import convexnn_pyomo`` added 118 MB and
0.81 s to a process with the hook and 60 MB and 0.14 s without it (490 scipy modules against 10;
``python benchmarks/process_memory.py``).  :func:`import_numba` imports numba with that hook set
aside; Pyomo's own deferred ``scipy`` still runs the hook when Pyomo first uses it.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["import_numba"]


def import_numba() -> ModuleType:
    """The ``numba`` module, imported (once) without Pyomo's scipy hook on the import path."""
    if "numba" in sys.modules:
        return sys.modules["numba"]
    try:
        from pyomo.common.dependencies import DeferredImportCallbackFinder
    except ImportError:  # another Pyomo: import as usual
        DeferredImportCallbackFinder = ()
    hooks = [f for f in sys.meta_path if DeferredImportCallbackFinder and isinstance(f, DeferredImportCallbackFinder)]
    for f in hooks:
        sys.meta_path.remove(f)
    try:
        import numba
    finally:
        sys.meta_path[:0] = hooks
    return numba
