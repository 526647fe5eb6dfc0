"""Scale benchmark (issue 10): one convex round of the default schedule from m = 10^3 to 10^5 samples.

    python benchmarks/scale.py --sizes 1000,3000,10000,30000,100000 --out DIR [--hidden 6,6] [--path schur|pyomo|both]
    python benchmarks/scale.py --options-study --sizes 1000,3000 --out DIR [--variants defaults,amd,...]
    python benchmarks/scale.py --path sdp --sizes 25,50,100,200 --out DIR
    python benchmarks/scale.py --rounds-study --sizes 1000,10000 --rounds 15 --out DIR
    python benchmarks/scale.py --profile-study --sizes 1000,3000,10000,30000 --out DIR

Data: ``X ~ N(0, I_8)``; labels from a random 8-6-6-1 sigmoid *teacher* (He initialisation, seed
100, biases ``N(0, 0.5^2)``) plus Gaussian noise of standard deviation ``--noise`` (0.1): the
teacher's own mean squared loss is ``noise^2 = 0.01`` in expectation; the teacher is a student of
the same architecture, so that is the optimum loss (up to O(parameters / m) of overfitting).
Student: the same architecture, He initialisation seed 0, averaged loss (``reduction="mean"``).

Round 1 is the adaptive schedule's first round (eta 2, per-layer mu = the exactness weights at the
initial network, warm start at its lift); round 2 is re-centred at round 1's solution (eta 2, mu =
the exactness weights there) and re-solved without any rebuild.  Paths: ``schur``
(:class:`~convexnn_pyomo.algorithms.rounds.StructuredRound`, the default rounds of ``train``: the
round's Pyomo model on a template of two samples, derived per sample and solved by
:class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint`, the samples eliminated around a
dense Schur complement on the shared variables; it also prints how round 1's solve divides
between the eliminations, the directions and the residuals), ``pyomo``
(:class:`~convexnn_pyomo.algorithms.rounds.PyomoRound`: ``build_training_model`` +
``convexnn.parabolic`` + ``convexnn.regularize`` on every sample, solved by ``ipopt_casadi``; ``both``
runs these two); ``sdp`` (the SDP relaxation (4), ``convexnn.sdp`` + ``convexnn.regularize``, solved
by the ``convexnn_sdp_cuts`` loop over Clarabel; round 1 only, for small m: its ``m x m`` blocks
grow quadratically and the conic solver's work faster still).  The ``direct`` rows of
``scale.csv``, ``scale_options.csv`` and ``scale_profile.csv`` (and the ``direct`` series of the
figure) were measured with the hand-written CasADi round (``DirectParabolicRound``) that was
retired when the structured round replaced it (reproducible at commit ec0d73c); ``--path direct``,
its measurement-only options (copies of the shared variables per group of samples, mapped
derivatives, ``nlpsol`` options, parallel maps) and their ``--options-study`` variants went with it.

Each (m, path) runs in a subprocess (so ``peak_rss_mb`` -- the child's VmHWM -- is that run's own)
and its row is appended to ``DIR/scale.csv`` as soon as it is measured.  A size whose peak memory,
extrapolated linearly from the rows already in the file for the same path and architecture,
exceeds ``--memory-limit-mb`` (default: 16 GiB, the issue's goal, or 90% of MemAvailable if less)
is skipped with that status.  The ``pyomo`` path uses the algorithm's Ipopt options updated by
``--ipopt`` (default :data:`SCALE_IPOPT`; recorded in the ``ipopt_options`` column; the ``schur``
path takes no Ipopt options, its rows were measured with ``--ipopt '{}'``).
Columns: ``build_s`` (the round's model: relaxation and regularizer included; schur: the template
model and its per-sample derivation), ``transform_s`` (exactness weights + re-centring at the
reference), ``translate_s`` (pyomo: Pyomo -> CasADi incl. ``nlpsol``; schur: 0, part of the
build), ``first_solve_s`` (round 1), ``resolve_s`` (round 2: new reference and solve),
``ipopt_iterations`` (schur: its own iterations), ``seconds_per_iteration`` (round 1), ``*_cpu_s``
(process CPU seconds of the solves: robust when other jobs share the cores), ``eval_s`` (CasADi
callbacks of the retired direct path; empty now), ``round1_loss``/``round2_loss`` (true loss of
each round's network).  At the end the fitted exponent ``b`` of ``round_s ~ m^b`` (round_s = build
+ transform + translate + first solve) is printed.

``--options-study`` times round 1 of the ``pyomo`` path under Ipopt options and environment
variants (:data:`VARIANTS`) into ``DIR/scale_options.csv``.

``--profile-study`` runs round 1 of the ``pyomo`` path per size with Ipopt's timing statistics and
MUMPS's own report (``mumps_print_level`` 2) and writes ``DIR/scale_profile.csv``: MUMPS's
factorizations (count, seconds, operations of one factorization, entries of the factor, its
memory), its solves (count, seconds) and analysis, Ipopt's total and function-evaluation seconds:
where a round's time goes, and how each part grows with m.

``--rounds-study`` runs Algorithm 1 (``train``, adaptive schedule, the default Schur rounds,
``--rounds`` at most) per size and appends every round to ``DIR/scale_rounds.csv`` (``m, round, true_loss,
floor, loss_over_floor, seconds, status``; ``floor`` is the teacher's own mean loss on the same
data), then prints the first round within 10% of the floor: does the schedule need more rounds as
m grows?
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = ["m", "path", "variables", "constraints", "build_s", "transform_s", "translate_s", "first_solve_s",
           "resolve_s", "ipopt_iterations", "seconds_per_iteration", "peak_rss_mb", "status",
           "resolve_iterations", "first_solve_cpu_s", "resolve_cpu_s", "eval_s", "initial_loss", "round1_loss",
           "round2_loss", "noise_floor", "hidden", "variant", "ipopt_options", "flops_per_iteration",
           "achieved_gflops", "dgemm_gflops", "threads"]
#: Ipopt options over the algorithm's defaults for the scale runs: QAMD ordering (AMD was the
#: fastest in the --options-study at m <= 3,000, but its ordering time grows as m^2: --profile-study)
#: and MUMPS's default 1000% workspace relaxation cut to 5% (at m = 10^5 the relaxed workspace,
#: ~60 GB of address space, would be refused by the kernel's overcommit heuristic on a 24 GB machine)
SCALE_IPOPT = {"mumps_pivot_order": 6, "mumps_mem_percent": 5}

#: --options-study variants of the pyomo path: Ipopt options, environment, rounds (the direct path's
#: own variants -- parallel maps, nlpsol options, SX derivatives -- were retired with it)
_WARM = {"warm_start_init_point": "yes", "mu_init": 1e-4}
VARIANTS = {
    "defaults": {},  # the algorithm's Ipopt options (MUMPS METIS, mem 1000%)
    "amd": {"ipopt": {"mumps_pivot_order": 0}},
    "amf": {"ipopt": {"mumps_pivot_order": 2}},
    "qamd": {"ipopt": {"mumps_pivot_order": 6}},
    "auto-order": {"ipopt": {"mumps_pivot_order": 7}},
    "mem5": {"ipopt": {"mumps_mem_percent": 5}},
    "amd-mem5": {"ipopt": {"mumps_pivot_order": 0, "mumps_mem_percent": 5}},
    "monotone": {"ipopt": {"mu_strategy": "monotone"}},
    "blas2": {"env": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}},
    # Ipopt's other linear solver in the CasADi wheel (HSL's are not in it); MUMPS scaling off; no
    # minimum iterative refinement
    "spral": {"ipopt": {"linear_solver": "spral"}, "env": {"OMP_CANCELLATION": "TRUE", "OMP_PROC_BIND": "TRUE"}},
    "amd-noscaling": {"ipopt": {"mumps_pivot_order": 0, "mumps_permuting_scaling": 0, "mumps_scaling": 0}},
    "amd-refine0": {"ipopt": {"mumps_pivot_order": 0, "min_refinement_steps": 0}},
    # two rounds, the second cold or warm (round 1's multipliers, mu_init 1e-4)
    "amd-2rounds": {"ipopt": {"mumps_pivot_order": 0}, "rounds": 2},
    "amd-2rounds-warm": {"ipopt": {"mumps_pivot_order": 0}, "rounds": 2, "resolve_ipopt": _WARM},
}
DEFAULT_VARIANTS = ",".join(k for k in VARIANTS if k != "spral")  # spral: 8x slower


# ---------------------------------------------------------------------------------------- worker
def teacher_data(m: int, hidden: list[int], noise: float, seed: int = 0):
    """``(X, Y, clean)``: 8 Gaussian features, a random sigmoid teacher's outputs plus noise."""
    import convexnn_pyomo as cnn

    rng = np.random.default_rng(seed)
    teacher = cnn.Network([8, *hidden, 1], "sigmoid").init_he(100)
    teacher.set_parameters(teacher.weights, [np.random.default_rng(101 + l).normal(0.0, 0.5, b.shape)
                                             for l, b in enumerate(teacher.biases)])
    X = rng.normal(size=(m, 8))
    clean = teacher.predict(X)
    return X, clean + noise * rng.normal(size=clean.shape), clean


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _recentre(rnd, ref, X) -> None:
    """Centre the round at ``ref`` with eta 2 and the exactness weights there (the adaptive schedule's)."""
    fp = ref.forward_pass(X)
    rnd.recentre(ref, 2.0, fp, **rnd.exactness_weights(ref, fp))


