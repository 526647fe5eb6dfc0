"""The convex program of one round, behind one small protocol the algorithm drives.

:class:`PyomoRound` is the reference implementation: the Pyomo training model with a relaxation,
the hard constraints and the regularizer (8), solved by any Pyomo solver (new solver API).  A round
changes mutable Params only, so a persistent translation (``ipopt_casadi``) is reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition

from ..losses import Loss
from ..model import build_training_model, constraint_gaps, network_from_model
from ..network import ForwardPass, Network
from ..transformations import RELAXATIONS, exactness_weights, set_lifted_values, update_reference
from .diagnosis import smallest_kappa_factor

__all__ = ["RoundSolve", "PyomoRound", "DirectRound", "TRAINABLE_RELAXATIONS", "direct_unsupported"]

# mu_strategy/METIS: 1.03 s -> 0.49 s per round (m = 100, same optimum; benchmarks/round_options.py);
# max_iter: a few rounds (large eta after rejections) otherwise ran thousands of iterations;
# bound_relax_factor 0: Ipopt's default (1e-8) relaxes W, X >= 0 and let the reported relaxed
# objective fall *below* the true loss of the same exact solution (25.1375 < 25.1628, m = 100)
IPOPT_DEFAULTS = {"mu_strategy": "adaptive", "mumps_pivot_order": 5, "max_iter": 1000, "bound_relax_factor": 0.0}

_INFEASIBLE = {TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible}

#: relaxations the regularizer (8) is defined for and a local NLP solver can solve
TRAINABLE_RELAXATIONS = tuple(
    name for name, cls in RELAXATIONS.items() if cls.supports_regularization and not cls.requires_conic_solver
)


@dataclass
class RoundSolve:
    """How one convex solve ended."""

    ok: bool  # an optimal solution is loaded
    termination: str  # the solver's termination condition (or "error: ...")
    infeasible: bool
    time_limit: bool
    iterations: int
    seconds: float


def relax(model, name: str) -> None:
    """Apply the relaxation ``name`` (one the regularizer (8) is defined for) to every layer."""
    if name not in TRAINABLE_RELAXATIONS:
        raise ValueError(f"relaxation must be one of {TRAINABLE_RELAXATIONS} for training, got {name!r}")
    if RELAXATIONS[name].requires_bounds:  # e.g. McCormick envelopes need boxes on weights and inputs
        pyo.TransformationFactory("convexnn.bound").apply_to(model)
    pyo.TransformationFactory(f"convexnn.{name}").apply_to(model)


class PyomoRound:
    """Exact model (2a)-(2c), relaxation, hard constraints, lifted start and regularizer (9)."""

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, relaxation: str,
                 constraints: list, opt, eta: float, mu: tuple[float, float, float], loss: str | Loss = "squared"):
        model = build_training_model(net, X, Y, reduction=reduction, loss=loss)
        relax(model, relaxation)
        for c in constraints:
            c.add_to(model)
        set_lifted_values(model, net)
        pyo.TransformationFactory("convexnn.regularize").apply_to(
            model, eta=eta, reference=net, mu_z=mu[0], mu_p=mu[1], mu_q=mu[2]
        )
        self.model, self.opt, self.constraints, self.X = model, opt, constraints, X

    @property
    def eta(self) -> float:
        return float(pyo.value(self.model.regularization.eta))

    def exactness_weights(self, reference: Network, fp: ForwardPass) -> dict:
        return exactness_weights(self.model, reference, fp=fp)

    def recentre(self, reference: Network, eta: float, fp: ForwardPass, **mu_weights) -> None:
        """Centre (8) at ``reference`` with ``eta`` (and per-layer mu's) and warm start at its lift."""
        update_reference(self.model, reference, eta=eta, fp=fp, **mu_weights)
        set_lifted_values(self.model, reference, fp=fp)

    def solve(self, time_limit: float, options: dict) -> RoundSolve:
        """One convex solve; a solver exception is a failed round, not a crash (the weights survive)."""
        if str(getattr(self.opt, "name", "")).startswith("ipopt"):
            options = {**IPOPT_DEFAULTS, **options}
        t0 = time.perf_counter()
        try:
            res = self.opt.solve(self.model, time_limit=time_limit, solver_options=options, load_solutions=False,
                                 raise_exception_on_nonoptimal_result=False)
        except Exception as exc:
            return RoundSolve(False, f"error: {type(exc).__name__}: {exc}", False, False, -1, time.perf_counter() - t0)
        ok = pyo.check_optimal_termination(res)
        if ok:
            res.solution_loader.load_vars()
        term = res.termination_condition
        iterations = res.extra_info.value().get("iteration_count")  # ConfigDict.get returns a ConfigValue
        return RoundSolve(ok, term.name, term in _INFEASIBLE, term == TerminationCondition.maxTimeLimit,
                          -1 if iterations is None else int(iterations), time.perf_counter() - t0)

    def solution(self) -> Network:
        return network_from_model(self.model)

    def gaps(self) -> tuple[float, float]:
        return constraint_gaps(self.model)

    def relaxed_objective(self) -> float:
        return float(pyo.value(self.model.regularization.objective))

    def smallest_kappa_factor(self) -> float | None:
        return smallest_kappa_factor(self.model, self.constraints, self.opt)


def direct_unsupported(relaxation: str, constraints: list, solver_name: str) -> str:
    """Why :class:`DirectRound` cannot replace :class:`PyomoRound` here ('' when it can)."""
    if relaxation != "parabolic":
        return f"it builds the parabolic relaxation only (relaxation={relaxation!r})"
    if constraints:
        return "hard constraints are Pyomo constraints"
    if solver_name != "ipopt_casadi":
        return f"it runs the embedded Ipopt (solver 'ipopt_casadi'), not {solver_name!r}"
    return ""


class DirectRound:
    """The parabolic round built directly in CasADi (:class:`~convexnn_pyomo.solvers.casadi_direct.DirectParabolicRound`).

    The same problem as :class:`PyomoRound` with the parabolic relaxation and no hard constraints
    (tested variable by variable and constraint by constraint, ``tests/test_casadi_direct.py``),
    built per sample and mapped over the samples, so its build and translation cost does not grow
    with ``m``.  From ``m >= 1000`` it cuts MUMPS's workspace margin to 5 % (which keeps MUMPS's
    reservation for m = 10^5 within the machine) and orders by AMD below m = 5,000 (27-30 % less CPU
    per Ipopt iteration than METIS at m = 1,000-3,000), by QAMD from there on: AMD's ordering time
    grows as m^2 on this KKT structure (0.29 / 2.06 / 23.5 / 235 s at m = 10^3 / 3 x 10^3 / 10^4 /
    3 x 10^4, half of the round at 3 x 10^4) while QAMD, which detects the quasi-dense rows of the
    shared variables, orders m = 3 x 10^4 in 12.8 s and solves the round 2.1x faster
    (``python benchmarks/scale.py --profile-study``, ``benchmarks/results/scale_profile.csv``).
    ``solver="schur"`` solves the rounds with :class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint`
    instead (the algorithm's ``round_solver``): linear in ``m`` with no ordering, for m >= 10^4.
    """

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, eta: float,
                 mu: tuple[float, float, float], loss="squared", solver: str = "ipopt"):
        from ..solvers.casadi_direct import DirectParabolicRound

        m = X.shape[0]
        large = {"mumps_pivot_order": 0 if m < 5000 else 6, "mumps_mem_percent": 5} if m >= 1000 else {}
        self.round = DirectParabolicRound(net, X, Y, reduction=reduction, eta=eta, mu=mu, loss=loss,
                                          ipopt_options=large, solver=solver)
        self.model = None  # no Pyomo model: use backend="pyomo" to keep one

    @property
    def eta(self) -> float:
        return self.round.eta

    def exactness_weights(self, reference: Network, fp: ForwardPass) -> dict:
        return self.round.exactness_weights(reference, fp=fp)

    def recentre(self, reference: Network, eta: float, fp: ForwardPass, **mu_weights) -> None:
        self.round.recentre(reference, eta, fp=fp, **mu_weights)

    def solve(self, time_limit: float, options: dict) -> RoundSolve:
        from ..solvers.base import map_status
        from ..solvers.casadi_ipopt import IPOPT_STATUS

        d = self.round.solve(time_limit=time_limit, options=options)
        term = map_status(IPOPT_STATUS, d["return_status"])[0]  # the same names as the Pyomo path's
        return RoundSolve(d["ok"], term.name, d["infeasible"], d["time_limit"], d["iterations"], d["seconds"])

    def solution(self) -> Network:
        return self.round.solution()

    def gaps(self) -> tuple[float, float]:
        return self.round.gaps()

    def relaxed_objective(self) -> float:
        return self.round.relaxed_objective()

    def smallest_kappa_factor(self) -> None:
        return None  # no hard constraints on this path
