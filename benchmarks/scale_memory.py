"""Where one round's memory goes (issue 10): RSS after each stage of one round at size m.

    python benchmarks/scale_memory.py --m 10000 [--path schur|pyomo] [--ipopt '{"mumps_pivot_order": 6}']

Prints VmRSS/VmHWM (MB) after the data, after building the round, after centring it at the initial
network and after the first solve, and the round's size.  ``--path schur`` (default) is the
structured round of ``train`` (:class:`~convexnn_pyomo.algorithms.rounds.StructuredRound`: the
Pyomo model on a template of two samples, derived per sample, solved by the Schur interior point):
its per-sample variables and rows and the shared variables and linking rows.  ``--path pyomo`` is
the Pyomo model on every sample (:class:`~convexnn_pyomo.algorithms.rounds.PyomoRound`) solved by
``ipopt_casadi`` with the algorithm's Ipopt options updated by ``--ipopt``: its variables and
constraints.  MUMPS's own memory is in ``scale.py --profile-study``.  (The measurements of the
hand-written CasADi round -- nonzeros and work vectors of its derivative Functions, ``--group-size``
copies of the shared variables -- were retired with it; reproducible at commit ec0d73c.)
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
    ap.add_argument("--path", choices=["schur", "pyomo"], default="schur",
                    help="schur: the structured round (train's default); pyomo: the Pyomo model solved by ipopt_casadi")
    ap.add_argument("--ipopt", default='{"mumps_pivot_order": 6, "mumps_mem_percent": 5}',
                    help="JSON: Ipopt options of the pyomo path over the algorithm's defaults")
    args = ap.parse_args()
    import pyomo.environ as pyo

    import convexnn_pyomo as cnn
    from convexnn_pyomo.algorithms.rounds import PyomoRound, StructuredRound
    from convexnn_pyomo.solvers import require_solver
    from scale import teacher_data

    X, Y, _ = teacher_data(args.m, [6, 6], 0.1)
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    print("data", _rss(), flush=True)
    if args.path == "schur":
        rnd, options = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared"), {}
        a = rnd.arrow
        size = (f"per sample: {a.nv} variables, {a.ng} rows; shared: {a.ns} variables, {a.n_link} linking rows "
                f"({a.ns + args.m * a.nv} variables in all)")
    else:
        rnd = PyomoRound(net, X, Y, "mean", "parabolic", [], require_solver("ipopt_casadi"), 2.0, (1.0, 1.0, 1.0))
        options = json.loads(args.ipopt)
        n_var = sum(1 for _ in rnd.model.component_data_objects(pyo.Var))
        n_con = sum(1 for _ in rnd.model.component_data_objects(pyo.Constraint, active=True))
        size = f"{n_var} variables, {n_con} constraints ({n_var / args.m:.1f} and {n_con / args.m:.1f} per sample)"
    print("built", _rss(), flush=True)
    fp = net.forward_pass(X)
    rnd.recentre(net, 2.0, fp, **rnd.exactness_weights(net, fp))
    print("centred", _rss(), flush=True)
    print(size, flush=True)
    out = rnd.solve(7200.0, options)
    print("solved", _rss(), out.iterations, "iterations", round(out.seconds, 1), "s", out.termination)


if __name__ == "__main__":
    main()
