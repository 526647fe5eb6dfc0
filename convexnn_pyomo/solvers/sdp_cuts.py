r"""``convexnn_sdp_cuts``: the SDP relaxation with the DC inequalities (7) enforced by cutting planes.

``convexnn.sdp`` outer-approximates (7), :math:`(u + x)/2 \ge p(z)` and :math:`(u - x)/2 \ge
q(z)`, by tangent cuts (``p``, ``q`` convex), which the conic solver can take.  This solver solves
the model with the conic solver, adds the tangent cuts at the solution wherever (7) is violated
by more than ``tol`` (``transformations.sdp._add_cuts``), and re-solves, until (7) holds within
``tol`` or ``max_rounds`` solves were made.  Every round's optimum is a valid lower bound on the
SDP relaxation's (the cuts only remove points outside (7)), so ``objective_bound`` is reported
even when the rounds run out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from pyomo.common.config import ConfigValue, NonNegativeFloat, PositiveInt, document_configdict
from pyomo.common.timing import default_timer
from pyomo.contrib.solver.common.base import Availability
from pyomo.contrib.solver.common.config import SolverConfig
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.environ import value as pyo_value

from ..model import layer_blocks
from ..transformations.base import get_relaxation, get_relaxation_block
from ..transformations.sdp import SDPRelaxation, _add_cuts
from .base import ConvexnnSolverBase, register_solver

__all__ = ["SDPCutsSolver", "dc_violation", "solve_sdp_relaxation"]


def _dc_residuals(model, value_of: Callable = pyo_value) -> Iterator[tuple]:
    r"""Per relaxed layer: ``(blk, keys, z, p_res, q_res)`` with the residuals of (7),
    :math:`p(z) - (u + x)/2` and :math:`q(z) - (u - x)/2` (positive: violated), at the values
    ``value_of(var)`` (the model's current values by default)."""
    for blk in layer_blocks(model):
        relaxation = get_relaxation(blk)
        if relaxation is None or not relaxation.relaxes_activation(blk):
            continue
        rblk, act = get_relaxation_block(blk), blk.activation_function
        keys = list(blk.z.keys())
        z, x, u = (np.array([value_of(var[k]) for k in keys], dtype=float) for var in (blk.z, blk.x, rblk.u))
        yield blk, keys, z, act.p(z) - (u + x) / 2, act.q(z) - (u - x) / 2


def dc_violation(model, value_of: Callable = pyo_value) -> float:
    """Largest violation of (7) (exact ``p``, ``q``) at the model's current values (or ``value_of``)."""
    return max((max(0.0, float(np.max(p)), float(np.max(q))) for *_, p, q in _dc_residuals(model, value_of)), default=0.0)


def _refine(model, values: Mapping, tol: float) -> float:
    """Add tangent cuts at the point ``values`` (a solver's ``{var: value}``; other variables at
    their current values) wherever (7) is violated by more than ``tol``; return the largest violation."""
    worst = 0.0
    for blk, keys, z, p, q in _dc_residuals(model, lambda v: values[v] if v in values else pyo_value(v)):
        worst = max(worst, float(np.max(p)), float(np.max(q)))
        if not isinstance(get_relaxation(blk), SDPRelaxation):
            continue
        rblk, act = get_relaxation_block(blk), blk.activation_function
        for k in np.flatnonzero(np.maximum(p, q) > tol):
            _add_cuts(rblk, blk, act, *keys[k], float(z[k]))
    return worst


@document_configdict()
class SDPCutsConfig(SolverConfig):
    """Options of ``convexnn_sdp_cuts`` (``solver_options`` go to the conic solver)."""

    def __init__(self, description=None, doc=None, implicit=False, implicit_domain=None, visibility=0):
        super().__init__(description=description, doc=doc, implicit=implicit,
                         implicit_domain=implicit_domain, visibility=visibility)
        self.tol: float = self.declare("tol", ConfigValue(
            default=1e-6, domain=NonNegativeFloat, description="largest violation of (7) accepted"))
        self.max_rounds: int = self.declare("max_rounds", ConfigValue(
            default=40, domain=PositiveInt, description="largest number of conic solves"))
        self.conic_solver: str = self.declare("conic_solver", ConfigValue(
            default="convexnn_conic", domain=str, description="SolverFactory name of the conic solver"))


@register_solver("convexnn_sdp_cuts", doc="SDP relaxation (convexnn.sdp) with tangent cuts refined until (7) holds")
class SDPCutsSolver(ConvexnnSolverBase):
    """Cutting-plane loop over the conic solver for ``convexnn.sdp`` models.

    ``extra_info``: ``cut_rounds`` (conic solves), ``dc_violation`` (largest violation of (7) at
    the returned point), ``iteration_count`` (conic iterations, summed), ``return_status`` (the last
    conic solve's).  Rounds running out with (7) violated: ``iterationLimit``, solution status
    ``infeasible``, the last round's bound kept.
    """

    CONFIG = SDPCutsConfig()

    def _conic(self, config=None):
        return SolverFactory((self.config if config is None else config).conic_solver)

    @property
    def module(self) -> str:  # what the conic solver needs
        return self._conic().module

    def available(self) -> Availability:
        return self._conic().available()

    def version(self) -> tuple | None:
        return self._conic().version()

    def _solve(self, model, config, results: Results) -> None:
        conic, deadline = self._conic(config), None
        if config.time_limit is not None:
            deadline = default_timer() + config.time_limit
        iterations, worst = 0, math.nan
        for rnd in range(1, config.max_rounds + 1):
            res = conic.solve(
                model, tee=config.tee, solver_options=config.solver_options.value(), load_solutions=False,
                raise_exception_on_nonoptimal_result=False,
                time_limit=None if deadline is None else max(0.0, deadline - default_timer()),
            )
            iterations += res.extra_info.iteration_count
            if res.solution_status != SolutionStatus.optimal:
                worst = math.nan
                break
            worst = _refine(model, res.solution_loader.get_vars(), config.tol)
            if worst <= config.tol:
                break
        for key in ("termination_condition", "solution_status", "incumbent_objective", "objective_bound", "solution_loader"):
            setattr(results, key, getattr(res, key))
        if worst > config.tol:  # rounds ran out: the last point violates (7), its bound stands
            results.termination_condition, results.solution_status = TerminationCondition.iterationLimit, SolutionStatus.infeasible
            results.incumbent_objective = None
        info = results.extra_info
        info.cut_rounds, info.dc_violation, info.iteration_count = rnd, worst, iterations
        info.return_status = res.extra_info.return_status


def solve_sdp_relaxation(model, tol: float = 1e-6, max_rounds: int = 40, **kwds) -> Results:
    """Solve a ``convexnn.sdp`` model, adding tangent cuts until (7) holds within ``tol``.

    Shorthand for ``SolverFactory("convexnn_sdp_cuts").solve(model, tol=tol, max_rounds=max_rounds,
    **kwds)`` (keywords: ``time_limit``, ``solver_options``, ``conic_solver``, ...).
    """
    return SolverFactory("convexnn_sdp_cuts").solve(model, tol=tol, max_rounds=max_rounds, **kwds)
