"""Why a round is infeasible: the smallest class-wise budget (19) the relaxation admits."""

from __future__ import annotations

import math

import pyomo.environ as pyo

__all__ = ["smallest_kappa_factor"]


def smallest_kappa_factor(model, constraints, opt) -> float | None:
    r"""Smallest ``f`` with :math:`\sum_{C_j} |z - y| \le f |C_j|` for all ``j`` that the relaxed model admits.

    Solves the model (with ``opt``, a new-API solver) with ``f`` as a variable for each hard
    constraint that offers a scaled form (``scaled_budget(model)``, e.g.
    :class:`~convexnn_pyomo.constraints.ClasswiseMisfitBounds`); ``None`` when none does, ``nan``
    when that solve fails.
    """
    factors = []
    for c in constraints:
        scaled = getattr(c, "scaled_budget", None)
        if scaled is None:
            continue
        with scaled(model) as factor:
            res = opt.solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False)
            if pyo.check_optimal_termination(res):
                res.solution_loader.load_vars()
                factors.append(float(factor.value))
            else:
                factors.append(math.nan)
    return max(factors) if factors else None
