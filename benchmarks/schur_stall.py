"""Why a Schur round stalls: save the first stalled round of an Adult fit, then replay its solve.

    python benchmarks/schur_stall.py --save stall.pkl        # the probability@0.02 fit of seed 0 (warm start)
    python benchmarks/schur_stall.py --replay stall.pkl [--option refinement=8] [--option centrality=0.01]

``--save`` runs the study's own fit (``convexnn experiment fairness --constraints probability --bounds
0.02 --warm-start 2000``, seed 0, about 6 minutes to its first stalled round) and pickles that round's
network, eta, mu, parameters and start, then stops.  ``--replay`` rebuilds the round on the same data
and solves it alone (``print_level`` 1; ``--option`` sets a SchurInteriorPoint option), printing after
every iteration what limits the step: the fraction to the boundary and the row whose slack or
multiplier sets it, and the smallest complementarity product against the mean
(docs/solvers.md, the bullet on stalled solves).  Data: the Adult folder as the study finds it.
"""

from __future__ import annotations

import argparse
import pickle

import numpy as np

from convexnn_pyomo.algorithms import rounds as R
from convexnn_pyomo.experiments import fairness as fx
from convexnn_pyomo.solvers import schur_ipm

CFG = fx.FairnessConfig(methods=("convexnn",), constraints=("probability",), bounds=(0.02,), rounds=10,
                        warm_start=2000)


class _Saved(Exception):
    pass


def save(path: str) -> None:
    """Run the fit until a round's solve stalls; pickle that solve's inputs."""
    init, solve = R.StructuredRound.__init__, R.StructuredRound.solve

    def wrapped_init(self, net, X, Y, reduction, constraints, eta, mu, *rest, **kw):
        self._built_with = {"net": net, "reduction": reduction, "eta": eta, "mu": mu}
        init(self, net, X, Y, reduction, constraints, eta, mu, *rest, **kw)

    def wrapped_solve(self, time_limit, options):
        inputs = dict(zip(("ps", "pv"), map(np.array, self.arrow.parameters())))
        inputs.update(zip(("s0", "V0"), map(np.array, self.arrow.start())))
        out = solve(self, time_limit, options)
        if out.stalled:
            with open(path, "wb") as f:
                pickle.dump({**self._built_with, **inputs, "options": options, "message": out.message}, f)
            raise _Saved(out.message)
        return out

    R.StructuredRound.__init__, R.StructuredRound.solve = wrapped_init, wrapped_solve
    data = fx.dataset(CFG, 0)
    try:
        fx.convexnn_fit(CFG, "probability", 0.02, data, 0, lambda row, best: print("round", row["round"], row["status"]))
        print("no round stalled")
    except _Saved as why:
        print(f"saved {path}: {why}")


def _limits(ipm, st, d, mu) -> str:
    """The step's fraction to the boundary, the linking row that sets it, and the spread of t * lambda."""
    IL = ipm.ineq_link
    a_max = ipm._max_step(st, d, max(0.995, 1.0 - mu))
    neg = IL & (d.t < 0)
    ratio = np.where(neg, -st.t / np.where(neg, d.t, -1.0), np.inf)
    k = int(np.argmin(ratio))
    link = (f"linking row {ipm.problem.link_names[k]}: slack {st.t[k]:.3g}, its step {d.t[k]:.3g}, multiplier "
            f"{st.lam[k] / ipm.dL[k]:.3g}" if np.isfinite(ratio[k]) else "no linking slack falls")
    return f"    fraction to the boundary {a_max:.3g}; spread {ipm._spread(st):.3g}; {link}"


def replay(path: str, options: list[str]) -> None:
    d = pickle.load(open(path, "rb"))
    data = fx.dataset(CFG, 0)
    cons = fx.make_constraints("probability", 0.02, data.sensitive_index)
    rnd = R.StructuredRound(d["net"], data.X_train, data.y_train.astype(float)[:, None], d["reduction"], cons,
                            d["eta"], d["mu"])
    ipm = rnd.ipm
    ipm.config.set_value(dict(d["options"] or {}))
    ipm.config.set_value({k: type(ipm.config[k])(v) for k, v in (o.split("=", 1) for o in options)})
    ipm.config.print_level = 1
    step = schur_ipm.SchurInteriorPoint._step

    def traced(self, st, r, dd, mu, target):
        print(_limits(self, st, dd, mu))
        return step(self, st, r, dd, mu, target)

    schur_ipm.SchurInteriorPoint._step = traced
    res = ipm.solve(d["s0"], d["V0"], d["ps"], d["pv"])
    print(res.status, res.iterations, res.message, f"objective {res.objective:.10g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="PATH")
    g.add_argument("--replay", metavar="PATH")
    p.add_argument("--option", action="append", default=[], help="a SchurInteriorPoint option, key=value")
    args = p.parse_args()
    save(args.save) if args.save else replay(args.replay, args.option)


if __name__ == "__main__":
    main()
