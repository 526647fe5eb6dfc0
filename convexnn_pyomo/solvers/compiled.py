"""CasADi functions compiled to C once and cached on disk.

CasADi evaluates an ``SX`` function in its virtual machine; the same function generated as C and
compiled runs faster (``benchmarks/compiled_round.py`` compares them).  :func:`compiled_map` generates
the code with a loop over samples, compiles it with the system's C compiler (``$CC``, else ``cc``)
into a shared library in the user cache named by the code's hash, and calls it through
:mod:`ctypes` (without the GIL, so threads evaluate chunks side by side).  The code depends only on the symbolic structure (the
network's architecture, loss, relaxation and constraints; data and weights are inputs), so one
compilation serves every later round and run of the same structure.

Without a compiler :func:`compiled_map` raises :class:`CompilerUnavailable`; callers fall back to the
virtual machine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .casadi_translator import casadi as ca

__all__ = ["CompilerUnavailable", "MappedKernel", "compiled_map", "compiler", "kernel_cache_dir"]

#: flags of every compilation (``-O2``)
FLAGS = ("-O2", "-fPIC", "-shared")


class CompilerUnavailable(RuntimeError):
    """No C compiler on this machine (or it failed): use the virtual machine."""


def kernel_cache_dir() -> Path:
    """``$CONVEXNN_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/convexnn_pyomo/kernels`` (``~/.cache``)."""
    if os.environ.get("CONVEXNN_KERNEL_CACHE"):
        return Path(os.environ["CONVEXNN_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convexnn_pyomo" / "kernels"


def compiler() -> str | None:
    """The C compiler used: ``$CC`` or ``cc`` when on ``PATH``; ``None`` otherwise."""
    name = os.environ.get("CC", "cc")
    return shutil.which(name)


def _library(name: str, source: str) -> Path:
    """The shared library of ``source``, compiled once into the cache under the hash of the code."""
    cc = compiler()
    if cc is None:
        raise CompilerUnavailable("no C compiler found ($CC or cc on PATH)")
    key = hashlib.sha256("\n".join([source, ca.__version__, *FLAGS]).encode()).hexdigest()[:20]
    cache = kernel_cache_dir()
    library = cache / f"{name}_{key}.so"
    if not library.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            c_file, so_file = Path(tmp) / f"{name}.c", Path(tmp) / "lib.so"
            c_file.write_text(source)
            proc = subprocess.run([cc, *FLAGS, "-o", str(so_file), str(c_file), "-lm"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise CompilerUnavailable(f"{cc} failed on {name}: {proc.stderr.strip()[:500]}")
            os.replace(so_file, library)  # atomic: a concurrent run sees the whole library or none
    return library


def _source(fn: "ca.Function") -> str:
    gen = ca.CodeGenerator(f"{fn.name()}.c", {"with_header": False})
    gen.add(fn)
    return gen.dump()


#: the loop over samples compiled beside a function ``F`` (``F`` replaced by its name): input ``i``
#: of sample ``j`` at ``in[i] + j * in_stride[i]`` (stride 0: shared), output ``o`` at
#: ``out[o] + j * out_stride[o]``, or, for ``out_stride[o] < 0``, summed over the samples into ``out[o]``
_DRIVER = """
#include <stdlib.h>
#include <string.h>
CASADI_SYMBOL_EXPORT int F_map(casadi_int n, const casadi_real** in, const casadi_int* in_stride,
                                casadi_real** out, const casadi_int* out_stride, const casadi_int* out_nnz) {
  casadi_int sz_arg, sz_res, sz_iw, sz_w, n_in = F_n_in(), n_out = F_n_out(), i, j, k, total = 0;
  F_work(&sz_arg, &sz_res, &sz_iw, &sz_w);
  for (i = 0; i < n_out; ++i) if (out_stride[i] < 0) total += out_nnz[i];
  const casadi_real** arg = calloc(sz_arg, sizeof(casadi_real*));
  casadi_real** res = calloc(sz_res, sizeof(casadi_real*));
  casadi_int* iw = malloc((sz_iw + 1) * sizeof(casadi_int));
  casadi_real* w = malloc((sz_w + 1) * sizeof(casadi_real));
  casadi_real* tmp = malloc((total + 1) * sizeof(casadi_real));
  int flag = 0;
  for (i = 0; i < n_out; ++i) if (out_stride[i] < 0) memset(out[i], 0, out_nnz[i] * sizeof(casadi_real));
  for (j = 0; j < n && !flag; ++j) {
    casadi_real* t = tmp;
    for (i = 0; i < n_in; ++i) arg[i] = in[i] + j * in_stride[i];
    for (i = 0; i < n_out; ++i) {
      if (out_stride[i] < 0) { res[i] = t; t += out_nnz[i]; } else res[i] = out[i] + j * out_stride[i];
    }
    flag = F(arg, res, iw, w, 0);
    t = tmp;
    for (i = 0; i < n_out; ++i) if (out_stride[i] < 0) { for (k = 0; k < out_nnz[i]; ++k) out[i][k] += t[k]; t += out_nnz[i]; }
  }
  free(arg); free(res); free(iw); free(w); free(tmp);
  return flag;
}
"""

_P = ctypes.POINTER


class MappedKernel:
    """A CasADi function compiled with a C loop over samples (:data:`_DRIVER`), called through
    :mod:`ctypes`, which releases the GIL: chunks evaluate in parallel threads.

    ``kernel(n, args, shared_in, summed_out)``: ``args`` as NumPy arrays of nonzeros (per-sample
    inputs ``(n, nnz)`` C-ordered, shared ones 1-D); returns the outputs, per-sample ones ``(n, nnz)``
    and summed ones 1-D.
    """

    def __init__(self, fn: "ca.Function"):
        name = fn.name()
        source = _source(fn) + _DRIVER.replace("F_", f"{name}_").replace("flag = F(", f"flag = {name}(")
        self._lib = ctypes.CDLL(str(_library(f"{name}_map", source)))
        self._run = getattr(self._lib, f"{name}_map")
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_longlong, _P(ctypes.c_void_p), _P(ctypes.c_longlong), _P(ctypes.c_void_p),
                              _P(ctypes.c_longlong), _P(ctypes.c_longlong)]
        self.name = name
        self.nnz_in = [fn.nnz_in(i) for i in range(fn.n_in())]
        self.nnz_out = np.array([fn.nnz_out(i) for i in range(fn.n_out())], dtype=np.int64)

    def __call__(self, n: int, args: list, shared_in: set, summed_out: set) -> list[np.ndarray]:
        ins, strides = [], np.zeros(len(self.nnz_in), dtype=np.int64)
        for i, a in enumerate(args):
            a = np.ascontiguousarray(a, dtype=float)
            expected = self.nnz_in[i] * (1 if i in shared_in else n)
            if a.size != expected:
                raise ValueError(f"input {i} of {self.name}: {a.size} values, expected {expected}")
            ins.append(a)
            strides[i] = 0 if i in shared_in else self.nnz_in[i]
        outs = [np.empty(k) if i in summed_out else np.empty((n, k)) for i, k in enumerate(self.nnz_out)]
        out_strides = np.array([-1 if i in summed_out else k for i, k in enumerate(self.nnz_out)], dtype=np.int64)
        in_ptr = (ctypes.c_void_p * len(ins))(*[a.ctypes.data for a in ins])
        out_ptr = (ctypes.c_void_p * len(outs))(*[o.ctypes.data for o in outs])
        flag = self._run(n, in_ptr, strides.ctypes.data_as(_P(ctypes.c_longlong)), out_ptr,
                         out_strides.ctypes.data_as(_P(ctypes.c_longlong)),
                         self.nnz_out.ctypes.data_as(_P(ctypes.c_longlong)))
        if flag:
            raise RuntimeError(f"{self.name} failed to evaluate (flag {flag})")
        return outs


def compiled_map(fn: "ca.Function") -> MappedKernel:
    """``fn`` compiled with its loop over samples (:class:`MappedKernel`), from the cache when the
    same code was compiled before.  Raises :class:`CompilerUnavailable` without a working compiler."""
    return MappedKernel(fn)
