"""CasADi functions compiled to C once and cached on disk.

CasADi evaluates an ``SX`` function in its virtual machine; the same function generated as C and
compiled runs faster (one constrained round at m = 10^4: 1.38x, ``benchmarks/compiled_round.py``).  :func:`compiled` generates the code, compiles it with the system's
C compiler (``$CC``, else ``cc``) into a shared library in the user cache named by the code's hash,
and loads it with :func:`casadi.external`.  The code depends only on the symbolic structure (the
network's architecture, loss, relaxation and constraints; data and weights are inputs), so one
compilation serves every later round and run of the same structure.

Without a compiler :func:`compiled` raises :class:`CompilerUnavailable`; callers fall back to the
virtual machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .casadi_translator import casadi as ca

__all__ = ["CompilerUnavailable", "compiled", "compiler", "kernel_cache_dir"]

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


def compiled(fn: "ca.Function") -> "ca.Function":
    """``fn`` as a compiled external function (same inputs and outputs), from the cache when the
    same code was compiled before.  Raises :class:`CompilerUnavailable` without a working compiler."""
    cc = compiler()
    if cc is None:
        raise CompilerUnavailable("no C compiler found ($CC or cc on PATH)")
    gen = ca.CodeGenerator(f"{fn.name()}.c", {"with_header": False})
    gen.add(fn)
    source = gen.dump()
    key = hashlib.sha256("\n".join([source, ca.__version__, *FLAGS]).encode()).hexdigest()[:20]
    cache = kernel_cache_dir()
    library = cache / f"{fn.name()}_{key}.so"
    if not library.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            c_file, so_file = Path(tmp) / f"{fn.name()}.c", Path(tmp) / "lib.so"
            c_file.write_text(source)
            proc = subprocess.run([cc, *FLAGS, "-o", str(so_file), str(c_file), "-lm"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise CompilerUnavailable(f"{cc} failed on {fn.name()}: {proc.stderr.strip()[:500]}")
            os.replace(so_file, library)  # atomic: a concurrent run sees the whole library or none
    return ca.external(fn.name(), str(library))