def _two_rounds(rnd, X, Y, net, spec: dict, row: dict, options: dict, resolve_options: dict, details=None) -> None:
    """Round 1 at ``net`` and round 2 re-centred at round 1's solution (``spec["rounds"]`` < 2: round 1
    only), through the round's ``recentre``/``solve``; ``details(solve)`` gives the last solve's
    ``(translate_s, solve_s, status)`` in the solver's own terms (default: no translation, the
    solve's wall time, its termination)."""
    details = details or (lambda out: (0.0, out.seconds, out.termination))
    limit = float(spec.get("timeout", 7200.0))
    t0 = time.perf_counter()
    _recentre(rnd, net, X)
    row["transform_s"] = time.perf_counter() - t0
    cpu = time.process_time()
    out = rnd.solve(limit, options)
    cpu = time.process_time() - cpu
    translate, solve, status = details(out)
    row.update(translate_s=translate, first_solve_s=solve, ipopt_iterations=out.iterations, status=status,
               first_solve_cpu_s=cpu, round1_loss=rnd.solution().loss(X, Y, "mean") if out.ok else float("nan"))
    if spec.get("rounds", 2) < 2 or not out.ok:
        return
    t0 = time.perf_counter()
    _recentre(rnd, rnd.solution(), X)
    cpu = time.process_time()
    out = rnd.solve(limit, {**options, **resolve_options})
    cpu = time.process_time() - cpu
    row.update(resolve_s=time.perf_counter() - t0, resolve_iterations=out.iterations, resolve_cpu_s=cpu,
               status=f"{row['status']}; {details(out)[2]}",
               round2_loss=rnd.solution().loss(X, Y, "mean") if out.ok else float("nan"))


