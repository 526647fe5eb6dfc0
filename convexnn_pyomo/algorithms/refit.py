r"""The output layer's exact problem: a round's step made to meet hard constraints on the outputs.

With the hidden layers of a network fixed, its outputs :math:`z^L = w^L x^L + b^L \mathbf{1}^\top`
are linear in :math:`(w^L, b^L)`: the training problem restricted to the output layer,

.. math:: \min_{w^L, b^L} \sum_j \ell(w^L x^L_j + b^L, y_j) \quad \text{s.t. the hard constraints,}

is convex and *exact* (no relaxation) whenever every constraint is convex in layer :math:`L`'s
variables alone (``on_output_layer``: parity and group-loss bounds, output bounds, misfit bounds,
linear output equalities).  Its solution is the least-loss network that meets the constraints
among those sharing the hidden layers; when it has none, the hidden layers must move, which is
what the feasibility phase's rounds do.  :func:`refit_output_layer` solves it (Clarabel for a
quadratic objective under linear and convex quadratic rows, the group-loss bounds as second-order
cones; else the default NLP solver; :class:`OutputLayerProblem` builds it once for
many refits); :class:`OutputLayerStep` adds it to a step
proposal: a round whose step breaks the constraints by the relaxation's gap keeps its hidden
layers and gets an output layer that meets them.

Why: the feasibility phase's step stops where the relaxation's outputs and the real network's
differ; with thousands of per-sample rows (outputs in [0, 1] on Adult) it left networks at the
threshold (accuracy 0.38-0.42) while the linear probability model under the same rows reaches 0.81
(docs/fairness.md, "The probability setting").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from ..model import build_output_layer_model, set_output_layer_values, var_matrix
from ..network import Network
from .steps import Evaluator, Proposal, StepProposal

__all__ = ["OutputLayerProblem", "OutputLayerStep", "RefitLog", "refit_applies", "refit_output_layer"]


def refit_applies(constraints: list, shards=None) -> bool:
    """Every constraint convex in the output layer alone (``on_output_layer``), one process."""
    return shards is None and bool(constraints) and all(getattr(c, "on_output_layer", False) for c in constraints)


#: ``solver="auto"``: the NLP solver takes output-layer problems Clarabel does not (logistic and
#: cross-entropy losses, or any problem without Clarabel installed) up to this many samples; beyond,
#: no refit (measured: the embedded Ipopt's refit of Adult's 30,162 rows under group-loss bounds had
#: not finished after 10 minutes)
NLP_REFIT_MAX_SAMPLES = 5000


def _conic_form(model) -> bool:
    """A convex quadratic objective with linear rows and convex quadratic rows bounded above
    (group-loss bounds): what Clarabel takes.  The degrees are read first (cheap); then
    ``convexnn_conic`` reads the rows as a solve would and checks each form's convexity (a user's
    nonconvex row sends the problem to the NLP solver instead of stopping the run)."""
    from ..solvers.conic import refusal

    if model.objective.expr.polynomial_degree() not in (0, 1, 2):
        return False
    for c in model.component_data_objects(pyo.Constraint, active=True):
        degree = c.body.polynomial_degree()
        if degree not in (0, 1) and not (degree == 2 and not c.has_lb()):
            return False
    return refusal(model) is None


def _solver(model, name: str):
    """``name``, or for ``"auto"``: Clarabel (``convexnn_conic``) when the problem is a conic
    quadratic program (squared loss; linear rows and convex quadratic ones, e.g. group-loss bounds)
    and Clarabel is installed, else the default NLP solver up to NLP_REFIT_MAX_SAMPLES samples,
    else None (no refit)."""
    from ..solvers.registry import check_solver, default_nlp_solver, require_solver

    if name != "auto":
        return require_solver(name)
    if check_solver("convexnn_conic")[0] and _conic_form(model):
        return require_solver("convexnn_conic")
    if len(model.samples) > NLP_REFIT_MAX_SAMPLES:
        return None
    return require_solver(default_nlp_solver())


#: the refit's ridge, times the number of samples: :math:`\rho\, m\, \|(w^L, b^L)\|^2` added to the
#: summed loss makes its optimum unique when the hidden features are collinear (measured: raw,
#: unscaled breast-cancer features saturate every hidden sigmoid, and the least-squares output
#: layer came back with weights of 3e10, which the next Pyomo round could not start from)
REFIT_RIDGE = 1e-8


class OutputLayerProblem:
    r"""The output layer's problem for the data ``(X, Y)`` and ``constraints``, built once (29 s of
    Pyomo at Adult's 30,162 rows, then 4 s a refit: ``python benchmarks/adult_linear_probability.py
    --refit-timing``); :meth:`refit` sets a network's hidden layers' forward pass
    ``x^L`` (mutable Params) and solves it, so a run pays the build once, not once per round.  The
    objective is the summed loss plus :data:`REFIT_RIDGE` :math:`\cdot m \|(w^L, b^L)\|^2`: on
    collinear hidden features the least-loss output layers form a line or plane, and the ridge takes
    the one of least norm on it; elsewhere it moves the loss by about ``1e-8`` relative."""

    def __init__(self, net: Network, X, Y, constraints: list, loss="squared", solver: str = "auto"):
        if not refit_applies(constraints):
            raise ValueError("refit_output_layer needs constraints convex in the output layer alone (on_output_layer)")
        self.X = X
        self.model = build_output_layer_model(net, X, Y, "sum", loss)
        out = self.model.layer[net.n_layers]
        ridge = REFIT_RIDGE * len(X)
        self.model.objective.set_value(self.model.objective.expr + ridge * (
            sum(out.w[k] ** 2 for k in out.w) + sum(out.b[i] ** 2 for i in out.b)))
        for c in constraints:  # a copy: add_to records its block, which the round's model keeps using
            copy.copy(c).add_to(self.model)
        self.opt = _solver(self.model, solver)

    def refit(self, net: Network, time_limit: float | None = None) -> Network | None:
        """``net`` with the output layer of least loss (its hidden layers kept), or None when the
        problem has no solution the solver proves optimal (no feasible output layer for these
        hidden layers, a time limit, a failure) or, with ``solver="auto"``, is not a QP Clarabel
        takes and has more than NLP_REFIT_MAX_SAMPLES samples."""
        if self.opt is None:
            return None
        L, model = net.n_layers, self.model
        out = model.layer[L]
        set_output_layer_values(model, net, net.forward_pass(self.X))
        options = {"load_solutions": False, "raise_exception_on_nonoptimal_result": False}
        if time_limit is not None:
            options["time_limit"] = float(time_limit)
        res = self.opt.solve(model, **options)
        if not pyo.check_optimal_termination(res):
            return None
        res.solution_loader.load_vars()
        w = var_matrix(out.w, (net.sizes[L], net.sizes[L - 1]))
        b = np.array([out.b[i].value for i in out.nodes], dtype=float)
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            return None
        return Network(list(net.sizes), list(net.activations), [v.copy() for v in net.weights[:-1]] + [w],
                       [v.copy() for v in net.biases[:-1]] + [b])


def refit_output_layer(net: Network, X, Y, constraints: list, loss="squared", solver: str = "auto",
                       time_limit: float | None = None) -> Network | None:
    """One refit (:class:`OutputLayerProblem` built for it): ``net`` with the output layer of least
    loss under ``constraints``, or None (see :meth:`OutputLayerProblem.refit`)."""
    return OutputLayerProblem(net, X, Y, constraints, loss, solver).refit(net, time_limit)


@dataclass
class RefitLog:
    """The refits of one run, shared by its proposals (phase 1's and the constrained rounds'): the
    problem built once, the refits tried, those that met the constraints, and the proposals left
    without one because no solver takes the problem (``solver="auto"`` beyond NLP_REFIT_MAX_SAMPLES)."""

    problem: tuple[Evaluator, OutputLayerProblem] | None = None
    tried: int = 0
    met: int = 0
    skipped: int = 0

    def summary(self) -> str:
        """For the run's message ('' when no proposal needed a refit)."""
        if self.skipped and not self.tried:
            return f"no output-layer refit: no solver takes its problem at this size ({self.skipped} proposals)"
        if not self.tried:
            return ""
        text = f"output-layer refits: {self.tried} tried, {self.met} met the constraints"
        return text + (f", {self.skipped} skipped (no solver)" if self.skipped else "")


