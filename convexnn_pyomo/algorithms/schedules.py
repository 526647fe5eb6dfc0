r"""Schedules of Algorithm 1: what changes from one convex round to the next.

A schedule owns every choice the paper leaves open or fixes differently from us: how the loss is
reduced over samples, the initial ``eta`` and its floor, the weights :math:`\mu` of (8), how a
round's solution becomes a step (:mod:`.steps`), how ``eta`` moves after a round, and when the run
has converged.  :class:`~.sequential.SequentialRelaxation` runs any of them.

``paper`` (:class:`PaperSchedule`)
    Algorithm 1 as printed: summed loss (1), a fixed ``eta`` (default 100), ``mu = 1``, the new
    reference is the convex solution itself, stop at the first accepted round that improves the
    loss by less than ``epsilon`` (absolute).

``adaptive`` (:class:`AdaptiveSchedule`, also called ``default``)
    The same convex round, made to train: averaged loss and per-sample terms; per-layer ``mu`` at
    the first-order exactness thresholds (:func:`~convexnn_pyomo.transformations.exactness_weights`),
    so that ``eta`` is a safety factor around 1 (start 2, doubled after an inexact round, divided
    by 1.5 after an exact one, never below the floor ``eta_floor``, default 1); the step searched on the true loss
    (:class:`~.steps.SubspaceSearch`, or :class:`~.steps.FeasibleSubspaceSearch` with hard
    constraints: the same search kept to points that meet them); stop
    when the loss falls below ``loss_fraction`` (1e-5) of the smaller of the initial loss and the
    best constant output's (the data interpolated), or when ``patience`` exact
    accepted rounds in a row each improve it by less than ``rel_tol`` (relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .steps import FeasibleSubspaceSearch, IdentityStep, StepProposal, SubspaceSearch, ViolationSearch

__all__ = ["Schedule", "PaperSchedule", "AdaptiveSchedule", "SCHEDULES", "get_schedule"]


@dataclass
class RoundOutcome:
    """What a schedule needs to know about a finished round."""

    accepted: bool
    exact: bool
    improvement: float  # best loss before minus after (0 when rejected)
    loss: float  # best loss after the round
    initial_loss: float
    stalled: bool = False  # the round's solver stalled: its point is a candidate, not the round's optimum
    #: the best constant output's loss (Evaluator.constant_loss; None: unknown, or a constant fits
    #: the targets), the adaptive stop's scale beside the initial loss (AdaptiveSchedule.reference_loss)
    constant_loss: float | None = None


def _mu_triple(v):
    """``None`` or three positive numbers ``(mu_z, mu_p, mu_q)``."""
    if v is None:
        return None
    try:
        mu = tuple(float(a) for a in v)
    except TypeError:
        mu = (v,)
    except ValueError:
        mu = ()
    if len(mu) != 3 or any(not (isinstance(a, float) and math.isfinite(a) and a > 0) for a in mu):
        raise ValueError(f"mu must be three positive numbers (mu_z, mu_p, mu_q), got {v!r}")
    return mu


def _positive(name: str, value) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


class Schedule:
    """Base class: subclasses set the class attributes and may override the methods."""

    name = "base"
    reduction = "sum"  #: loss reduction of the training model: "sum" or "mean"
    failure_factor = 4.0  #: eta multiplier after a failed or rejected round

    def __init__(self, eta: float, eta_floor: float, mu: tuple[float, float, float] | None):
        self.eta = _positive("eta", eta)
        self.eta_floor = _positive("eta floor", eta_floor)
        self.mu = _mu_triple(mu)
        self._stalls = 0

    def reset(self) -> None:
        """Forget what an earlier run left (a schedule instance can serve several runs)."""
        self._stalls = 0

    # -- regularizer -------------------------------------------------------------------------
    @property
    def fixed_mu(self) -> tuple[float, float, float]:
        """The ``(mu_z, mu_p, mu_q)`` the regularizer is built with."""
        return self.mu if self.mu is not None else (1.0, 1.0, 1.0)

    def mu_weights(self, problem, reference, fp) -> dict:
        """Per-layer ``mu`` for :func:`update_reference` at a new reference (``{}``: keep them)."""
        return {}

    # -- steps ---------------------------------------------------------------------------------
    def step_proposal(self, has_constraints: bool) -> StepProposal:
        return IdentityStep()

    def feasibility_proposal(self) -> StepProposal:
        """The proposal of the feasibility phase's rounds (feasibility first, then the loss among feasible points)."""
        return ViolationSearch()

    # -- eta -------------------------------------------------------------------------------------
    def next_eta(self, eta: float, outcome: RoundOutcome) -> float:
        return eta if outcome.accepted else eta * self.failure_factor

    def after_failure(self, eta: float) -> float:
        """eta for the retry after a failed solve (a stronger proximal term)."""
        return eta * self.failure_factor

    def gave_up(self, eta: float) -> bool:
        return eta > 1e12 * self.eta_floor

    # -- stop rule -------------------------------------------------------------------------------
    def converged(self, outcome: RoundOutcome) -> str | None:
        """A reason to stop (a message) after an accepted round, or ``None``."""
        raise NotImplementedError