class _Recorded:
    """A Pyomo solver that keeps its last results (for Ipopt's build and solve times)."""

    def __init__(self, opt):
        self.opt, self.last = opt, None
        self.name = getattr(opt, "name", "")

    def solve(self, model, **kwds):
        self.last = self.opt.solve(model, **kwds)
        return self.last


def _regularized_model(net, X, Y, relaxation: str, row: dict):
    """Round 1's Pyomo model: the ``relaxation``, the regularizer at ``net`` (eta 2, exactness
    weights), values at its lift; records build/transform seconds and the model's size in ``row``."""
    import pyomo.environ as pyo

    import convexnn_pyomo as cnn

    t0 = time.perf_counter()
    model = cnn.build_training_model(net, X, Y, reduction="mean")
    row["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pyo.TransformationFactory(f"convexnn.{relaxation}").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=2.0, reference=net)
    cnn.update_reference(model, net, eta=2.0, **cnn.exactness_weights(model, net))
    cnn.set_lifted_values(model, net)
    row["transform_s"] = time.perf_counter() - t0
    row["variables"] = sum(1 for _ in model.component_data_objects(pyo.Var))
    row["constraints"] = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True))
    return model


def _pyomo_rounds(net, X, Y, spec: dict, row: dict) -> None:
    """The Pyomo model on every sample (:class:`PyomoRound`, the algorithm's Ipopt options updated by
    ``spec["ipopt"]``), solved by ``ipopt_casadi``."""
    import pyomo.environ as pyo

    from convexnn_pyomo.algorithms.rounds import PyomoRound
    from convexnn_pyomo.solvers import require_solver

    opt = _Recorded(require_solver("ipopt_casadi"))
    t0 = time.perf_counter()
    rnd = PyomoRound(net, X, Y, "mean", "parabolic", [], opt, 2.0, (1.0, 1.0, 1.0))
    row["build_s"] = time.perf_counter() - t0
    row["variables"] = sum(1 for _ in rnd.model.component_data_objects(pyo.Var))
    row["constraints"] = sum(1 for _ in rnd.model.component_data_objects(pyo.Constraint, active=True))

    def details(out):  # Ipopt's own accounting: the first solve's build time is the translation (incl. nlpsol)
        if opt.last is None:  # the solve raised: the round's termination says why
            return 0.0, out.seconds, out.termination
        info = opt.last.extra_info
        return info.build_time, info.solve_time, info.return_status

    _two_rounds(rnd, X, Y, net, spec, row, dict(spec.get("ipopt") or {}), dict(spec.get("resolve_ipopt") or {}),
                details)
    row.pop("first_solve_cpu_s", None)  # round 1's CPU time includes the translation's


