"""numba for the structured round's kernels, imported without loading half of scipy.

``import numba`` imports ``scipy`` (numba checks its version).  Once Pyomo is imported, its
deferred-import hook (``pyomo.common.dependencies``) answers any import of ``scipy`` by also
importing ``scipy.stats``, ``scipy.sparse``, ``scipy.spatial`` and ``scipy.integrate``, which the
kernels never use: ``import numba`` after ``import convexnn_pyomo`` added 118 MB with the hook
and 60 MB without it (490 scipy modules against 10; ``python benchmarks/process_memory.py`` at
this commit and the one before).  :func:`import_numba` imports
numba with Pyomo's callbacks for ``scipy`` alone set aside (those of other modules stay); Pyomo's
own deferred ``scipy`` still runs them when Pyomo first uses it.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["import_numba"]


def import_numba() -> ModuleType:
    """The ``numba`` module, imported (once) without Pyomo's post-import callbacks for ``scipy``."""
    if "numba" in sys.modules:
        return sys.modules["numba"]
    try:
        from pyomo.common.dependencies import DeferredImportCallbackFinder

        callbacks = DeferredImportCallbackFinder._callbacks  # name -> deferred imports to resolve
    except (ImportError, AttributeError):  # another Pyomo: import as usual
        callbacks = {}
    saved = callbacks.get("scipy")
    if saved is not None:
        callbacks["scipy"] = []  # an import of scipy meanwhile resolves nothing; no window without the key
    try:
        import numba
    finally:
        if saved is not None:
            callbacks["scipy"] = saved
    return numba