class OutputLayerStep(StepProposal):
    """A step proposal followed, when it proposes no network or one that violates the hard
    constraints, by the output layer's exact problem at its network (or at the round's solution
    when it proposes none): the refitted network, which keeps those hidden layers, replaces the
    proposal when it meets the constraints (the run's acceptance rule still decides).  When the
    search's own point broke them (``Proposal.unconstrained``: a bound binds), the refit is at that
    point's hidden layers and replaces a feasible proposal only with less loss.
    ``time_left`` (the run's clock): seconds the run has left, or None without a limit; a refit
    gets that long, and none is tried when nothing is left.  ``log``: a :class:`RefitLog` to share
    (the problem is then built once for all the proposals that share it)."""

    def __init__(self, inner: StepProposal, solver: str = "auto",
                 time_left: Callable[[], float | None] | None = None, log: RefitLog | None = None):
        self.inner = inner
        self.solver = solver
        self.time_left = time_left
        self.name = f"{inner.name}+output_layer"
        self.memory = getattr(inner, "memory", 1)
        self.log = log if log is not None else RefitLog()

    def propose(self, current: Network, candidate: Network, ev: Evaluator, previous_steps: list) -> Proposal:
        prop = self.inner.propose(current, candidate, ev, previous_steps)
        left = self.time_left() if self.time_left is not None else None
        feasible = prop.network is not None and ev.meets(prop.violation)
        if (feasible and prop.unconstrained is None) or (left is not None and left <= 0):
            return prop
        base = next(n for n in (prop.unconstrained, prop.network, candidate) if n is not None)
        log = self.log
        if log.problem is None or log.problem[0] is not ev:  # built once per run (per evaluator)
            log.problem = (ev, OutputLayerProblem(base, ev.X, ev.Y, ev.constraints, ev.loss_function, self.solver))
        problem = log.problem[1]
        if problem.opt is None:
            log.skipped += 1
            return prop
        log.tried += 1
        new = problem.refit(base, time_limit=left)
        viol = ev.violation(new) if new is not None else math.inf
        if not ev.meets(viol):
            return prop
        log.met += 1
        loss = ev.loss(new)
        if feasible and not loss < prop.loss:  # the search's feasible point is better
            return prop
        return Proposal(prop.step if prop.network is not None else 1.0, new, loss, viol)
