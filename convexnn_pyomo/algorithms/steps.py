r"""Step proposals: how a round's convex solution becomes the next network.

Given the accepted network :math:`\theta_k` and the round's convex solution :math:`\theta^*`, a
proposal returns a point on or near the step :math:`d = \theta^* - \theta_k`, measured on the
*true* loss (numpy forward passes), or nothing when it finds no improvement:

* :class:`IdentityStep` -- :math:`\theta^*` itself (Algorithm 1 as printed);
* :class:`LineSearch` -- :math:`\theta_k + t d` for ``t`` in 1, 2, 4, ... or 1/2, 1/4, 1/8,
  with the hard constraints' violation in the comparison;
* :class:`SubspaceSearch` -- :math:`\theta_k + \sum_l a_l d_l + \sum_i c_i s_i` over one
  coefficient per layer's part of ``d`` and the last accepted steps ``s_i`` (momentum), by
  L-BFGS-B inside a trust region;
* :class:`FeasibleSubspaceSearch` -- with hard constraints: the subspace search's point when it
  meets them, else a feasible point on the segment towards it, or the line search's step when
  that has less loss;
* :class:`ViolationSearch` -- the feasibility phase's proposal: a feasible point on the round's
  step (bisection), else the least hard-constraint violation over the same subspace (Powell's
  derivative-free method); from a feasible point, the least loss among the feasible points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..constraints import HardConstraint, check_splits_over_ranks, relax_all
from ..distributed import SampleShards
from ..losses import Loss, SquaredLoss
from ..network import Network

__all__ = ["Evaluator", "Proposal", "StepProposal", "IdentityStep", "LineSearch", "SubspaceSearch",
           "FeasibleSubspaceSearch", "ViolationSearch"]


@dataclass
class Evaluator:
    """The true objective of a run: summed loss and hard-constraint violation of a real network
    (``shards``: ``X`` is one MPI rank's shard; sums over samples are reduced over the ranks, so
    every rank evaluates the whole data set's loss)."""

    X: np.ndarray
    Y: np.ndarray
    constraints: list[HardConstraint] = field(default_factory=list)
    constraint_tol: float = 1e-6
    loss_function: Loss = field(default_factory=SquaredLoss)
    shards: SampleShards | None = None

    def __post_init__(self):
        check_splits_over_ranks(self.constraints, self.shards)

    def _sum(self, x):
        return x if self.shards is None else self.shards.sum(x)

    def loss(self, net: Network) -> float:
        return self._sum(net.loss(self.X, self.Y, reduction="sum", loss=self.loss_function))

    def constant_loss(self) -> float | None:
        """The least summed loss of an output that ignores the inputs (the targets' mean for the
        squared loss, their rates' logits for the logistic one), over every rank; None when the loss
        has no :meth:`~convexnn_pyomo.losses.Loss.constant_output`, or when every target column takes
        one value (constant targets, one class: a constant fits them)."""
        m = self._sum(float(self.Y.shape[0]))
        z = self.loss_function.constant_output(self._sum(self.Y.sum(axis=0)) / max(m, 1.0))
        if z is None or self._targets_constant():
            return None
        Z = np.repeat(np.asarray(z, dtype=float).reshape(-1, 1), self.Y.shape[0], axis=1)
        return float(self._sum(float(self.loss_function.value(Z, self.Y).sum())))

    def _targets_constant(self) -> bool:
        """Every target column takes one value over every rank (a rank without rows has none)."""
        n = self.Y.shape[1]
        hi = self.Y.max(axis=0) if self.Y.shape[0] else np.full(n, -np.inf)
        lo = self.Y.min(axis=0) if self.Y.shape[0] else np.full(n, np.inf)
        if self.shards is not None:
            hi, lo = self.shards.max(hi), self.shards.min(lo)
        return bool(np.all(hi == lo))

    def loss_and_gradient(self, net: Network) -> tuple[float, np.ndarray]:
        """Summed loss and its gradient in :meth:`Network.get_flat` order."""
        f, g = net.loss_and_gradient(self.X, self.Y, loss=self.loss_function)
        return self._sum(f), self._sum(g)

    def violation(self, net: Network) -> float:
        if self.shards is not None:  # every constraint here reduces over the ranks
            return max([c.violation(net, self.X, self.Y, shards=self.shards) for c in self.constraints], default=0.0)
        return max([c.violation(net, self.X, self.Y) for c in self.constraints], default=0.0)

    def meets(self, violation: float) -> bool:
        """A violation within ``constraint_tol`` (NaN and infinity never are)."""
        return bool(np.isfinite(violation) and violation <= self.constraint_tol)

    def better(self, loss_new: float, viol_new: float, loss_cur: float, viol_cur: float) -> bool:
        """Feasibility first (a smaller violation, or within tolerance), then a loss no larger."""
        if viol_cur > self.constraint_tol:
            return viol_new < viol_cur or viol_new <= self.constraint_tol
        return viol_new <= self.constraint_tol and loss_new <= loss_cur


@dataclass
class Proposal:
    """A candidate next network with its step length (``t`` on ``d``), loss and violation;
    ``unconstrained``: the search's own point when it broke the hard constraints (the proposal is
    then a feasible point short of it: a bound binds)."""

    step: float
    network: Network | None
    loss: float
    violation: float
    unconstrained: Network | None = None


class StepProposal:
    """Turns ``(current, convex solution)`` into a :class:`Proposal`; ``network`` None = nothing better."""

    name = "base"

    def propose(self, current: Network, candidate: Network, ev: Evaluator, previous_steps: list[np.ndarray]) -> Proposal:
        raise NotImplementedError


class IdentityStep(StepProposal):
    """The convex solution as it is (the paper's Algorithm 1)."""

    name = "identity"

    def propose(self, current, candidate, ev, previous_steps):
        return Proposal(1.0, candidate, ev.loss(candidate), ev.violation(candidate))


class LineSearch(StepProposal):
    """Expand ``t`` = 2, 4, ... while it improves, or backtrack to 1/2, 1/4, 1/8."""

    name = "line_search"

    def __init__(self, max_expand: int = 6, backtrack: tuple[float, ...] = (0.5, 0.25, 0.125)):
        self.max_expand = max_expand
        self.backtrack = backtrack

    def propose(self, current, candidate, ev, previous_steps):
        theta0 = current.get_flat()
        d = candidate.get_flat() - theta0
        loss0, viol0 = ev.loss(current), ev.violation(current)

        def at(t: float) -> Proposal:
            n = current.with_flat(theta0 + t * d)
            return Proposal(t, n, ev.loss(n), ev.violation(n))

        def improves(p: Proposal, loss_ref: float, viol_ref: float) -> bool:
            return ev.better(p.loss, p.violation, loss_ref, viol_ref) and (p.loss < loss_ref or p.violation < viol_ref)

        first = at(1.0)
        if improves(first, loss0, viol0):
            best = first
            for _ in range(self.max_expand):
                p = at(best.step * 2.0)
                if not (ev.better(p.loss, p.violation, best.loss, best.violation) and p.loss < best.loss):
                    break
                best = p
            return best
        for t in self.backtrack:
            p = at(t)
            if improves(p, loss0, viol0):
                return p
        return Proposal(0.0, None, first.loss, first.violation)


class SubspaceSearch(StepProposal):
    """Minimise the true loss over ``current + sum_l a_l d_l + sum_i c_i s_i`` (no hard constraints).

    ``d_l`` is layer ``l``'s part of the round's step and ``s_i`` the last ``memory`` accepted
    steps: the convex round acts as a preconditioned descent direction and the previous steps add
    momentum (as in accelerated proximal-point and nonlinear conjugate-gradient methods).  Each
    evaluation is a numpy forward/backward pass, negligible next to a convex solve.

    Trust region: each term may move the weights it touches by at most their norm (at least 1),
    and the convex step itself (coefficient 1) is always allowed.  Unbounded, the search drove a
    layer whose convex step was nearly zero to a coefficient of 1e6 (weights of 7e4, every sigmoid
    saturated, later rounds slow and stuck; breast_cancer m = 400, seed 1).
    """

    name = "subspace"

    def __init__(self, memory: int = 4, maxiter: int = 50):
        self.memory = memory  # measured: 4 previous steps beat 2 on breast_cancer
        self.maxiter = maxiter

    def _basis(self, current: Network, d: np.ndarray, previous_steps: list[np.ndarray]):
        """Columns: each layer's part of ``d``, then the previous steps; and each column's bound."""
        theta0 = current.get_flat()
        parts, radii, k = [], [], 0
        for l in range(1, current.n_layers + 1):
            size = current.sizes[l] * (current.sizes[l - 1] + 1)
            part = np.zeros_like(d)
            part[k : k + size] = d[k : k + size]
            parts.append(part)
            radii.append(max(float(np.linalg.norm(theta0[k : k + size])), 1.0))
            k += size
        steps = list(previous_steps)[: self.memory]
        radii += [max(float(np.linalg.norm(theta0)), 1.0)] * len(steps)
        basis = np.stack(parts + steps, axis=1)
        norms = np.linalg.norm(basis, axis=0)
        limits = [max(r / n, 1.0) if n > 0 else 1.0 for r, n in zip(radii, norms)]
        return basis, len(parts), limits

    def propose(self, current, candidate, ev, previous_steps):
        from scipy.optimize import minimize

        theta0 = current.get_flat()
        d = candidate.get_flat() - theta0
        basis, n_parts, limits = self._basis(current, d, previous_steps)
        loss0 = ev.loss(current)

        def fun(a):
            loss, grad = ev.loss_and_gradient(current.with_flat(theta0 + basis @ a))
            return loss, basis.T @ grad

        a0 = np.zeros(basis.shape[1])
        a0[:n_parts] = 1.0
        loss1 = fun(a0)[0]
        res = minimize(fun, a0, jac=True, method="L-BFGS-B", bounds=[(-c, c) for c in limits],
                       options={"maxiter": self.maxiter})
        a = res.x if res.fun < loss1 else a0
        loss = min(float(res.fun), float(loss1))
        if not np.isfinite(loss) or loss >= loss0:
            return Proposal(0.0, None, ev.loss(candidate), 0.0)
        parts = basis[:, :n_parts]
        step = float(np.dot(a[:n_parts], (parts * parts).sum(axis=0)) / max(np.dot(d, d), 1e-300))
        new = current.with_flat(theta0 + basis @ a)
        return Proposal(step, new, ev.loss(new), 0.0)


def _bisect(feasible: Callable[[float], bool], inside: float, outside: float, times: int) -> float:
    """``times`` bisections of the interval between a feasible ``inside`` and an infeasible
    ``outside``; returns its feasible end (``inside`` itself when no midpoint was feasible)."""
    for _ in range(times):
        mid = 0.5 * (inside + outside)
        inside, outside = (mid, outside) if feasible(mid) else (inside, mid)
    return inside


class FeasibleSubspaceSearch(StepProposal):
    r"""Phase 2's search with hard constraints: :class:`SubspaceSearch`'s point when it meets them;
    else a feasible point on the segment towards it; the feasible point of least true loss among
    that and :class:`LineSearch`'s step.

    The subspace search minimises the loss alone, so its point is checked: with a bound that does
    not bind it is feasible and the constrained run trains as fast as an unconstrained one (the
    line search along :math:`d` alone gave up the momentum and the per-layer coefficients).  When
    it breaks the bound, bisection on the segment :math:`\theta_0 + s(\theta_{sub} - \theta_0)`,
    :math:`s \in [0, 1]`, from the line search's step when that is feasible (else from the current
    network), keeps the last feasible ``s`` seen (a boundary point within ``2**-bisections`` of an
    infeasible one), if its loss is lower than the segment's start.  The proposal then carries the
    subspace point as ``unconstrained``: the bound binds, and
    :class:`~.refit.OutputLayerStep` refits the output layer at those hidden layers and keeps the
    better of the two.  From an infeasible network (the feasibility phase ended without meeting the
    constraints) it is the line search, which compares violations first.

    No bisection when a constraint's rows only linearise it (``relaxes = False``:
    :class:`~convexnn_pyomo.constraints.DecisionParity`): from a point on the boundary of such a
    constraint the next round's step, feasible for the tangent rows, breaks the curved constraint
    at once.  Measured on Adult (decision parity 0.02, seed 1, full data, 10 rounds after 2,000 Adam
    steps): with the boundary points the later rounds' steps shrank to 1/4 and 1/8, and the fit ended
    at summed loss 4,249 and training accuracy 0.7995, against 3,747 and 0.8167 with the line search.
    """

    name = "feasible_subspace"

    def __init__(self, memory: int = 4, maxiter: int = 50, bisections: int = 12, boundary: bool | None = None):
        self.memory = memory
        self.maxiter = maxiter
        self.bisections = bisections
        self.boundary = boundary  # None: when every hard constraint's rows relax it (relaxes)
        self._line = LineSearch()
        self._subspace = SubspaceSearch(memory=memory, maxiter=maxiter)

    def propose(self, current, candidate, ev, previous_steps):
        line = self._line.propose(current, candidate, ev, previous_steps)
        v0 = ev.violation(current)
        if not ev.meets(v0):
            return line
        sub = self._subspace.propose(current, candidate, ev, previous_steps)
        if sub.network is None or not np.isfinite(sub.loss):
            return line
        sub = replace(sub, violation=ev.violation(sub.network))
        line_feasible = line.network is not None and ev.meets(line.violation)
        if ev.meets(sub.violation):
            return line if line_feasible and not sub.loss < line.loss else sub
        edge = None
        if self._bisects(ev):
            start = line if line_feasible else Proposal(0.0, current, ev.loss(current), v0)
            edge = self._boundary(start, sub, ev)
        best = edge if edge is not None and not (line_feasible and line.loss <= edge.loss) else line
        return replace(best, unconstrained=sub.network)

    def _bisects(self, ev: Evaluator) -> bool:
        """Whether to look for a boundary point towards the subspace point (``boundary``; by default
        when every constraint's rows relax it, not when they linearise it, as ``DecisionParity``)."""
        return relax_all(ev.constraints) if self.boundary is None else bool(self.boundary)

    def _boundary(self, start: Proposal, sub: Proposal, ev: Evaluator) -> Proposal | None:
        """The last feasible point bisection sees on the segment from ``start`` (feasible) towards
        ``sub`` (not); None when it sees none, or none with less loss than ``start``."""
        a, b = start.network.get_flat(), sub.network.get_flat()

        def point(s: float) -> Network:
            return start.network.with_flat(a + s * (b - a))

        s = _bisect(lambda s: ev.meets(ev.violation(point(s))), 0.0, 1.0, self.bisections)
        if s == 0.0:  # no feasible point seen
            return None
        net = point(s)
        loss = ev.loss(net)
        if not loss < start.loss:
            return None
        return Proposal(start.step + s * (sub.step - start.step), net, loss, ev.violation(net))


class ViolationSearch(StepProposal):
    r"""The feasibility phase's proposal: the first feasible network the round's step reaches, at
    the least loss the search finds; else the least true violation over the round's subspace.

    1. Along :math:`d = \theta^* - \theta_k`: ``t`` = 1, 2, 4, ... while the real violation falls
       (or 1/2, 1/4, 1/8 while ``t = 1`` and its halves meet the constraints); once one ``t``
       meets them, bisection between it and the last ``t`` tried that does not gives a *boundary*
       step: a feasible point on the line next to an infeasible one, usually the first.
    2. Without a feasible ``t``: Powell's method minimises the real network's violation
       :math:`v(\theta_k + \sum_l a_l d_l + \sum_i c_i s_i)` over :class:`SubspaceSearch`'s basis and
       trust region (the layers' parts of ``d`` and the last ``memory`` accepted steps), from
       :class:`LineSearch`'s step.  :math:`v` is a maximum of piecewise-smooth functions of the
       outputs, so the search uses values only: about ``maxfev`` forward passes, each far cheaper
       than the convex round.
    3. From a feasible point of either, :meth:`_least_loss`: Powell on the true loss over the same
       subspace with the infeasible points excluded.

    The round still decides the direction and still certifies: a positive least violation of the
    elastic relaxation proves infeasibility whatever step is taken.

    Why the subspace: the elastic round's step is as long as its proximal term lets the relaxation
    stay exact, a few percent of the violation per round on the group-loss and balanced tasks,
    where the line search along ``d`` alone took 100 rounds without reaching feasibility (the
    constraints study, docs/constraints.md); the previous steps add the momentum that a proximal
    method lacks.  Why the boundary and the loss: the violation is zero on the whole feasible set
    and says nothing about where in it to stop.  Measured on Adult (decision parity 0.02, 3,000
    rows, seed 0, warm start): the violation's minimiser raised the summed loss from 290 to 8,133;
    the boundary step along ``d`` (t = 1.08) to 1,172.
    """

    name = "violation_subspace"

    def __init__(self, memory: int = 4, maxfev: int = 400, bisections: int = 12, max_expand: int = 6):
        self.memory = memory
        self.maxfev = maxfev
        self.bisections = bisections
        self.max_expand = max_expand
        self._line = LineSearch()
        self._subspace = SubspaceSearch(memory=memory)

    def propose(self, current, candidate, ev, previous_steps):
        if self._feasible(ev, current):  # nothing to restore: the loss decides
            return self._line.propose(current, candidate, ev, previous_steps)
        theta0 = current.get_flat()
        d = candidate.get_flat() - theta0
        basis, n_parts, limits = self._subspace._basis(current, d, previous_steps)
        bounds = [(-c, c) for c in limits]
        a = self._on_line(ev, current, theta0, d, basis, n_parts, limits)
        if a is None:
            a, line = self._least_violation(ev, current, candidate, previous_steps, theta0, basis, n_parts, bounds)
            if a is None:
                return line
        if self._feasible(ev, current.with_flat(theta0 + basis @ a)):
            a = self._least_loss(ev, current, theta0, basis, a, bounds)
        new = current.with_flat(theta0 + basis @ a)
        parts = basis[:, :n_parts]
        step = float(np.dot(a[:n_parts], (parts * parts).sum(axis=0)) / max(np.dot(d, d), 1e-300))
        return Proposal(step, new, ev.loss(new), ev.violation(new))

    def _on_line(self, ev, current, theta0, d, basis, n_parts, limits) -> np.ndarray | None:
        """The boundary step as subspace coefficients (every layer's part at ``t``), or None: no
        feasible ``t``, or the trust region clips it to an infeasible point."""
        t = self._boundary(current, theta0, d, ev)
        if t is None:
            return None
        on_line = np.r_[np.full(n_parts, t), np.zeros(basis.shape[1] - n_parts)]
        a = np.clip(on_line, -np.asarray(limits), limits)
        if np.array_equal(a, on_line):  # the point _boundary found feasible
            return a
        return a if self._feasible(ev, current.with_flat(theta0 + basis @ a)) else None

    def _least_violation(self, ev, current, candidate, previous_steps, theta0, basis, n_parts, bounds):
        """``(coefficients, line)``: Powell's least real violation over the subspace from the line
        search's step, or ``(None, line)`` when it is no smaller than the line search's."""
        from scipy.optimize import minimize

        line = self._line.propose(current, candidate, ev, previous_steps)
        limits = np.array([hi for _, hi in bounds])
        a0 = np.zeros(basis.shape[1])
        a0[:n_parts] = line.step if line.network is not None else 1.0
        a0 = np.clip(a0, -limits, limits)  # an expanded line step may leave the trust region

        def violation(b):
            v = ev.violation(current.with_flat(theta0 + basis @ b))
            return v if np.isfinite(v) else np.inf

        res = minimize(violation, a0, method="Powell", bounds=bounds,
                       options={"maxfev": self.maxfev, "xtol": 1e-3, "ftol": 1e-6})
        reference = line.violation if line.network is not None else ev.violation(current)
        return (res.x if res.fun < reference else None), line

    @staticmethod
    def _feasible(ev, net) -> bool:
        return ev.meets(ev.violation(net))

    def _boundary(self, current, theta0, d, ev) -> float | None:
        """A feasible ``t`` on ``theta0 + t d`` within a relative ``2**-bisections`` of an infeasible
        one (None: no feasible ``t`` found while the violation falls, up to ``t = 2**max_expand``)."""
        def viol(t):
            v = ev.violation(current.with_flat(theta0 + t * d))
            return v if np.isfinite(v) else np.inf

        v0, v1 = viol(0.0), viol(1.0)
        if v1 <= ev.constraint_tol:  # feasible at 1: halve while still feasible
            lo, hi = 0.0, 1.0
            for _ in range(3):
                if viol(hi / 2) > ev.constraint_tol:
                    lo = hi / 2
                    break
                hi /= 2
        else:
            lo, hi, v_lo = 1.0, None, v1
            if not v1 < v0:
                return None
            for _ in range(self.max_expand):
                v = viol(2 * lo)
                if v <= ev.constraint_tol:
                    hi = 2 * lo
                    break
                if not v < v_lo:
                    return None
                lo, v_lo = 2 * lo, v
            if hi is None:
                return None
        return _bisect(lambda t: viol(t) <= ev.constraint_tol, hi, lo, self.bisections)

    def _least_loss(self, ev, current, theta0, basis, a_feasible, bounds) -> np.ndarray:
        r"""From a feasible point of the subspace, Powell's method on the true loss with the
        infeasible points excluded (given the value :math:`2 \ell_0 + 1`, above the start's loss
        :math:`\ell_0`; finite, so that Brent's interpolation stays defined): the feasible point of
        least loss it visits (``a_feasible`` when none is better).  The visited points are tracked
        because bounded Powell can end on an excluded plateau after visiting better feasible
        points (measured: with previous steps in the basis it returned the plateau every time)."""
        from scipy.optimize import minimize

        start = ev.loss(current.with_flat(theta0 + basis @ a_feasible))
        if not np.isfinite(start):
            return a_feasible
        excluded = 2.0 * abs(start) + 1.0
        best = [start, a_feasible]  # the least loss at a feasible point Powell visited

        def loss(b):
            n = current.with_flat(theta0 + basis @ b)
            f = ev.loss(n)
            if not (np.isfinite(f) and self._feasible(ev, n)):
                return excluded
            if f < best[0]:
                best[:] = [f, np.array(b, dtype=float)]
            return f

        minimize(loss, a_feasible, method="Powell", bounds=bounds, options={"maxfev": self.maxfev, "xtol": 1e-3, "ftol": 1e-8})
        return best[1]