def _sdp_rounds(net, X, Y, spec: dict, row: dict) -> None:
    import pyomo.environ as pyo

    import convexnn_pyomo as cnn
    from convexnn_pyomo.solvers import solve_sdp_relaxation

    model = _regularized_model(net, X, Y, "sdp", row)
    t0, cpu = time.perf_counter(), time.process_time()
    res = solve_sdp_relaxation(model, load_solutions=False, raise_exception_on_nonoptimal_result=False)
    ok = pyo.check_optimal_termination(res)
    if ok:
        res.solution_loader.load_vars()
    info = res.extra_info
    row.update(translate_s=0.0, first_solve_s=time.perf_counter() - t0, first_solve_cpu_s=time.process_time() - cpu,
               ipopt_iterations=info.iteration_count,
               status=("Solve_Succeeded" if ok else str(res.termination_condition)) + f" (conic, {info.cut_rounds} cut rounds)",
               round1_loss=cnn.network_from_model(model).loss(X, Y, "mean") if ok else float("nan"))


def _schur_rounds(net, X, Y, spec: dict, row: dict) -> None:
    """The structured round (:class:`StructuredRound`, the default rounds of ``train``) solved by the
    Schur interior point (Ipopt options unused; the ``ipopt_*`` columns hold its iterations)."""
    from convexnn_pyomo.algorithms.rounds import StructuredRound

    t0 = time.perf_counter()
    rnd = StructuredRound(net, X, Y, "mean", [], 2.0, (1.0, 1.0, 1.0), "squared")
    row["build_s"] = time.perf_counter() - t0
    m = X.shape[0]
    row.update(variables=rnd.arrow.ns + m * rnd.arrow.nv, constraints=m * rnd.arrow.ng + rnd.arrow.n_link)
    timings: list[dict] = []

    def details(out):  # keeps where each solve went (round 1's is printed, not a column)
        last = rnd.ipm.last
        timings.append(dict(last.timings) if last is not None else {})
        if last is not None and "flops_per_iteration" not in row:
            row["flops_per_iteration"] = last.flops(rnd.ipm) / max(last.iterations, 1)
            row["threads"] = rnd.ipm.config.threads
        return 0.0, out.seconds, out.termination

    row["dgemm_gflops"] = dgemm_gflops(spec.get("threads", 2))
    _two_rounds(rnd, X, Y, net, spec, row, {}, {}, details)
    if timings and timings[0]:
        total = sum(timings[0].values()) or 1.0
        row["solve_shares"] = ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in timings[0].items())


def dgemm_gflops(threads: int, n: int = 2000, repeat: int = 3) -> float:
    """The machine's limit: the best rate of ``n x n`` matrix products with ``threads`` BLAS threads."""
    from convexnn_pyomo.threads import blas_threads

    a = np.random.default_rng(0).normal(size=(n, n))
    with blas_threads(threads):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(repeat))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


_ROUNDS = {"pyomo": _pyomo_rounds, "sdp": _sdp_rounds, "schur": _schur_rounds}


