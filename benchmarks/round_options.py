"""Seconds per convex round (m = 100, 8-6-6-1 sigmoid, eta 1) under Ipopt option sets and BLAS threads.

The Pyomo model solved by ``ipopt_casadi``: the rounds of ``PyomoRounds`` (``round_solver="pyomo"``),
whose Ipopt options (``IPOPT_DEFAULTS``) this chose.

    python benchmarks/round_options.py

Each configuration runs in its own process (BLAS thread counts must be set before CasADi loads);
a round is timed three times after the one-time translation, and the median is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, pyomo.environ as pyo
import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_breast_cancer
opts = json.loads(sys.argv[1])
ds = load_breast_cancer(); X, Y = ds.X[:100], ds.y[:100]
net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
m = cnn.build_training_model(net, X, Y, reduction="mean")
pyo.TransformationFactory("convexnn.parabolic").apply_to(m)
pyo.TransformationFactory("convexnn.regularize").apply_to(m, eta=1.0, reference=net)
opt = pyo.SolverFactory("ipopt_casadi")
opt.solve(m, options=opts)
times = []
for _ in range(3):
    cnn.set_lifted_values(m, net)
    t = time.perf_counter(); res = opt.solve(m, options=opts); times.append(time.perf_counter() - t)
print(json.dumps({"seconds": sorted(times)[1], "iterations": res.solver.iterations,
                  "objective": pyo.value(m.regularization.objective)}))
"""


def main() -> None:
    from convexnn_pyomo.algorithms import IPOPT_DEFAULTS

    ours = {k: v for k, v in IPOPT_DEFAULTS.items() if k != "max_iter"}
    configs = [("Ipopt defaults", {}), ("PyomoRounds' options", ours)]
    print(f"{'options':20s} {'BLAS threads':>12s} {'s/round':>8s} {'iters':>6s} {'objective':>12s}")
    for threads in ("2", "1"):
        for name, opts in configs:
            env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(opts)], env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{name:20s} {threads:>12s} {r['seconds']:8.3f} {r['iterations']:6d} {r['objective']:12.6g}", flush=True)


if __name__ == "__main__":
    main()