class PaperSchedule(Schedule):
    """Algorithm 1 as printed (fixed eta, mu = 1, summed loss, identity step, absolute epsilon)."""

    name = "paper"
    reduction = "sum"

    def __init__(self, eta: float | None = None, mu=None, epsilon: float | None = None):
        eta = 100.0 if eta is None else eta
        super().__init__(eta, eta, mu)
        self.epsilon = 1e-7 if epsilon is None else float(epsilon)

    def converged(self, outcome):
        if 0 <= outcome.improvement < self.epsilon and not outcome.stalled:  # a stalled solve's point is no optimum
            return f"an accepted round improved the loss by {outcome.improvement:.3g} < epsilon = {self.epsilon:g}"
        return None


class AdaptiveSchedule(Schedule):
    """Exactness-weighted mu, eta as a safety factor, searched steps, tolerance stop rule."""

    name = "adaptive"
    reduction = "mean"

    def __init__(self, eta: float | None = None, mu=None, rel_tol: float | None = None, patience: int = 5,
                 loss_fraction: float = 1e-5, eta_floor: float | None = None):
        eta = 2.0 if eta is None else eta
        # with the exactness weights eta is a safety factor (floor 1); with fixed mu, the given eta
        if eta_floor is None:
            eta_floor = 1.0 if mu is None else eta
        super().__init__(eta, eta_floor, mu)
        self.rel_tol = 1e-4 if rel_tol is None else float(rel_tol)
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        self.patience = patience
        self.loss_fraction = float(loss_fraction)

    def mu_weights(self, problem, reference, fp):
        return problem.exactness_weights(reference, fp) if self.mu is None else {}

    def step_proposal(self, has_constraints):
        return FeasibleSubspaceSearch() if has_constraints else SubspaceSearch()

    def next_eta(self, eta, outcome):
        if not outcome.accepted:
            return eta * self.failure_factor
        # the weights are first-order thresholds: double eta when they were not enough, else
        # creep back towards them (longer steps), never below the floor
        return eta * 2.0 if not outcome.exact else max(eta / 1.5, self.eta_floor)

    def reference_loss(self, outcome: RoundOutcome) -> float:
        """The relative stop's scale: the smaller of the initial loss and the best constant output's
        (an absurd start, such as raw unscaled features, does not make 1e-5 of it a loss any fit
        reaches); the initial loss when the constant's is unknown or the targets are constant
        (``constant_loss`` None: 1e-5 of ~0 would never be reached).  Constant soft labels of the
        logistic loss (all 0.3) keep their entropy as the floor: the rule never fires there."""
        c = outcome.constant_loss
        return outcome.initial_loss if c is None else min(outcome.initial_loss, c)

    def converged(self, outcome):
        reference = self.reference_loss(outcome)
        if outcome.loss <= self.loss_fraction * reference:
            which = ("the initial network's loss" if reference == outcome.initial_loss
                     else "the best constant output's loss, below the initial network's")
            return f"the loss {outcome.loss:.3g} is below {self.loss_fraction:g} of {reference:.3g}, {which}"
        # only exact rounds count: an inexact relaxation's step can be useless while a larger eta
        # would still make progress (nor does a stalled solve's point, which is not the round's optimum)
        small = 0 <= outcome.improvement < self.rel_tol * max(outcome.loss, 1e-300)
        self._stalls = self._stalls + 1 if (small and outcome.exact and not outcome.stalled) else 0
        if self._stalls >= self.patience:
            return f"{self.patience} exact rounds in a row improved the loss by less than rel_tol = {self.rel_tol:g}"
        return None


SCHEDULES: dict[str, type[Schedule]] = {"paper": PaperSchedule, "adaptive": AdaptiveSchedule, "default": AdaptiveSchedule}


def get_schedule(name: str | Schedule, **options) -> Schedule:
    """A schedule by name (``paper``, ``adaptive``; ``default`` = ``adaptive``) with its options, or a
    configured :class:`Schedule` as it is."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](**options)
