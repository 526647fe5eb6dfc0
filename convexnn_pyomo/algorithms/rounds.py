"""The convex program of one round, behind one small protocol the algorithm drives (:class:`RoundProblem`).

The round is written once, as a Pyomo model (:func:`build_round_model`: the training model, a
relaxation, the hard constraints, the lifted start and the regularizer (8)).  Two back-ends solve it:

* :class:`StructuredRound` (the default): the model built on a template of two samples, its
  per-sample functions derived by :func:`~convexnn_pyomo.solvers.arrow.arrow_problem` and solved by
  :class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint` (time and memory linear in ``m``);
* :class:`PyomoRound`: the model on every sample, solved by any Pyomo solver (new solver API), for
  the studies and for models a user extends beyond the per-sample structure.

(:class:`~.sharded.ShardedRound` splits the Pyomo model over mpi-sppy.)  A round changes mutable
Params only, so a persistent translation is reused.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition
from pyomo.contrib.solver.common.util import NoSolutionError

from ..constraints import check_splits_over_ranks, relax_all
from ..losses import Loss
from ..model import build_training_model, constraint_gaps, get_training_problem, network_from_model
from ..network import ForwardPass, Network
from ..samples import template_samples
from ..transformations import RELAXATIONS, exactness_weights, set_lifted_values, update_reference
from ..transformations.regularize import get_regularization_block
from .diagnosis import smallest_kappa_factor

__all__ = [
    "IPOPT_DEFAULTS",
    "STALLED",
    "TRAINABLE_RELAXATIONS",
    "ElasticRoundProblem",
    "PyomoRound",
    "RoundProblem",
    "RoundSolve",
    "StructuredRound",
    "build_round_model",
]

# mu_strategy/METIS: 1.03 s -> 0.49 s per round (m = 100, same optimum; benchmarks/round_options.py);
# max_iter: a few rounds (large eta after rejections) otherwise ran thousands of iterations;
# bound_relax_factor 0: Ipopt's default (1e-8) relaxes W, X >= 0 and let the reported relaxed
# objective fall *below* the true loss of the same exact solution (25.1375 < 25.1628, m = 100)
IPOPT_DEFAULTS = {"mu_strategy": "adaptive", "mumps_pivot_order": 5, "max_iter": 1000, "bound_relax_factor": 0.0}

_INFEASIBLE = {TerminationCondition.provenInfeasible, TerminationCondition.locallyInfeasible}
#: a local solver's stops short of its tolerances that may leave a usable last point
_STALLS = {TerminationCondition.iterationLimit, TerminationCondition.minStepLength}


def row_violation(constraints) -> float:
    """The largest violation of ``constraints`` at the current values (inf when a row cannot be
    evaluated)."""
    worst = 0.0
    for c in constraints:
        body = pyo.value(c.body, exception=False)
        if body is None or not math.isfinite(body):
            return math.inf
        lo, up = pyo.value(c.lower), pyo.value(c.upper)
        worst = max(worst, (lo - body) if lo is not None else 0.0, (body - up) if up is not None else 0.0)
    return worst


def max_violation(model, variables: list | None = None) -> float:
    """The largest violation of a model's active rows and of its variables' bounds at their values
    (inf when a value is missing or a row cannot be evaluated)."""
    worst = row_violation(model.component_data_objects(pyo.Constraint, active=True, descend_into=True))
    if not math.isfinite(worst):
        return worst
    for v in variables if variables is not None else model.component_data_objects(pyo.Var, descend_into=True):
        if v.value is None:
            return math.inf
        worst = max(worst, (v.lb - v.value) if v.lb is not None else 0.0, (v.value - v.ub) if v.ub is not None else 0.0)
    return worst

#: relaxations the regularizer (8) is defined for and a local NLP solver can solve
TRAINABLE_RELAXATIONS = tuple(
    name for name, cls in RELAXATIONS.items() if cls.supports_regularization and not cls.requires_conic_solver
)


#: how a history row's message starts when the round's solver stalled and its last iterate was taken
STALLED = "stalled, its last iterate taken:"


@dataclass
class RoundSolve:
    """How one convex solve ended."""

    ok: bool  # an optimal solution is loaded
    termination: str  # the solver's termination condition (or "error: ...")
    infeasible: bool
    time_limit: bool
    iterations: int
    seconds: float
    message: str = ""  # why a failed solve failed (the solver's words), or infeasibility evidence
    #: ``ok`` only as a candidate: the solver stalled short of its tolerances at a point that meets
    #: the round's rows (``message`` says where); the step and the acceptance rule judge its network
    stalled: bool = False
    #: how a solve got its result when it took more than one try (e.g. a retry's options), shown in
    #: the history's ``message`` column whatever the outcome
    note: str = ""


@runtime_checkable
class RoundProblem(Protocol):
    """What :class:`~.sequential.SequentialRelaxation` needs of a round's convex program."""

    model: object  # the Pyomo model behind it (a template for the structured round), or None

    @property
    def eta(self) -> float: ...

    def exactness_weights(self, reference: Network, fp: ForwardPass) -> dict: ...

    def recentre(self, reference: Network, eta: float, fp: ForwardPass, **mu_weights) -> None: ...

    def solve(self, time_limit: float, options: dict) -> RoundSolve: ...

    def solution(self) -> Network: ...

    def gaps(self) -> tuple[float, float]: ...

    def relaxed_objective(self) -> float: ...

    def smallest_kappa_factor(self) -> float | None: ...


