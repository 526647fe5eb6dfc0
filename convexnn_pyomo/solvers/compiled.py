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
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .casadi_translator import casadi as ca

__all__ = ["CompilerUnavailable", "MappedKernel", "compiled_map", "compiler", "kernel_cache_dir"]

#: flags of every compilation
FLAGS = ("-O2", "-fPIC", "-shared")

#: tried first: code for this machine's vector units (the per-sample functions' straight-line code
#: vectorizes: ``benchmarks/kernel_flags.py`` times both builds), without fused
#: multiply-adds (``-ffp-contract=off``), so the results stay those of :data:`FLAGS` bit for bit;
#: the library's name then also hashes this machine's processor (:func:`_machine`)
NATIVE = ("-O3", "-march=native", "-ffp-contract=off")


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


def _machine() -> str:
    """What ``-march=native`` depends on: the architecture and, on Linux, the processor's model and flags."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("model name", "flags")))[:4000]
    except OSError:
        text += platform.processor()
    return text


def _library(name: str, source: str) -> Path:
    """The shared library of ``source``, compiled once into the cache under the hash of the code: with
    :data:`NATIVE` where the compiler takes it, else with :data:`FLAGS` alone."""
    cc = compiler()
    if cc is None:
        raise CompilerUnavailable("no C compiler found ($CC or cc on PATH)")
    cache = kernel_cache_dir()
    errors = []
    for flags, machine in (((*NATIVE, *FLAGS), _machine()), (FLAGS, "")):
        key = hashlib.sha256("\n".join([source, ca.__version__, *flags, machine]).encode()).hexdigest()[:20]
        library = cache / f"{name}_{key}.so"
        if library.exists():
            return library
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            c_file, so_file = Path(tmp) / f"{name}.c", Path(tmp) / "lib.so"
            c_file.write_text(source)
            proc = subprocess.run([cc, *flags, "-o", str(so_file), str(c_file), "-lm"], capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(so_file, library)  # atomic: a concurrent run sees the whole library or none
                return library
            errors.append(proc.stderr.strip()[:500])
    raise CompilerUnavailable(f"{cc} failed on {name}: {errors[-1]}")


def _source(fn: "ca.Function") -> str:
    gen = ca.CodeGenerator(f"{fn.name()}.c", {"with_header": False})
    gen.add(fn)
    return gen.dump()


#: the loop over samples compiled beside a function ``F`` (``F`` replaced by its name): entry ``k``
#: of input ``i`` of sample ``j`` at ``in[i] + j * in_stride[i] + k * in_step[i]`` (stride 0: shared),
#: of output ``o`` at ``out[o] + j * out_stride[o] + k * out_step[o]``, or, for ``out_stride[o] < 0``,
#: summed over the samples into ``out[o]``.  Entries not next to each other (step not 1: one row
#: per entry, one column per sample) are moved through small work blocks of ``CNN_BLOCK`` samples,
#: row by row (a blocked transpose: contiguous reads and writes of the caller's rows)
_DRIVER = """
#include <stdlib.h>
#include <string.h>
#define CNN_BLOCK 64
CASADI_SYMBOL_EXPORT int F_map(casadi_int n, const casadi_real** in, const casadi_int* in_stride,
                                const casadi_int* in_step, const casadi_int* in_nnz, casadi_real** out,
                                const casadi_int* out_stride, const casadi_int* out_step, const casadi_int* out_nnz) {
  casadi_int sz_arg, sz_res, sz_iw, sz_w, n_in = F_n_in(), n_out = F_n_out(), i, j, jj, k, nb, total = 0;
  F_work(&sz_arg, &sz_res, &sz_iw, &sz_w);
  for (i = 0; i < n_out; ++i) total += out_stride[i] < 0 ? out_nnz[i] : (out_step[i] != 1 ? CNN_BLOCK * out_nnz[i] : 0);
  for (i = 0; i < n_in; ++i) if (in_step[i] != 1) total += CNN_BLOCK * in_nnz[i];
  const casadi_real** arg = calloc(sz_arg, sizeof(casadi_real*));
  casadi_real** res = calloc(sz_res, sizeof(casadi_real*));
  casadi_real** ibuf = calloc(n_in + 1, sizeof(casadi_real*));
  casadi_real** obuf = calloc(n_out + 1, sizeof(casadi_real*));
  casadi_int* iw = malloc((sz_iw + 1) * sizeof(casadi_int));
  casadi_real* w = malloc((sz_w + 1) * sizeof(casadi_real));
  casadi_real* tmp = malloc((total + 1) * sizeof(casadi_real));
  casadi_real* t = tmp;
  int flag = 0;
  for (i = 0; i < n_in; ++i) if (in_step[i] != 1) { ibuf[i] = t; t += CNN_BLOCK * in_nnz[i]; }
  for (i = 0; i < n_out; ++i) {
    if (out_stride[i] < 0) { obuf[i] = t; t += out_nnz[i]; memset(out[i], 0, out_nnz[i] * sizeof(casadi_real)); }
    else if (out_step[i] != 1) { obuf[i] = t; t += CNN_BLOCK * out_nnz[i]; }
  }
  for (j = 0; j < n && !flag; j += CNN_BLOCK) {
    nb = n - j < CNN_BLOCK ? n - j : CNN_BLOCK;
    for (i = 0; i < n_in; ++i) if (in_step[i] != 1) {
      for (k = 0; k < in_nnz[i]; ++k) {
        const casadi_real* src = in[i] + j * in_stride[i] + k * in_step[i];
        for (jj = 0; jj < nb; ++jj) ibuf[i][jj * in_nnz[i] + k] = src[jj * in_stride[i]];
      }
    }
    for (jj = 0; jj < nb && !flag; ++jj) {
      for (i = 0; i < n_in; ++i) arg[i] = in_step[i] != 1 ? ibuf[i] + jj * in_nnz[i] : in[i] + (j + jj) * in_stride[i];
      for (i = 0; i < n_out; ++i) {
        if (out_stride[i] < 0) res[i] = obuf[i];
        else if (out_step[i] != 1) res[i] = obuf[i] + jj * out_nnz[i];
        else res[i] = out[i] + (j + jj) * out_stride[i];
      }
      flag = F(arg, res, iw, w, 0);
      for (i = 0; i < n_out; ++i) if (out_stride[i] < 0) for (k = 0; k < out_nnz[i]; ++k) out[i][k] += obuf[i][k];
    }
    for (i = 0; i < n_out; ++i) if (out_stride[i] >= 0 && out_step[i] != 1) {
      for (k = 0; k < out_nnz[i]; ++k) {
        casadi_real* dst = out[i] + j * out_stride[i] + k * out_step[i];
        for (jj = 0; jj < nb; ++jj) dst[jj * out_stride[i]] = obuf[i][jj * out_nnz[i] + k];
      }
    }
  }
  free(arg); free(res); free(ibuf); free(obuf); free(iw); free(w); free(tmp);
  return flag;
}
"""

_P = ctypes.POINTER


def _strides(a: np.ndarray) -> tuple[int, int] | None:
    """``(sample stride, entry stride)`` in doubles of a ``(nnz, n)`` float array, or ``None`` when it
    cannot be read in place (not float64, or strides that are not positive multiples of 8 bytes)."""
    if a.dtype != np.float64 or any(s % 8 or s < 0 for s in a.strides):
        return None
    return a.strides[1] // 8, a.strides[0] // 8


class MappedKernel:
    """A CasADi function compiled with a C loop over samples (:data:`_DRIVER`), called through
    :mod:`ctypes`, which releases the GIL: chunks evaluate in parallel threads.

    ``kernel(n, args, shared_in, summed_out, out=None)``: shared inputs 1-D, per-sample inputs
    ``(nnz, n)`` arrays of any strides (a chunk's columns of a row-per-entry array are read where
    they lie, no copy); returns the outputs, summed ones 1-D and per-sample ones ``(nnz, n)``: the
    arrays ``out[o]`` given (written in place) or views of new sample-major ``(n, nnz)`` arrays.
    """

    def __init__(self, fn: "ca.Function"):
        name = fn.name()
        source = _source(fn) + _DRIVER.replace("F_", f"{name}_").replace("flag = F(", f"flag = {name}(")
        self._lib = ctypes.CDLL(str(_library(f"{name}_map", source)))
        self._run = getattr(self._lib, f"{name}_map")
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_longlong, _P(ctypes.c_void_p), *[_P(ctypes.c_longlong)] * 3,
                              _P(ctypes.c_void_p), *[_P(ctypes.c_longlong)] * 3]
        self.name = name
        self.nnz_in = np.array([fn.nnz_in(i) for i in range(fn.n_in())], dtype=np.int64)
        self.nnz_out = np.array([fn.nnz_out(i) for i in range(fn.n_out())], dtype=np.int64)

    def _input(self, i: int, a, n: int, shared: bool) -> tuple[np.ndarray, int, int]:
        """Input ``i`` as ``(array, sample stride, entry stride)``."""
        if shared:
            a = np.ascontiguousarray(a, dtype=float).ravel()
            if a.size != self.nnz_in[i]:
                raise ValueError(f"input {i} of {self.name}: {a.size} values, expected {self.nnz_in[i]}")
            return a, 0, 1
        a = np.asarray(a)
        if a.shape != (self.nnz_in[i], n):
            raise ValueError(f"input {i} of {self.name}: shape {a.shape}, expected {(int(self.nnz_in[i]), n)}")
        strides = _strides(a)
        if strides is None:
            a = np.ascontiguousarray(a, dtype=float)
            strides = _strides(a)
        return a, *strides

    def _output(self, o: int, n: int, summed: bool, given) -> tuple[np.ndarray, int, int]:
        """Output ``o`` as ``(array returned, sample stride (-1: summed), entry stride)``."""
        k = int(self.nnz_out[o])
        if summed:
            return np.empty(k), -1, 1
        if given is None:
            return np.empty((n, k)).T, k, 1
        strides = _strides(given) if given.shape == (k, n) else None
        if strides is None:
            raise ValueError(f"output {o} of {self.name}: a float array of shape {(k, n)} is needed")
        return given, *strides

    def __call__(self, n: int, args: list, shared_in: set, summed_out: set, out: list | None = None) -> list:
        ins = [self._input(i, a, n, i in shared_in) for i, a in enumerate(args)]
        outs = [self._output(o, n, o in summed_out, None if out is None else out[o]) for o in range(len(self.nnz_out))]

        def pointers(items):
            return (ctypes.c_void_p * len(items))(*[a.ctypes.data for a, _, _ in items])

        def ints(items, col):
            return np.array([x[col] for x in items], dtype=np.int64)

        in_stride, in_step, out_stride, out_step = ints(ins, 1), ints(ins, 2), ints(outs, 1), ints(outs, 2)
        ptr = _P(ctypes.c_longlong)
        flag = self._run(n, pointers(ins), in_stride.ctypes.data_as(ptr), in_step.ctypes.data_as(ptr),
                         self.nnz_in.ctypes.data_as(ptr), pointers(outs), out_stride.ctypes.data_as(ptr),
                         out_step.ctypes.data_as(ptr), self.nnz_out.ctypes.data_as(ptr))
        if flag:
            raise RuntimeError(f"{self.name} failed to evaluate (flag {flag})")
        return [a for a, _, _ in outs]


def compiled_map(fn: "ca.Function") -> MappedKernel:
    """``fn`` compiled with its loop over samples (:class:`MappedKernel`), from the cache when the
    same code was compiled before.  Raises :class:`CompilerUnavailable` without a working compiler."""
    return MappedKernel(fn)
