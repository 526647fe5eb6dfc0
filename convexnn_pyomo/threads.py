"""How many threads BLAS and OpenMP use: :func:`blas_threads` limits them for a block of code.

Importing ``convexnn_pyomo`` leaves thread counts (and the environment) alone.  The Ipopt/MUMPS
systems solved here are small and sparse: on an idle machine more BLAS threads gain nothing, and
under load they spin (a round at m = 100 took 1.2 s instead of 0.66 s while a sweep ran, see
``docs/solvers.md``).  So wrap a run in ``with blas_threads(1):``, or start the process with
``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``; the ``convexnn`` command does the latter for its own
process unless you set either variable (:func:`one_thread_unless_set`).

What :mod:`threadpoolctl` reaches (checked with CasADi 3.8.2, threadpoolctl 3.8, numpy 2, Linux):

* numpy's and scipy's OpenBLAS (``libscipy_openblas*``): listed by ``threadpool_info()`` and
  limited by ``threadpool_limits``, out of the box;
* CasADi's BLAS, used by its Ipopt and MUMPS: CasADi ships its own OpenBLAS,
  ``libcasadi-tp-openblas`` (0.3.24, pthreads), loaded when the first Ipopt solver is created, not
  by ``import casadi``.  threadpoolctl does not recognise that file name, so on its own it neither
  lists nor limits it.  The library exports ``openblas_set_num_threads``, so this module registers a
  controller for it with ``threadpoolctl.register`` (:class:`CasadiOpenBLASController`); from then
  on ``threadpool_info()`` lists it (``internal_api='casadi_openblas'``) and ``threadpool_limits``,
  including scikit-learn's, limit it.  :func:`blas_threads` also loads the library on entry (the
  solver loads that same copy later), so that Ipopt solvers created inside the block run limited;
* OpenMP: CasADi's bundled ``libgomp`` is not loaded by Ipopt/MUMPS; an OpenMP runtime that some
  other library loads is limited like the BLAS pools.

Environment variables are read by each OpenBLAS once, when it is loaded: setting
``OPENBLAS_NUM_THREADS`` from Python after numpy is imported changes nothing for numpy (CasADi's
OpenBLAS still reads it, if no Ipopt solver was created yet), but worker processes started later
inherit it.  To fix the default for a whole process, set the variables before it starts.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import numbers
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import threadpoolctl

__all__ = ["THREAD_VARIABLES", "CasadiOpenBLASController", "blas_threads", "one_thread_unless_set", "threadpool_info"]

#: the variables OpenBLAS and OpenMP runtimes read when they are loaded
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")

#: CasADi's OpenBLAS: its file names start with this (``libcasadi-tp-openblas.so.0`` on Linux)
CASADI_OPENBLAS = "libcasadi-tp-openblas"


class CasadiOpenBLASController(threadpoolctl.LibController):
    """threadpoolctl's handle on the OpenBLAS that CasADi ships for Ipopt and MUMPS."""

    user_api = "blas"
    internal_api = "casadi_openblas"
    filename_prefixes = (CASADI_OPENBLAS,)
    check_symbols = ("openblas_get_num_threads", "openblas_set_num_threads")

    def get_num_threads(self) -> int:
        return self.dynlib.openblas_get_num_threads()

    def set_num_threads(self, num_threads: int) -> None:
        self.dynlib.openblas_set_num_threads(num_threads)

    def get_version(self) -> str | None:
        get_config = getattr(self.dynlib, "openblas_get_config", None)
        if get_config is None:
            return None
        get_config.restype = ctypes.c_char_p
        words = (get_config() or b"").split()  # b"OpenBLAS 0.3.24 NO_AFFINITY CORE2 MAX_THREADS=16"
        return words[1].decode() if len(words) > 1 and words[0] == b"OpenBLAS" else None

    def set_additional_attributes(self) -> None:
        get_parallel = getattr(self.dynlib, "openblas_get_parallel", None)
        layer = get_parallel() if get_parallel is not None else -1
        self.threading_layer = {0: "disabled", 1: "pthreads", 2: "openmp"}.get(layer, "unknown")


@functools.cache
def _register() -> None:
    threadpoolctl.register(CasadiOpenBLASController)


def _casadi_openblas_file() -> Path | None:
    """CasADi's OpenBLAS in its package folder (found without importing casadi), or ``None``."""
    spec = importlib.util.find_spec("casadi")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    soname = folder / f"{CASADI_OPENBLAS}.so.0"  # the name Ipopt's plugin asks the loader for on Linux
    candidates = [soname] if soname.exists() else sorted(folder.glob(f"{CASADI_OPENBLAS}*"))
    return next((p for p in candidates if p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name), None)


@functools.cache
def _load_casadi_openblas() -> bool:
    """Load CasADi's OpenBLAS now, as the first Ipopt solver would (the loader then hands that
    solver this copy), so that a limit set before the solver exists applies to it."""
    path = _casadi_openblas_file()
    if path is None:
        return False
    try:
        ctypes.CDLL(str(path))
    except OSError:
        return False
    return True


def threadpool_info() -> list[dict]:
    """``threadpoolctl.threadpool_info()`` with CasADi's OpenBLAS recognised: one dict per loaded
    pool (``internal_api``, ``filepath``, ``num_threads``, ``version``, ...)."""
    _register()
    return threadpoolctl.threadpool_info()


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Inside the block, BLAS and OpenMP pools use at most ``n`` threads; on exit each gets back
    the count it had.  ``None`` leaves them as they are.

    Covers numpy's and scipy's OpenBLAS, CasADi's (loaded on entry if it was not yet, so Ipopt
    solvers created inside the block are limited too), and any OpenMP runtime loaded.  The limit is
    per process: worker processes started inside the block re-read ``OPENBLAS_NUM_THREADS`` and
    ``OMP_NUM_THREADS`` (or inherit the limit when forked).

    >>> import numpy as np
    >>> with blas_threads(1):
    ...     _ = np.ones((200, 200)) @ np.ones((200, 200))
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"blas_threads takes a positive number of threads or None, got {n!r}")
    _register()
    _load_casadi_openblas()
    with threadpoolctl.threadpool_limits(limits=int(n)):
        yield


@contextmanager
def one_thread_unless_set() -> Iterator[None]:
    """The ``convexnn`` command's default: one BLAS/OpenMP thread unless the user set
    ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` (then nothing changes).

    Inside the block the pools of this process run one thread (:func:`blas_threads`) and both
    variables are ``"1"``, for worker processes (``--jobs``).  On exit the variables are removed
    again and the pools get back their counts: ``cli.main`` may run inside another program.
    """
    if any(var in os.environ for var in THREAD_VARIABLES):
        yield
        return
    with blas_threads(1):  # first: CasADi's OpenBLAS loads before the variables exist, with its own default
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
        try:
            yield
        finally:
            for var in THREAD_VARIABLES:
                os.environ.pop(var, None)