def worker(spec: dict) -> dict:
    """Measure one (m, path) in this process; returns the CSV row."""
    import convexnn_pyomo as cnn

    X, Y, _ = teacher_data(spec["m"], spec["hidden"], spec["noise"])
    net = cnn.Network([8, *spec["hidden"], 1], "sigmoid").init_he(0)
    row = {"m": spec["m"], "path": spec["path"], "hidden": "-".join(map(str, spec["hidden"])),
           "variant": spec.get("variant", ""), "noise_floor": spec["noise"] ** 2,
           "initial_loss": net.loss(X, Y, "mean")}
    _ROUNDS[spec["path"]](net, X, Y, spec, row)
    row["seconds_per_iteration"] = row["first_solve_s"] / max(row["ipopt_iterations"], 1)
    if row.get("flops_per_iteration"):
        row["achieved_gflops"] = row["flops_per_iteration"] / row["seconds_per_iteration"] / 1e9
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


# ---------------------------------------------------------------------------------------- parent
def run_child(spec: dict, timeout: float, env: dict | None = None, parse=None) -> dict:
    """Run :func:`worker` in a subprocess; a crash or timeout becomes the row's status.  ``parse``
    (the child's whole stdout -> dict) adds what the solvers printed to the row."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"m": spec["m"], "path": spec["path"], "status": f"timeout after {timeout:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"m": spec["m"], "path": spec["path"], "status": f"crashed (exit {out.returncode}): {tail}"[:300]}
    return {**json.loads(lines[-1]), **(parse(out.stdout) if parse else {})}


def append_row(path: Path, row: dict, known: list[str] | None = None) -> None:
    """Append ``row``; a file from an older version gains the newer columns of ``known`` (default: this
    benchmark's; older rows empty there)."""
    new, known = not path.exists(), known or COLUMNS
    columns = known
    if not new:
        with path.open() as fh:
            columns = next(csv.reader(fh), known)
        missing = [k for k in known if k not in columns and k in row]
        if missing:
            old = read_rows(path)
            columns = columns + missing
            with path.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(old)
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def predicted_peak_mb(rows: list[dict], path: str, hidden: str, options: str, m: int) -> float | None:
    """Peak RSS at ``m``, linear in m through the measured rows of the same path, architecture and options."""
    pts = [(_number(r["m"]), _number(r["peak_rss_mb"])) for r in rows
           if r.get("path") == path and r.get("hidden") == hidden and r.get("ipopt_options") == options]
    pts = [(a, b) for a, b in pts if np.isfinite(a) and np.isfinite(b)]
    if not pts:
        return None
    ms, mb = np.array(pts).T
    if len(set(ms)) < 2:
        return float(mb.max() * m / ms[np.argmax(mb)])
    slope, intercept = np.polyfit(ms, mb, 1)
    return float(max(intercept, 0.0) + max(slope, 0.0) * m)


def memory_available_mb() -> float:
    with open("/proc/meminfo") as fh:
        info = {ln.split(":")[0]: int(ln.split()[1]) for ln in fh}
    return info.get("MemAvailable", info["MemTotal"]) / 1024.0


def fitted_exponent(rows: list[dict], path: str, column) -> float | None:
    """Least-squares slope of log(column) against log(m) over the successful rows of ``path``."""
    pts = [(_number(r["m"]), column(r)) for r in rows
           if r.get("path") == path and str(r.get("status", "")).startswith("Solve")]
    pts = [(a, b) for a, b in pts if np.isfinite(a) and np.isfinite(b) and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    return float(np.polyfit(np.log([a for a, _ in pts]), np.log([b for _, b in pts]), 1)[0])


def round_seconds(r: dict) -> float:
    return sum(_number(r[k]) for k in ("build_s", "transform_s", "translate_s", "first_solve_s"))


def scale_run(args, sizes: list[int], hidden: list[int]) -> None:
    out = Path(args.out) / "scale.csv"
    limit = args.memory_limit_mb or min(16384.0, 0.9 * memory_available_mb())
    paths = ["schur", "pyomo"] if args.path == "both" else [args.path]
    tag = "-".join(map(str, hidden))
    for m in sizes:
        for path in paths:
            row = {"m": m, "path": path, "hidden": tag, "ipopt_options": args.ipopt}
            guess = predicted_peak_mb(read_rows(out), path, tag, args.ipopt, m)
            if path == "pyomo" and m > args.pyomo_max_m:
                row["status"] = f"skipped: m > --pyomo-max-m {args.pyomo_max_m}"
            elif guess is not None and guess > limit:
                row["status"] = f"skipped: predicted peak {guess:.0f} MB > limit {limit:.0f} MB"
            else:
                spec = {"m": m, "path": path, "hidden": hidden, "noise": args.noise, "ipopt": json.loads(args.ipopt),
                        "resolve_ipopt": json.loads(args.resolve_ipopt), "timeout": args.timeout}
                row = {**row, **run_child(spec, args.timeout)}
            append_row(out, row)
            print(", ".join(f"{k}={row[k]}" for k in COLUMNS if k in row), flush=True)
            if "solve_shares" in row:
                print(f"  round 1's solve: {row['solve_shares']}", flush=True)
    rows = read_rows(out)
    for path in paths:
        mine = [r for r in rows if r.get("hidden") == tag and r.get("ipopt_options") == args.ipopt]
        b = fitted_exponent(mine, path, round_seconds)
        bi = fitted_exponent(mine, path, lambda r: _number(r["seconds_per_iteration"]))
        bc = fitted_exponent(mine, path, lambda r: _number(r["first_solve_cpu_s"]) / _number(r["ipopt_iterations"]))
        print(f"{path}: round time ~ m^{b:.2f}" if b is not None else f"{path}: too few sizes for an exponent",
              f"(seconds per Ipopt iteration ~ m^{bi:.2f})" if bi is not None else "",
              f"(CPU seconds per iteration ~ m^{bc:.2f})" if bc is not None else "", flush=True)


def plot_scale(csv: Path, png: Path) -> None:
    """Log-log figure of ``scale.csv``: round time (first round) and peak memory against m, per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_rows(csv) if str(r.get("status", "")).startswith("Solve_Succeeded")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    order = {0: "AMD", 6: "QAMD"}
    for r in rows:  # a series per path and MUMPS ordering
        r["series"] = r["path"] + (f" ({order.get(json.loads(r['ipopt_options']).get('mumps_pivot_order'), 'METIS')})"
                                   if r["path"] == "direct" and r.get("ipopt_options") else "")
    for path, marker in (("direct (AMD)", "o"), ("direct (QAMD)", "D"), ("pyomo", "s"), ("schur", "v"), ("sdp", "^")):
        mine = sorted(((int(r["m"]), r) for r in rows if r["series"] == path), key=lambda t: t[0])
        if not mine:
            continue
        ms = [m for m, _ in mine]
        axes[0].loglog(ms, [round_seconds(r) for _, r in mine], marker=marker, label=f"{path}: build + translate + solve")
        if path != "sdp":
            axes[0].loglog(ms, [_number(r["first_solve_s"]) for _, r in mine], marker=marker, ls=":",
                           label=f"{path}: solve")
        axes[1].loglog(ms, [_number(r["peak_rss_mb"]) for _, r in mine], marker=marker, label=path)
    ref = sorted(int(r["m"]) for r in rows if r["path"] != "sdp")
    if ref:
        axes[0].loglog(ref, [12.4 * m / 1000 for m in ref], color="grey", lw=0.8, label="slope 1 (linear in m)")
    axes[0].set(xlabel="samples m", ylabel="seconds, first round", title="one convex round, 8-6-6-1 sigmoid")
    axes[1].set(xlabel="samples m", ylabel="peak RSS, MB", title="memory of the round's process")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


ROUND_COLUMNS = ["m", "round", "true_loss", "floor", "loss_over_floor", "eta", "seconds", "status", "hidden"]


def rounds_study(args, sizes: list[int], hidden: list[int]) -> None:
    """Algorithm 1 (adaptive, the default Schur rounds) per size; every round's loss against the
    teacher's own loss (rows of an m already in the file, e.g. measured on the retired direct
    path, are kept and not rerun)."""
    import pandas as pd

    import convexnn_pyomo as cnn
    from convexnn_pyomo.algorithms import SchurRounds

    out, tag = Path(args.out) / "scale_rounds.csv", "-".join(map(str, hidden))
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=ROUND_COLUMNS)
    for m in sizes:
        mine = done[(done.m == m) & (done.hidden.astype(str) == tag)]
        if mine.empty:
            X, Y, clean = teacher_data(m, hidden, args.noise)
            floor = float(np.mean((clean - Y) ** 2))
            net = cnn.Network([8, *hidden, 1], "sigmoid").init_he(0)
            res = cnn.train(net, X, Y, rounds=args.rounds, progress=True,
                            round_solver=SchurRounds(time_limit=args.timeout))
            h = res.history
            mine = pd.DataFrame({"m": m, "round": h["round"], "true_loss": h["true_loss"] / m, "floor": floor,
                                 "loss_over_floor": h["true_loss"] / m / floor, "eta": h["eta"],
                                 "seconds": h["solve_seconds"], "status": h["status"], "hidden": tag})
            mine[ROUND_COLUMNS].to_csv(out, mode="a", header=not out.exists(), index=False)
        hit = mine[mine.loss_over_floor <= 1.1]
        first = int(hit["round"].iloc[0]) if len(hit) else None
        print(f"m = {m}: best loss / floor {mine.loss_over_floor.min():.3f} after {int(mine['round'].max())} rounds; "
              f"within 10% of the floor " + (f"from round {first}" if first else "never"), flush=True)


def options_study(args, sizes: list[int], hidden: list[int]) -> None:
    out = Path(args.out) / "scale_options.csv"
    for m in [m for m in sizes for _ in range(args.repeat)]:
        for name in args.variants.split(","):
            v = VARIANTS[name]
            spec = {"m": m, "path": "pyomo", "hidden": hidden, "noise": args.noise, "rounds": v.get("rounds", 1),
                    "variant": name, "ipopt": v.get("ipopt", {}), "resolve_ipopt": v.get("resolve_ipopt", {}),
                    "timeout": args.timeout}
            row = {"m": m, "path": "pyomo", "variant": name, **run_child(spec, args.timeout, v.get("env"))}
            append_row(out, row)
            cpu_it = _number(row.get("first_solve_cpu_s")) / max(_number(row.get("ipopt_iterations")), 1)
            print(f"m={m:6d} {name:14s} iterations={row.get('ipopt_iterations', '-')!s:>4} "
                  f"s/iteration={_number(row.get('seconds_per_iteration')):.4f} cpu s/iteration={cpu_it:.4f} "
                  f"first_solve_s={_number(row.get('first_solve_s')):.2f} "
                  f"translate_s={_number(row.get('translate_s')):.2f} "
                  f"peak_rss_mb={_number(row.get('peak_rss_mb')):.0f} status={row.get('status')}"
                  + (f" resolve_iterations={row['resolve_iterations']} resolve_s={_number(row['resolve_s']):.2f}"
                     if "resolve_iterations" in row else ""), flush=True)


#: Ipopt options of --profile-study: its timing table and MUMPS's report of every call
PROFILE_IPOPT = {"print_timing_statistics": "yes", "print_level": 3, "mumps_print_level": 2}
PROFILE_COLUMNS = ["m", "build_s", "transform_s", "translate_s", "ipopt_iterations", "first_solve_s", "ipopt_total_s", "function_eval_s", "analysis_s",
                   "factorizations", "factorization_s", "solves", "solve_s", "factor_flops", "factor_entries",
                   "mumps_mb", "kkt_dimension", "peak_rss_mb", "round1_loss", "status", "hidden", "ipopt_options",
                   "group_size"]


#: the wall seconds of one line of Ipopt's timing table
_WALL = r"{}\.+:\s*[-+0-9.]+ \(sys:\s*[-+0-9.]+ wall:\s*([-+0-9.]+)\)"


def _floats(pattern: str, text: str) -> list[float]:
    import re

    return [float(v.replace("D", "E")) for v in re.findall(pattern, text)]


def parse_profile(text: str) -> dict:
    """What Ipopt's timing table and MUMPS's report (``mumps_print_level`` 2) say about one solve."""
    num = r"([-+0-9.]+(?:[DE][-+]?[0-9]+)?)"
    fact = _floats(rf"Elapsed time in factorization driver\s*=\s*{num}", text)
    solve = _floats(rf"Elapsed time in solve driver\s*=\s*{num}", text)
    last = lambda pattern: (_floats(pattern, text) or [float("nan")])[-1]  # noqa: E731
    return {"factorizations": len(fact), "factorization_s": sum(fact), "solves": len(solve), "solve_s": sum(solve),
            "analysis_s": sum(_floats(rf"Elapsed time in analysis driver\s*=\s*{num}", text)),
            "factor_flops": last(rf"\(3\) Operations in node elimination\s*=\s*{num}"),
            "factor_entries": last(rf"INFOG \(29\) Number of entries in factors\s*=\s*{num}"),
            "mumps_mb": max(_floats(rf"\(INFOG\(22\)\):\s*{num}", text) or [float("nan")]),
            "kkt_dimension": last(rf"JOB, N, NNZ =\s+2\s+{num}"),
            "ipopt_total_s": last(_WALL.format("OverallAlgorithm")),
            "function_eval_s": last(_WALL.format("Function Evaluations"))}


def profile_study(args, sizes: list[int], hidden: list[int]) -> None:
    """Round 1 of the pyomo path per size with the solvers' own accounting (``scale_profile.csv``;
    its ``group_size`` column belongs to rows of the retired direct path)."""
    out = Path(args.out) / "scale_profile.csv"
    ipopt = {**json.loads(args.ipopt), **PROFILE_IPOPT}
    for m in sizes:
        spec = {"m": m, "path": "pyomo", "hidden": hidden, "noise": args.noise, "rounds": 1, "ipopt": ipopt,
                "timeout": args.timeout}
        row = run_child(spec, args.timeout, {"GFORTRAN_UNBUFFERED_PRECONNECTED": "y"}, parse_profile)
        row.update(hidden="-".join(map(str, hidden)), ipopt_options=args.ipopt)
        new = not out.exists()
        with out.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=PROFILE_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        print(", ".join(f"{k}={row.get(k)}" for k in PROFILE_COLUMNS), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,3000,10000,30000,100000")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--hidden", default="6,6", help="hidden layer sizes of teacher and student")
    ap.add_argument("--path", choices=["schur", "pyomo", "both", "sdp"], default="both",
                    help="schur: the structured round (train's default) solved by SchurInteriorPoint; pyomo: the "
                         "Pyomo model on every sample solved by ipopt_casadi; both: these two (the direct CasADi path "
                         "was retired: its rows are reproducible at commit ec0d73c)")
    ap.add_argument("--pyomo-max-m", type=int, default=10000, help="largest m for the Pyomo path")
    ap.add_argument("--noise", type=float, default=0.1, help="standard deviation of the label noise")
    ap.add_argument("--memory-limit-mb", type=float, default=None,
                    help="skip sizes predicted to need more (default: 16 GiB, or 90%% of MemAvailable if less)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per (m, path) subprocess")
    ap.add_argument("--ipopt", default=json.dumps(SCALE_IPOPT),
                    help="JSON: Ipopt options over the algorithm's defaults, both rounds (default: %(default)s)")
    ap.add_argument("--resolve-ipopt", default="{}",
                    help="JSON: extra Ipopt options for round 2, e.g. "
                         '\'{"warm_start_init_point": "yes", "mu_init": 1e-4}\' '
                         "(the pyomo path then starts from round 1's multipliers)")
    ap.add_argument("--options-study", action="store_true", help="time CasADi/Ipopt variants instead")
    ap.add_argument("--repeat", type=int, default=1, help="for --options-study: runs per (m, variant)")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"for --options-study, from {','.join(VARIANTS)}")
    ap.add_argument("--plot", action="store_true", help="only draw OUT/scale.png from OUT/scale.csv")
    ap.add_argument("--rounds-study", action="store_true", help="Algorithm 1 per size: rounds to the noise floor")
    ap.add_argument("--profile-study", action="store_true",
                    help="round 1 per size with Ipopt's timings and MUMPS's report: scale_profile.csv")
    ap.add_argument("--rounds", type=int, default=15, help="for --rounds-study: rounds at most")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.plot:
        plot_scale(Path(args.out) / "scale.csv", Path(args.out) / "scale.png")
        return
    sizes, hidden = [int(s) for s in args.sizes.split(",") if s], [int(h) for h in args.hidden.split(",") if h]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {','.join(VARIANTS)}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"8-{args.hidden.replace(',', '-')}-1 sigmoid teacher, noise sd {args.noise} "
          f"(optimum mean loss ~ {args.noise ** 2:g})", flush=True)
    study = (rounds_study if args.rounds_study else options_study if args.options_study
             else profile_study if args.profile_study else scale_run)
    study(args, sizes, hidden)


if __name__ == "__main__":
    main()
