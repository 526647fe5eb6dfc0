"""The per-sample functions compiled for this machine's vector units against the portable build (issue 27).

``solvers/compiled.py`` compiles the structured round's per-sample CasADi functions with
``NATIVE`` flags (``-O3 -march=native -ffp-contract=off``) where the compiler takes them, else with
``FLAGS`` (``-O2``).  This times each function of the round (one chunk of ``--chunk`` samples of
``benchmarks/scale.py``'s 8-6-6-1 teacher data, at the round's start) in both builds, alternately
``--repeat`` times in one process on one thread, prints the median milliseconds and their ratio,
and checks that both builds give the same outputs bit for bit::

    python benchmarks/kernel_flags.py --m 20000 --chunk 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import teacher_data  # noqa: E402


def _builds(fn, tmp: str) -> dict:
    """``fn`` compiled twice: with the native flags and with the portable ones (own caches)."""
    from convexnn_pyomo.solvers import compiled

    out, native = {}, compiled.NATIVE
    for name, flags in (("native", native), ("portable", ())):
        os.environ["CONVEXNN_KERNEL_CACHE"] = str(Path(tmp) / name)
        compiled.NATIVE = flags
        try:
            out[name] = compiled.compiled_map(fn)
        finally:
            compiled.NATIVE = native
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import convexnn_pyomo as cnn
    from convexnn_pyomo.algorithms.rounds import StructuredRound

    X, Y, _ = teacher_data(args.m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared", options={"threads": 1})
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    ipm, (ps, pv), (s0, V0) = rnd.ipm, rnd.arrow.parameters(), rnd.arrow.start()
    ipm.ps, ipm.pv = ps, np.asarray(pv, float).reshape(-1, ipm.m)
    ipm._scale(s0, V0)
    st, c = ipm._start(s0, np.asarray(V0, float).reshape(ipm.nv, ipm.m)), min(args.chunk, ipm.m)
    rng = np.random.default_rng(0)
    base = [st.s, ipm.ps, st.V[:, :c], ipm.pv[:, :c], ipm.omega, ipm.d[:, :c], ipm.dL]
    extra = {"kkt": [st.M[:, :c], st.lam, ipm._sigma(st, 0, c)], "resid": [st.M[:, :c], st.lam],
             "jtv": [rng.normal(size=(ipm.ng, c))], "jvp": [rng.normal(size=ipm.ns), rng.normal(size=(ipm.nv, c))],
             "apply": [st.M[:, :c], st.lam, rng.normal(size=ipm.ns), rng.normal(size=(ipm.nv, c)),
                       rng.normal(size=(ipm.ng, c)), rng.normal(size=ipm.nL)]}
    print(f"m = {args.m}, one chunk of {c} samples, one thread; median of {args.repeat} alternated calls")
    with tempfile.TemporaryDirectory() as tmp:
        for name, more in extra.items():
            fn = getattr(ipm.fn, name)
            shared, summed = (set(x) for x in getattr(ipm.fn, f"{name}_reduce"))
            kernels = _builds(fn, tmp)
            call = {k: (lambda kern=kern: kern(c, base + more, shared, summed)) for k, kern in kernels.items()}
            outs = {k: f() for k, f in call.items()}
            same = all(np.array_equal(a, b) for a, b in zip(outs["native"], outs["portable"]))
            times: dict = {"native": [], "portable": []}
            for _ in range(args.repeat):
                for k, f in call.items():
                    t0 = time.thread_time()
                    f()
                    times[k].append(1e3 * (time.thread_time() - t0))
            nat, por = (statistics.median(times[k]) for k in ("native", "portable"))
            print(f"{name:6s} native {nat:7.2f} ms  portable {por:7.2f} ms  ratio {nat / por:.2f}  "
                  f"outputs {'equal bit for bit' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