@runtime_checkable
class ElasticRoundProblem(RoundProblem, Protocol):
    """A round problem whose hard constraints can be made elastic: what the feasibility phase needs
    (:class:`_ModelRound`'s subclasses; the PH rounds of :mod:`.sharded` are not)."""

    #: the last :meth:`certify_infeasible` stopped at its time limit (a longer one would be needed)
    certificate_timed_out: bool

    def enter_feasibility(self, regularization: float, margin: float, aggregate: str = "max") -> None: ...

    def set_feasibility_weight(self, regularization: float) -> None: ...

    def leave_feasibility(self) -> None: ...

    def relaxed_violations(self) -> dict[str, float]: ...

    def certify_infeasible(self, time_limit: float, tol: float) -> str | None: ...


def relax(model, name: str) -> None:
    """Apply the relaxation ``name`` (one the regularizer (8) is defined for) to every layer."""
    if name not in TRAINABLE_RELAXATIONS:
        raise ValueError(f"relaxation must be one of {TRAINABLE_RELAXATIONS} for training, got {name!r}")
    if RELAXATIONS[name].requires_bounds:  # e.g. McCormick envelopes need boxes on weights and inputs
        pyo.TransformationFactory("convexnn.bound").apply_to(model)
    pyo.TransformationFactory(f"convexnn.{name}").apply_to(model)


def build_round_model(net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, relaxation: str,
                      constraints: list, eta: float, mu: tuple[float, float, float], loss: str | Loss = "squared",
                      samples=None, shards=None):
    """The round's program (9) as a Pyomo model: exact model (2a)-(2c), relaxation, hard constraints,
    lifted start and regularizer (8); on ``samples`` only (a template) when given; ``shards``: ``X``
    is one MPI rank's shard (:class:`~convexnn_pyomo.distributed.SampleShards`)."""
    model = build_training_model(net, X, Y, reduction=reduction, loss=loss, samples=samples, shards=shards)
    relax(model, relaxation)
    for c in constraints:
        c.add_to(model)
    set_lifted_values(model, net)
    pyo.TransformationFactory("convexnn.regularize").apply_to(
        model, eta=eta, reference=net, mu_z=mu[0], mu_p=mu[1], mu_q=mu[2]
    )
    return model


def _condition(status: str) -> str:
    """The Pyomo termination condition's name for an Ipopt-style status (every round reports alike)."""
    from ..solvers.base import map_status
    from ..solvers.casadi_ipopt import IPOPT_STATUS

    return map_status(IPOPT_STATUS, status)[0].name


