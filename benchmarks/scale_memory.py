"""Where the direct round's memory goes (issue 10): RSS after each stage of one round at size m.

    python benchmarks/scale_memory.py --m 10000 [--ipopt '{"mumps_pivot_order": 6}'] [--group-size 100]

Prints VmRSS/VmHWM (MB) after the data, after building the CasADi graph and after the first solve, the Jacobian/Hessian nonzeros per sample and the work-vector sizes (doubles) of the
three derivative Functions given to ``nlpsol``.  MUMPS's own memory is in ``scale.py --profile-study``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss() -> dict:
    with open("/proc/self/status") as fh:
        return {k: round(int(v.split()[0]) / 1024, 1) for k, v in (l.split(":") for l in fh)
                if k in ("VmRSS", "VmHWM")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=10000)
    ap.add_argument("--ipopt", default='{"mumps_pivot_order": 6, "mumps_mem_percent": 5}')
    ap.add_argument("--group-size", type=int, default=None, help="samples per copy of the shared variables")
    args = ap.parse_args()
    import convexnn_pyomo as cnn
    from convexnn_pyomo.solvers.casadi_direct import DirectParabolicRound
    from scale import teacher_data

    X, Y, _ = teacher_data(args.m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    print("data", _rss(), flush=True)
    rnd = DirectParabolicRound(net, X, Y, reduction="mean", eta=2.0, ipopt_options=json.loads(args.ipopt),
                               group_size=args.group_size)
    print("built", _rss(), flush=True)
    rnd.recentre(net, 2.0, **rnd.exactness_weights(net))
    d = rnd.derivatives
    jac, hess = d["jac_g"].sparsity_out(1).nnz(), d["hess_lag"].sparsity_out(0).nnz()
    print(f"nonzeros per sample: jacobian {jac / args.m:.1f}, hessian {hess / args.m:.1f}")
    print("work vectors (doubles):", {k: f.sz_w() for k, f in d.items()}, flush=True)
    out = rnd.solve()
    print("solved", _rss(), out["iterations"], "iterations", round(out["seconds"], 1), "s", out["return_status"])


if __name__ == "__main__":
    main()