class _ModelRound:
    """What both back-ends do on their Pyomo model: recentre, read the solution, the gaps."""

    model: object
    _phase_one_mode: tuple | None = None  # (rho, margin, aggregate) while the hard constraints are elastic

    @property
    def eta(self) -> float:
        return float(pyo.value(get_regularization_block(self.model).eta))

    def exactness_weights(self, reference: Network, fp: ForwardPass) -> dict:
        return exactness_weights(self.model, reference, fp=fp)

    def recentre(self, reference: Network, eta: float, fp: ForwardPass, **mu_weights) -> None:
        """Centre (8) at ``reference`` with ``eta`` (and per-layer mu's) and warm start at its lift."""
        update_reference(self.model, reference, eta=eta, fp=fp, **mu_weights)
        for c in self.constraints:  # rows linearised at the reference (DecisionParity)
            if hasattr(c, "recentre"):
                c.recentre(self.model, fp.output)
        set_lifted_values(self.model, reference, fp=fp)
        if self.elastic:
            from ..transformations.elastic import set_elastic_values

            set_elastic_values(self.model)

    def solution(self) -> Network:
        return network_from_model(self.model)

    def gaps(self) -> tuple[float, float]:
        return constraint_gaps(self.model)

    # -- the feasibility phase (phase 1 of Algorithm 1 from an infeasible start) ---------------------
    @property
    def elastic(self) -> bool:
        """Whether the hard constraints are elastic now (between :meth:`enter_feasibility` and
        :meth:`leave_feasibility`)."""
        return self._phase_one_mode is not None

    def enter_feasibility(self, regularization: float, margin: float, aggregate: str = "max") -> None:
        r"""Phase 1: the hard constraints made elastic (``convexnn.elastic``), the objective their
        largest relative violation :math:`t \ge -\text{margin}` (``aggregate="max"``: the measure the
        run accepts by; a negative :math:`t` is room, which the real network, off the relaxed one by
        the gap, needs) plus ``regularization`` :math:`\rho` times the round's objective (loss + eta r):
        the same convex round, feasible from any reference."""
        pyo.TransformationFactory("convexnn.elastic").apply_to(
            self.model, targets=self.constraints, regularization=regularization, margin=margin, aggregate=aggregate)
        self._phase_one_mode = (regularization, margin, aggregate)
        self._elastic_changed()

    def set_feasibility_weight(self, regularization: float) -> None:
        r"""Phase 1: a new weight :math:`\rho` of the round's objective in the elastic one (the
        elastic block's mutable Param ``regularization``; the model is not re-derived)."""
        from ..transformations.elastic import get_elastic_block

        if self._phase_one_mode is None:
            raise RuntimeError("set_feasibility_weight needs the elastic model (call enter_feasibility first)")
        get_elastic_block(self.model).regularization.set_value(float(regularization))
        self._phase_one_mode = (float(regularization), *self._phase_one_mode[1:])

    def leave_feasibility(self) -> None:
        """Back to the round itself (phase 2): the elastic block deleted, the rows reactivated."""
        from ..transformations.elastic import restore

        restore(self.model)
        self._phase_one_mode = None
        self._elastic_changed()

    def relaxed_violations(self) -> dict[str, float]:
        """Hard-constraint component name -> its elastic value at the last phase-1 solution (with
        ``aggregate="max"``: the largest relative violation t, the same for every one)."""
        from ..transformations.elastic import violations

        return violations(self.model)

    #: solver options tried in turn when the least-violation program's solve fails or stalls
    CERTIFICATE_RETRIES: tuple[dict, ...] = ()
    #: the last certificate's solve stopped at its time limit (the run then stops asking)
    certificate_timed_out: bool = False

    def certify_infeasible(self, time_limit: float, tol: float) -> str | None:
        r"""The least violation over the relaxation (every row elastic, their sum minimised,
        ``aggregate="sum"``, :math:`\rho = 0`, no margin): when its minimum exceeds ``tol`` no point of
        the relaxation, and so no network, meets the hard constraints; returns that evidence (the
        minimum and each constraint's violation), '' when the minimum is within ``tol`` or a
        constraint's rows are not a relaxation of it (``relaxes = False``: a linearisation proves
        nothing), None when no solve finished (with :attr:`CERTIFICATE_RETRIES`' options too): the
        question stays open.  The model's elastic state (phase 1 or none) is the same afterwards."""
        from ..transformations.elastic import violations

        if not relax_all(self.constraints):
            return ""

        mode = self._phase_one_mode
        if mode is not None:
            self.leave_feasibility()
        self.enter_feasibility(0.0, 0.0, aggregate="sum")
        try:
            proved = self._finished_solve(time_limit)
            least = self.relaxed_objective() if proved else 0.0
            worst = violations(self.model) if proved else {}
        finally:
            self.leave_feasibility()
            if mode is not None:
                self.enter_feasibility(*mode)
        if not proved:
            return None
        if least <= tol:
            return ""
        parts = ", ".join(f"{name} by {v:.4g}" for name, v in sorted(worst.items(), key=lambda kv: -kv[1]) if v > tol)
        return (f"the least violation the relaxation admits is {least:.4g} (each constraint's violations over "
                f"its max(1, |bound|), per-sample rows averaged over the samples, the others summed; largest "
                f"raw violation per constraint: {parts})")

    def _finished_solve(self, time_limit: float) -> bool:
        """Solve until one solve finishes (not failed, not stalled: a stalled iterate's violation bounds
        the least one from above only): the default options, then each of CERTIFICATE_RETRIES, all
        within ``time_limit`` seconds together; none after a solve stopped by its time limit."""
        deadline = time.perf_counter() + time_limit
        self.certificate_timed_out = False
        for k, options in enumerate(({}, *self.CERTIFICATE_RETRIES)):
            left = time_limit if k == 0 else deadline - time.perf_counter()
            if k and self._agree(left < 1.0):
                return False
            solve = self._certificate_solve(left, options)
            if solve.ok and not solve.stalled:
                return True
            if solve.time_limit:
                self.certificate_timed_out = True  # a longer limit, not other options, would be needed
                return False
        return False

    def _elastic_changed(self) -> None:
        """Hook: the model gained or lost its elastic block (the structured round re-derives)."""

    def _certificate_solve(self, time_limit: float, options: dict) -> RoundSolve:
        """One solve of the least-violation program (hook: the structured round's has no retries of its own)."""
        return self.solve(time_limit, options)

    def _agree(self, flag: bool) -> bool:
        """``flag`` as every process decides it (hook: the structured round's MPI ranks take it alike)."""
        return flag


class StructuredRound(_ModelRound):
    """The round derived per sample from its Pyomo model and solved by the Schur interior point.

    The model is :func:`build_round_model` on a template of two samples (the first and the last),
    so its build cost does not grow with ``m``; :func:`~convexnn_pyomo.solvers.arrow.arrow_problem`
    reads the per-sample, shared and linking (sums over samples) parts off it, and
    :class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint` solves every round (``options``:
    its ``CONFIG``).  Raises :class:`~convexnn_pyomo.solvers.arrow.NotSeparableError` when a hard
    constraint is not a per-sample row or a sum over samples (use a Pyomo solver then).
    """

    #: the least-violation program has no curvature in the weights (rho = 0) and, from a reference far
    #: from feasible, violations far above the starting slacks: the default start stopped at
    #: ``minStepLength`` after 7 iterations on an output-equality example (tests/test_feasibility.py);
    #: slacks of at least 1 (``slack_push``), or a wider centrality neighbourhood, finish it
    CERTIFICATE_RETRIES = ({"slack_push": 1.0}, {"centrality": 1e-2})

    #: tried in turn when a round's solve fails: the elastic round of a group-loss bound at m = 2 x 10^4
    #: (teacher data, 8-6-6-1) stopped at ``minStepLength`` after 6 iterations, its steps 0.002 and
    #: shorter; with the neighbourhood 1e-2 instead of 1e-3 it solved in 27 iterations
    #: (``benchmarks/group_loss_retry.py``, ``tests/test_structured.py``)
    ROUND_RETRIES = ({"centrality": 1e-2},)

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, constraints: list, eta: float,
                 mu: tuple[float, float, float], loss: str | Loss = "squared", options: dict | None = None,
                 shards=None, stalled_iterates: bool = True):
        from ..solvers.arrow import arrow_problem
        from ..solvers.schur_ipm import SchurInteriorPoint

        m = X.shape[0]
        check_splits_over_ranks(constraints, shards)
        self.model = build_round_model(net, X, Y, reduction, "parabolic", constraints, eta, mu, loss,
                                       samples=template_samples(m), shards=shards)
        self.shards = get_training_problem(self.model).sample_shards
        self.constraints, self.arrow = constraints, arrow_problem(self.model)
        self.omega, self.options = float(self.shards.total) if reduction == "mean" else 1.0, dict(options or {})
        self.ipm = SchurInteriorPoint(self.arrow, omega=self.omega, shards=self.shards, **self.options)
        self._objective: float | None = None
        self._saved: tuple | None = None  # the round's (arrow, ipm) while phase 1 solves the elastic model
        self.stalled_iterates = stalled_iterates

    def _elastic_changed(self) -> None:
        """Phase 1 solves the elastic model's own arrow problem (derived once, kept for its rounds);
        leaving it brings the round's back."""
        from ..solvers.arrow import arrow_problem
        from ..solvers.schur_ipm import SchurInteriorPoint

        if self.elastic:
            self._saved = (self.arrow, self.ipm)
            self.arrow = arrow_problem(self.model)
            self.ipm = SchurInteriorPoint(self.arrow, omega=self.omega, shards=self.shards, **self.options)
        elif self._saved is not None:
            (self.arrow, self.ipm), self._saved = self._saved, None

    def solve(self, time_limit: float, options: dict) -> RoundSolve:
        """One round by the interior point; ``options`` (its ``CONFIG`` keys) for this solve only.  A
        solve that fails (not at a stalled point of the round's rows, not at the time limit, no
        infeasibility detected) is retried in the time left with each of :attr:`ROUND_RETRIES` over
        ``options`` (one the first solve already used is skipped)."""
        unknown = sorted(set(options or {}) - set(self.ipm.CONFIG))
        if unknown:
            raise ValueError(f"options {unknown} are not options of the Schur interior point; it takes "
                             f"{sorted(self.ipm.CONFIG)}")
        return self._solve_with_retries(time_limit, dict(options or {}), self.ROUND_RETRIES)

    def _certificate_solve(self, time_limit: float, options: dict) -> RoundSolve:
        """The certificate's solve: its own :attr:`CERTIFICATE_RETRIES` stand for the round's."""
        return self._solve_with_retries(time_limit, dict(options or {}), ())

    def _agree(self, flag: bool) -> bool:
        return self.shards.any(flag)

    def _solve_with_retries(self, time_limit: float, options: dict, retries: tuple[dict, ...]) -> RoundSolve:
        """:meth:`solve`'s work with ``retries`` (options over ``options``) after a failed solve."""
        deadline = time.perf_counter() + time_limit
        res, stalled = self._solve_once(time_limit, options)
        iterations, seconds, note = res.iterations, res.seconds, ""
        for retry in retries:
            merged = {**options, **retry}
            if all(options.get(k, self.ipm.config[k]) == v for k, v in retry.items()):
                continue  # the first solve ran with these values
            left = deadline - time.perf_counter()
            if (res.ok or stalled or res.infeasible or res.status == "Maximum_WallTime_Exceeded"
                    or self.shards.any(left < 1.0)):  # every MPI rank decides alike
                break
            first = res.message or res.status
            res, stalled = self._solve_once(left, merged)
            iterations, seconds = iterations + res.iterations, seconds + res.seconds
            note = f"retried with {retry} after: {first}"
        if stalled:
            return RoundSolve(True, _condition(res.status), False, False, iterations, seconds,
                              f"{STALLED} {res.message}", stalled=True, note=note)
        if not res.ok and self.constraints and not self.elastic and res.status != "Maximum_WallTime_Exceeded":
            evidence = self._phase_one(time_limit)
            if evidence:
                return RoundSolve(False, _condition("Infeasible_Problem_Detected"), True, False, iterations,
                                  seconds, evidence, note=note)
        return RoundSolve(res.ok, _condition(res.status), res.infeasible, res.status == "Maximum_WallTime_Exceeded",
                          iterations, seconds, res.message or res.status, note=note)

    def _solve_once(self, time_limit: float, options: dict):
        """The interior point from the round's lifted start with ``options`` for this solve; loads a
        solution (or a stalled point of the round's rows); returns the result and whether it stalled."""
        saved = self.ipm.config()
        self.ipm.config.set_value(options or {})
        try:
            ps, pv = self.arrow.parameters()
            s0, V0 = self.arrow.start()
            res = self.ipm.solve(s0, V0, ps, pv, max_wall_time=time_limit)
            stalled = not res.ok and self.stalled_iterates and res.stalled_feasible(self.ipm.config.acceptable_tol)
        finally:
            self.ipm.config = saved
        if res.ok or stalled:
            self.arrow.load(res.s, res.V)
            self._objective = res.objective
        return res, stalled

    def _phase_one(self, time_limit: float, tol: float = 1e-6) -> str:
        r"""After a failed solve: the least violation of the hard constraints over the relaxation
        (:meth:`certify_infeasible`).  A positive minimum proves the round, and so the constrained
        training problem it relaxes, infeasible: returns the evidence ('' otherwise)."""
        evidence = self.certify_infeasible(time_limit, tol)
        return f"phase 1: {evidence}" if evidence else ""

    def relaxed_objective(self) -> float:
        if self._objective is None:
            raise ValueError("no solution yet: call solve() first")
        return self._objective

    def smallest_kappa_factor(self) -> None:
        return None  # the diagnosis solves the full Pyomo model (PyomoRound)


class PyomoRound(_ModelRound):
    """The round's Pyomo model on every sample (:func:`build_round_model`), solved by a Pyomo solver."""

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, relaxation: str,
                 constraints: list, opt, eta: float, mu: tuple[float, float, float], loss: str | Loss = "squared",
                 stalled_tol: float | None = 1e-6):
        self.model = build_round_model(net, X, Y, reduction, relaxation, constraints, eta, mu, loss)
        self.opt, self.constraints, self.X = opt, constraints, X
        self.stalled_tol = stalled_tol  #: None: a stalled solve fails the round (PyomoRounds' stalled_iterates)

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
        iterations = -1 if iterations is None else int(iterations)
        stalled = None if ok else self._stalled_point(res)
        if stalled is not None:
            return RoundSolve(True, term.name, False, False, iterations, time.perf_counter() - t0,
                              f"{STALLED} {term.name}, largest row or bound violation {stalled:.2g}", stalled=True)
        return RoundSolve(ok, term.name, term in _INFEASIBLE, term == TerminationCondition.maxTimeLimit,
                          iterations, time.perf_counter() - t0)

    def _stalled_point(self, res) -> float | None:
        """After a solve stopped by its iteration limit or too small a step: load its last point and
        return its largest row or bound violation when that is within ``stalled_tol``; else None,
        with the model's values as they were (the next solve starts from them)."""
        if self.stalled_tol is None or res.termination_condition not in _STALLS or res.solution_loader is None:
            return None
        try:
            point = res.solution_loader.get_vars()  # exactly the variables the solver returns
        except NoSolutionError:  # no point after all: the round fails as before
            return None
        variables = list(point.keys())
        before = [v.value for v in variables]
        for v in variables:
            v.set_value(point[v], skip_validation=True)
        worst = max_violation(self.model, variables)
        if worst <= self.stalled_tol:
            return worst
        for v, x in zip(variables, before):
            v.set_value(x, skip_validation=True)
        return None

    def relaxed_objective(self) -> float:
        """The active objective's value: the round's (9), or in phase 1 the elastic one."""
        (obj,) = self.model.component_data_objects(pyo.Objective, active=True)
        return float(pyo.value(obj))

    def smallest_kappa_factor(self) -> float | None:
        return smallest_kappa_factor(self.model, self.constraints, self.opt)
