r"""Algorithm 1 as a class: :class:`SequentialRelaxation` solves a sequence of convex programs (9).

Round ``k`` solves the relaxation of the training problem regularized by :math:`\eta_k r` of (8)
centred at the accepted network :math:`\theta_k`; the solution proposes a step (schedule-owned,
:mod:`.steps`), accepted only if the true loss (numpy forward pass) does not increase and, with
hard constraints, the real network's violation does not grow (or stays within tolerance).  The
convex program is built once (:class:`~.rounds.PyomoRound`); a round changes its parameters only.
The loop is :meth:`SequentialRelaxation._run`; each of its steps is a method: :meth:`_recentre`,
``problem.solve``, :meth:`_handle_failure`, :meth:`_accept`, :meth:`_stop_reason`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from pyomo.common.config import Bool, ConfigDict, ConfigValue, NonNegativeInt, PositiveFloat, PositiveInt

from ..constraints import as_hard_constraints, relax_all
from ..losses import get_loss
from ..network import Network, check_data
from .progress import RoundPrinter
from .refit import OutputLayerStep, RefitLog, refit_applies
from ..solvers.arrow import NotSeparableError
from .round_solvers import PyomoRounds, get_round_solver
from .rounds import IPOPT_DEFAULTS, ElasticRoundProblem, RoundProblem, RoundSolve
from .results import HISTORY_COLUMNS, RoundStatus, RunStatus, TrainResult
from .schedules import RoundOutcome, get_schedule
from .steps import Evaluator

__all__ = ["SequentialRelaxation"]


def _optional_positive(v):
    return None if v is None else PositiveFloat(v)


def _optional_positive_int(v):
    return None if v is None else PositiveInt(v)


def _shards(v):
    """``shards``: a number of shards, or this rank's :class:`~convexnn_pyomo.distributed.SampleShards`
    (``X`` is then this rank's rows only)."""
    from ..distributed import SampleShards

    return v if isinstance(v, SampleShards) else PositiveInt(v)


def _progress(v):
    if v is None or v is False:
        return None
    if v is True:
        return RoundPrinter()
    if callable(v):
        return v
    raise ValueError(f"progress must be True, False or a callable(row, network), got {v!r}")


#: inputs larger than this in magnitude count as unscaled (He weights assume features of order 1)
UNSCALED_INPUT = 100.0


def _warn_if_unscaled(X: np.ndarray) -> None:
    """Warn when a feature reaches :data:`UNSCALED_INPUT`: the rounds then start from saturated or
    huge pre-activations and their proximal terms weigh the first layer's weights on the wrong scale."""
    if X.size == 0:
        return
    big = np.max(np.abs(X), axis=0)
    j = int(np.argmax(big))
    if big[j] > UNSCALED_INPUT:
        warnings.warn(f"input column {j} reaches {big[j]:.3g}: on unscaled features the rounds are ill-conditioned; "
                      "scale the inputs to about [0, 1] (the estimators of convexnn_pyomo.sklearn do, and fold the "
                      "scaling into network_)", UserWarning, stacklevel=4)


@dataclass
class _RunState:
    """Everything that changes during a run."""

    best: Network
    best_loss: float
    best_viol: float
    eta: float
    t_start: float
    rows: list = field(default_factory=list)
    previous_steps: list = field(default_factory=list)
    k: int = 0
    failures: int = 0
    status: RunStatus = RunStatus.ROUND_LIMIT
    message: str = ""
    termination: str | None = None
    kappa_factor: float | None = None
    phase: int = 2  #: 1 while the feasibility phase minimises the violation
    rho: float = 1.0  #: phase 1: weight of the round's objective beside the violation
    #: phase 1: certificates left to ask after a positive relaxed violation (0 once one has finished,
    #: since a feasible relaxation at one reference proves nothing later and the phase's end asks
    #: again, or once one stopped at its time limit)
    certificate_tries: int = 3
    certificate_open: bool = False  #: the last certificate's solve did not finish (certify_infeasible None)
    phase_one_end: str = ""  #: why phase 1 handed over to the constrained rounds without a feasible network
    stalled: int = 0  #: rounds whose candidate is a stalled solve's last iterate (RoundSolve.stalled)
    retried: int = 0  #: round solves retried with other options (RoundSolve.note)
    constant_loss: float | None = None  #: the best constant output's loss (RoundOutcome.constant_loss)


class SequentialRelaxation:
    """Algorithm 1: train a :class:`~convexnn_pyomo.network.Network` by a sequence of convex rounds.

    ``SequentialRelaxation(**options).solve(net, X, Y, **more_options)`` returns a
    :class:`~.results.TrainResult`; options are declared in :attr:`CONFIG` (``help(...)`` or
    ``SequentialRelaxation.CONFIG.display()`` lists them).
    """

    CONFIG = ConfigDict("convexnn.sequential")
    CONFIG.declare("schedule", ConfigValue(default="adaptive", domain=get_schedule,
                                           description="'adaptive' (alias 'default'), 'paper' or a configured Schedule",
                                           doc="e.g. AdaptiveSchedule(eta=4, rel_tol=1e-5) or PaperSchedule(eta=100): "
                                               "eta, mu and the stop rule belong to the schedule"))
    CONFIG.declare("round_solver", ConfigValue(default="auto",
                                               description="'auto', 'schur', 'pyomo', a Pyomo solver name, or a "
                                                           "configured RoundSolver",
                                               doc="auto: SchurRounds (ShardedRounds with shards > 1); the solver's "
                                                   "options, time limit per round and relaxation belong to it "
                                                   "(convexnn_pyomo.algorithms.round_solvers)"))
    CONFIG.declare("rounds", ConfigValue(default=300, domain=PositiveInt, description="maximum number of convex solves"))
    CONFIG.declare("loss", ConfigValue(default="squared", domain=get_loss,
                                       description="'squared', 'logistic', 'softmax' or a convexnn_pyomo.losses.Loss"))
    CONFIG.declare("hard_constraints", ConfigValue(default=None, description="HardConstraint(s) or callable(model)"))
    CONFIG.declare("time_limit", ConfigValue(default=None, domain=_optional_positive, description="seconds for the run"))
    CONFIG.declare("target_loss", ConfigValue(default=None, domain=float, description="stop at this true loss"))
    CONFIG.declare("progress", ConfigValue(default=None, domain=_progress,
                                           description="True: print a line per round; or callable(row, best_network)"))
    CONFIG.declare("shards", ConfigValue(default=1, domain=_shards,
                                         description="data shards of each round; > 1: one MPI rank per shard (the "
                                                     "structured round, under mpiexec -n K) or mpi-sppy PH "
                                                     "(round_solver='sharded'); or this rank's SampleShards"))
    CONFIG.declare("constraint_tol", ConfigValue(default=1e-6, domain=PositiveFloat, description="hard-constraint tolerance"))
    CONFIG.declare("exact_tol", ConfigValue(default=1e-4, domain=PositiveFloat,
                                            description="a round is exact when both constraint gaps are at most this"))
    CONFIG.declare("warm_start", ConfigValue(default=0, domain=NonNegativeInt, description="Adam steps before round 1"))
    CONFIG.declare("max_failures", ConfigValue(default=3, domain=PositiveInt, description="failed solves in a row that end the run"))
    CONFIG.declare("feasibility", ConfigValue(default=True, domain=Bool,
                                              description="from a start that violates the hard constraints, first "
                                                          "rounds that minimise the violation (phase 1)",
                                              doc="False: constrained rounds from the start (the acceptance rule "
                                                  "then prefers any smaller violation)"))
    CONFIG.declare("feasibility_rounds", ConfigValue(default=None, domain=_optional_positive_int,
                                                     description="rounds the feasibility phase may use on top of "
                                                                 "`rounds` (None: it shares `rounds`)"))
    CONFIG.declare("feasibility_rho", ConfigValue(default=1e-3, domain=PositiveFloat,
                                                  description="phase 1's first weight rho of the round's "
                                                              "objective (loss + eta r) beside the violation",
                                                  doc="1e-3 (default): the violation first.  A larger value "
                                                      "(e.g. 1) weighs the loss too; a phase-1 round that "
                                                      "leaves the network infeasible then sets rho to 1e-3, "
                                                      "and above 1e-3 a proposal that multiplies the loss by "
                                                      "more than 10 is refused (docs/algorithm.md: better on "
                                                      "Adult; its least-loss search is then sensitive to the "
                                                      "order of sums, so sharded runs may differ from one "
                                                      "process beyond 1e-6)"))
    CONFIG.declare("refit_output_layer", ConfigValue(default=True, domain=Bool,
                                                     description="with hard constraints convex in the output layer "
                                                                 "alone: after a round whose step leaves the network "
                                                                 "violating them (either phase), refit that "
                                                                 "network's output layer exactly under them",
                                                     doc="the output layer's problem with the hidden layers fixed "
                                                         "is convex and exact (convexnn_pyomo.algorithms.refit); "
                                                         "one process only (not with shards)"))
    CONFIG.declare("refit_solver", ConfigValue(default="auto", domain=str,
                                               description="solver of the output layer's problem ('auto': Clarabel "
                                                           "for a QP, else the default NLP solver)"))
    CONFIG.declare("keep_model", ConfigValue(default=True, domain=Bool, description="return the Pyomo model in the result"))

    #: phase 1: rho (the weight of the round's objective (loss + eta r) beside the violation: an
    #: exact penalty for multipliers below 1 / rho; eta is divided by rho so that r keeps its weight)
    #: starts at ``feasibility_rho``; after a round that leaves the network infeasible it is
    #: FEASIBILITY_RHO_MIN (or ``feasibility_rho`` when smaller): the violation first (steps of 10
    #: from 1 did worse on Adult, docs/algorithm.md)
    FEASIBILITY_RHO_MIN = 1e-3
    #: phase 1 above rho's floor: a proposal whose loss exceeds this multiple of the current loss is refused
    FEASIBILITY_LOSS_GROWTH = 10.0
    #: phase 1: the room (relative to each bound) asked at most: the largest relative violation t
    #: is minimised down to -FEASIBILITY_MARGIN
    FEASIBILITY_MARGIN = 0.05

    #: options that moved to a configured schedule or round solver (a clear error instead of ConfigDict's)
    MOVED = {"eta": "schedule", "epsilon": "schedule", "patience": "schedule", "loss_fraction": "schedule",
             "mu": "schedule", "solver": "round_solver", "solver_options": "round_solver",
             "relaxation": "round_solver", "round_time_limit": "round_solver", "backend": "round_solver",
             "ph_options": "round_solver"}

    def __init__(self, **kwds):
        self.config = self.CONFIG(self._checked(kwds))

    @classmethod
    def _checked(cls, kwds: dict) -> dict:
        moved = sorted(set(kwds) & set(cls.MOVED))
        if moved:
            hints = {"schedule": "AdaptiveSchedule(eta=..., mu=..., rel_tol=..., patience=..., loss_fraction=...) or "
                                 "PaperSchedule(eta=..., epsilon=...) as schedule=",
                     "round_solver": "SchurRounds(time_limit=..., options=...), PyomoRounds(solver=..., options=..., "
                                     "relaxation=..., time_limit=...) or ShardedRounds(...) as round_solver="}
            where = sorted({cls.MOVED[k] for k in moved})
            raise ValueError(f"{', '.join(moved)}: options of the {' and the '.join(where)} now; pass "
                             + "; ".join(hints[w] for w in where) + " (convexnn_pyomo.algorithms)")
        return kwds

    # -- entry point -------------------------------------------------------------------------------
    def solve(self, net: Network, X, Y, **kwds) -> TrainResult:
        """Train ``net`` (not modified) on ``(X, Y)``; ``kwds`` override this instance's options."""
        config = self.config(self._checked(kwds))
        if net.weights is None:
            raise ValueError("the network has no initial weights: call net.init_he(seed) first")
        self.X, self.Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
        config.loss.check_targets(self.Y)
        _warn_if_unscaled(self.X)
        self.cfg = config
        self.rounds, self.shards = self._split(config)
        if self.shards is not None and self.shards.rank > 0 and isinstance(config.progress, RoundPrinter):
            config.progress = None  # progress=True prints on rank 0 only (the ranks' rows are the same)
        self.schedule = config.schedule
        self.schedule.reset()
        self.ev = Evaluator(self.X, self.Y, as_hard_constraints(config.hard_constraints), config.constraint_tol,
                            config.loss, self.shards)
        self.step = self.schedule.step_proposal(bool(self.ev.constraints))
        self.phase_one_step = self.schedule.feasibility_proposal()
        self.refits = RefitLog()
        if config.refit_output_layer and refit_applies(self.ev.constraints, self.shards):
            self.phase_one_step = OutputLayerStep(self.phase_one_step, config.refit_solver, self._time_left, self.refits)
            self.step = OutputLayerStep(self.step, config.refit_solver, self._time_left, self.refits)
        self.solver_name = self.rounds.solver_name
        t_start = time.perf_counter()
        initial_loss = self.ev.loss(net)
        net, rows = self._warm_start(net, t_start)
        self.problem = self._make_problem(net, config)
        self.state = _RunState(net.copy(), self.ev.loss(net), self.ev.violation(net), self.schedule.eta, t_start, rows=rows,
                               constant_loss=self.ev.constant_loss())
        self._recentre(net)
        self._run(initial_loss)
        return self._result(initial_loss)

    def _split(self, config):
        """The round solver and, when it splits the samples over MPI ranks, this rank's
        :class:`~convexnn_pyomo.distributed.SampleShards` (``X``, ``Y`` cut to its rows; None otherwise)."""
        from ..distributed import SampleShards

        given = config.shards if isinstance(config.shards, SampleShards) else None
        count = given.size if given is not None else int(config.shards)
        rounds = get_round_solver(config.round_solver, count)
        if count == 1 or not rounds.splits_samples:
            return rounds, None
        if config.warm_start:
            raise ValueError("warm_start (Adam steps) with shards > 1 is not supported: train the warm start in one "
                             "process and pass its network")
        if given is None:
            given = SampleShards.split(len(self.X), count)
            self.X, self.Y = given.rows(self.X), given.rows(self.Y)
        elif given.m != len(self.X):
            raise ValueError(f"shards says this rank holds {given.m} samples but X has {len(self.X)} rows")
        return rounds, given

    def _time_left(self) -> float | None:
        """Seconds the run has left (None: no time limit), on this rank's clock."""
        limit = self.cfg.time_limit
        return None if limit is None else limit - (time.perf_counter() - self.state.t_start)

    def _out_of_time(self) -> bool:
        """The run's time limit passed (on some rank: every rank stops at the same round)."""
        left = self._time_left()
        late = left is not None and left < 0
        return self.shards.any(late) if self.shards is not None else late

    def _make_problem(self, net: Network, config) -> RoundProblem:
        """The round's convex program, built by the round solver.  With ``round_solver="auto"``, a
        model the structured round cannot derive per sample (a user constraint on one named sample,
        a product of two samples' outputs) falls back, with a warning, to the Pyomo model on every
        sample; asked for explicitly, ``"schur"`` raises instead."""
        args = (net, self.X, self.Y, self.schedule.reduction, self.ev.constraints, self.schedule.eta,
                self.schedule.fixed_mu, config.loss)
        try:
            if self.shards is not None:
                return self.rounds.build(*args, shards=self.shards)
            return self.rounds.build(*args)
        except NotSeparableError as err:
            if config.round_solver != "auto":
                raise
            warnings.warn(f"the structured round does not apply ({err}); solving the Pyomo model on every "
                          "sample instead (round_solver='pyomo')", stacklevel=3)
            self.rounds = PyomoRounds()
            self.solver_name = self.rounds.solver_name
            return self.rounds.build(*args)

    def _warm_start(self, net: Network, t_start: float) -> tuple[Network, list[dict]]:
        """Optional Adam steps before round 1, recorded as history row 0."""
        if not self.cfg.warm_start:
            return net, []
        from ..baselines import train_adam

        net = train_adam(net, self.X, self.Y, steps=int(self.cfg.warm_start), lr=0.01, loss=self.cfg.loss.name).network
        row = {"round": 0, "true_loss": self.ev.loss(net), "relaxed_objective": math.nan, "bilinear_gap": math.nan,
               "activation_gap": math.nan, "eta": math.nan, "solve_seconds": time.perf_counter() - t_start,
               "status": RoundStatus.WARM_START.value, "step": math.nan, "violation": self.ev.violation(net),
               "iterations": int(self.cfg.warm_start), "termination": "", "phase": 0}
        if self.cfg.progress:
            self.cfg.progress(row, net)
        return net, [row]

    # -- the loop ------------------------------------------------------------------------------------
    def _run(self, initial_loss: float) -> None:
        st, cfg = self.state, self.cfg
        if self._needs_feasibility() and self._feasibility_phase(initial_loss):
            return
        limit = cfg.rounds + (st.k if cfg.feasibility_rounds is not None else 0)  # phase 1's own budget
        while st.k < limit:
            if self._out_of_time():
                st.status = RunStatus.TIME_LIMIT
                return
            st.k += 1
            solve = self.problem.solve(*self._round_limits())
            if not solve.ok:
                if self._handle_failure(solve):
                    return
                continue
            st.failures = 0
            outcome = self._accept(solve, initial_loss)
            reason = self._stop_reason(outcome)
            if reason is not None:
                return
            st.eta = self.schedule.next_eta(st.eta, outcome)
            if self.schedule.gave_up(st.eta):
                st.status, st.message = RunStatus.STALLED, f"eta grew to {st.eta:.3g} without an accepted round"
                return
            self._recentre(st.best)

    def _recentre(self, reference: Network) -> None:
        """Centre (8) at ``reference`` with the current eta (and the schedule's mu) and warm start at
        its lift; in phase 1 eta / rho (the elastic objective multiplies the round's by rho)."""
        fp = reference.forward_pass(self.X)  # one forward pass serves the weights, the centre and the lift
        weights = self.schedule.mu_weights(self.problem, reference, fp)
        eta = self.state.eta / self.state.rho if self.state.phase == 1 else self.state.eta
        self.problem.recentre(reference, eta, fp, **weights)

    # -- phase 1: the feasibility phase --------------------------------------------------------------
    def _needs_feasibility(self) -> bool:
        """An infeasible start, the phase enabled, a round problem that can make its rows elastic
        (:class:`~.rounds.ElasticRoundProblem`), and an inequality constraint not on the weights alone.  Rows on the weights hold exactly at every
        round's solution, so the constrained rounds meet them at once.  Equalities leave no room
        (t >= 0) for phase 1 to buy. On both, the constrained rounds met the constraint where
        phase 1 was slower: the wine composition and two-output equality tests, monotone weights."""
        return (self.cfg.feasibility and self.state.best_viol > self.cfg.constraint_tol
                and isinstance(self.problem, ElasticRoundProblem)
                and not all(getattr(c, "weights_only", False) or getattr(c, "equality", False)
                            for c in self.ev.constraints))

    def _feasibility_phase(self, initial_loss: float) -> bool:
        r"""Rounds of the elastic program (:meth:`~.rounds._ModelRound.enter_feasibility`):
        :math:`\min v + \rho(\ell + \eta r)` over the relaxation, :math:`v` the hard constraints'
        violation, accepted when the real network's violation decreases, until it meets them.  When
        a round's relaxed violation stays positive, or the phase ends without a feasible network, a
        certificate (:meth:`~.rounds._ModelRound.certify_infeasible`): a positive least violation
        proves the problem infeasible.  True when the run ends here (certified infeasible, failures,
        limits), else phase 2 starts from the first feasible network."""
        st, cfg = self.state, self.cfg
        st.phase, st.rho = 1, cfg.feasibility_rho
        self.problem.enter_feasibility(st.rho, self.FEASIBILITY_MARGIN)
        try:
            self._recentre(st.best)
            while st.best_viol > cfg.constraint_tol:
                ended = self._phase_one_round(initial_loss)
                if ended is not None:  # True: the run ends; False: the constrained rounds take over
                    if ended:
                        return True
                    break
        finally:
            self.problem.leave_feasibility()
            st.phase = 2
            if st.status == RunStatus.INFEASIBLE:  # certified: the diagnosis needs the round's own model
                st.message += self._kappa_hint()
        st.eta = self.schedule.eta  # phase 1 may have left eta far up
        self._recentre(st.best)
        return False

    def _certified(self, initial_loss: float) -> bool:
        """The least violation over the relaxation at the current reference; a positive one ends the
        run as certified infeasible (True)."""
        st = self.state
        t0 = time.perf_counter()
        evidence = self.problem.certify_infeasible(self._round_limits()[0], self.cfg.constraint_tol)
        timed_out = self.problem.certificate_timed_out
        st.certificate_tries = 0 if evidence is not None or timed_out else st.certificate_tries - 1
        st.certificate_open = evidence is None
        if not evidence:
            return False
        st.k += 1
        self._record(self._row(RoundSolve(False, "infeasible", True, False, -1, time.perf_counter() - t0, evidence),
                               status=RoundStatus.INFEASIBLE.value))
        st.status = RunStatus.INFEASIBLE
        st.message = f"certified infeasible: {evidence}; no network meets the hard constraints on the training data"
        return True

    def _phase_one_round(self, initial_loss: float) -> bool | None:
        """One phase-1 round; None to go on, True when the run ends (time limit, failures, a
        certificate), False when phase 1 stalled or used its rounds without a certificate: the
        constrained rounds then take over from the least violating network (their acceptance
        prefers any smaller violation), so the run still ends feasible, certified or named."""
        st, cfg = self.state, self.cfg
        budget = cfg.rounds if cfg.feasibility_rounds is None else cfg.feasibility_rounds
        if self._out_of_time():
            st.status, st.message = RunStatus.TIME_LIMIT, f"the feasibility phase ended at the time limit after {st.k} rounds"
            return True
        if st.k >= budget:
            return self._end_phase_one(initial_loss, f"the feasibility phase used its {st.k} rounds")
        st.k += 1
        solve = self.problem.solve(*self._round_limits())
        if not solve.ok:
            return True if self._handle_failure(solve) else None
        st.failures = 0
        relaxed = max(self.problem.relaxed_violations().values(), default=0.0)
        outcome = self._accept(solve, initial_loss)  # before a certificate's solve replaces the point
        # t > 0 at the round's optimum: perhaps no point of the relaxation meets the bounds (asked
        # until a least-violation solve finishes, at most certificate_tries times)
        if relaxed > cfg.constraint_tol and st.certificate_tries > 0 and self._certified(initial_loss):
            return True
        if st.best_viol > cfg.constraint_tol and st.rho > self._rho_floor():
            self._steer_penalty()
        st.eta = self.schedule.next_eta(st.eta, outcome)
        if self.schedule.gave_up(st.eta):
            return self._end_phase_one(initial_loss, f"the feasibility phase stalled (eta grew to {st.eta:.3g} "
                                                     f"without a round lowering the violation below {st.best_viol:.3g})")
        self._recentre(st.best)
        return None

    def _steer_penalty(self) -> None:
        r"""A phase-1 round left the network infeasible: its penalty :math:`1/\rho` on the violation
        was too weak beside the loss (its relaxed violation stays positive, or its step reached the
        bounds only at a loss :meth:`_overshoots` refuses), or the proximal term kept the step short
        (which a smaller :math:`\rho` does not change); the next rounds weigh the loss
        at FEASIBILITY_RHO_MIN (a steering rule as in S\ :math:`\ell_1`\ QP's penalty update)."""
        st = self.state
        st.rho = self._rho_floor()
        self.problem.set_feasibility_weight(st.rho)

    def _rho_floor(self) -> float:
        return min(self.FEASIBILITY_RHO_MIN, self.cfg.feasibility_rho)

    def _kappa_hint(self) -> str:
        """For (19): the smallest kappa_factor the relaxation admits (the Pyomo rounds' diagnosis), as
        a message part; '' when the round solver has none.  Call it on the round's own model (not elastic)."""
        st = self.state
        st.kappa_factor = self.problem.smallest_kappa_factor()
        return "" if st.kappa_factor is None else f"; the smallest kappa_factor the relaxation admits is {st.kappa_factor:.6g}"

    def _end_phase_one(self, initial_loss: float, why: str) -> bool:
        """Phase 1 ends without a feasible network: certified infeasible (True: the run ends), else
        the constrained rounds go on (False), ``why`` kept for the run's message."""
        if self._certified(initial_loss):
            return True
        st = self.state
        if not relax_all(self.ev.constraints):
            found = "a linearised constraint (relaxes = False) admits no certificate"
        elif st.certificate_open:
            found = ("the last certificate's least-violation solve did not finish: whether the relaxation admits a "
                     "feasible point is unknown")
        else:
            found = "the relaxation admits a feasible point"
        self.state.phase_one_end = f"{why}; {found} (not certified infeasible)"
        return False

    def _round_limits(self) -> tuple[float, dict]:
        """Time limit (seconds) and solver options of the next solve."""
        options = self.rounds.solve_options()  # the round program adds its solver's defaults
        cap, left = self.rounds.config.time_limit, self._time_left()
        # the run's limit also bounds the solve in progress; a new cap rebuilds the solver instance
        # (~1 s at m = 100): keep it constant until the remaining time is the tighter bound
        if left is not None and left < cap:
            cap = max(1.0, float(math.ceil(left)))
        return float(cap), options

    def _row(self, solve: RoundSolve, **fields) -> dict:
        st = self.state
        st.retried += bool(solve.note)
        row = {"round": st.k, "true_loss": st.best_loss, "relaxed_objective": math.nan, "bilinear_gap": math.nan,
               "activation_gap": math.nan, "eta": self.problem.eta,
               "solve_seconds": solve.seconds, "step": 0.0, "violation": st.best_viol,
               "iterations": solve.iterations, "termination": solve.termination, "phase": st.phase,
               "rho": st.rho if st.phase == 1 else math.nan,
               "message": "; ".join(filter(None, ["" if solve.ok and not solve.stalled else solve.message,
                                                  solve.note]))}
        row.update(fields)
        return row

    def _record(self, row: dict) -> None:
        self.state.rows.append(row)
        if self.cfg.progress:
            self.cfg.progress(row, self.state.best)

    def _handle_failure(self, solve: RoundSolve) -> bool:
        """Record a failed solve; True when it ends the run, else retry with a larger eta."""
        st, cfg = self.state, self.cfg
        if solve.infeasible and st.best_viol > cfg.constraint_tol and st.phase == 2 and relax_all(self.ev.constraints):
            # the relaxation contains the lifted accepted network, which meets the hard constraints
            # once it is feasible: only before that can "infeasible" be a property of the problem
            # (and only when every constraint's rows relax it: a linearisation proves nothing)
            self._record(self._row(solve, status=RoundStatus.INFEASIBLE.value))
            evidence = f" ({solve.message})" if solve.message else ""
            st.status = RunStatus.INFEASIBLE
            st.message = f"the hard constraints admit no point of the relaxation{evidence}{self._kappa_hint()}"
            return True
        if solve.time_limit and self._out_of_time():
            self._record(self._row(solve, status=RoundStatus.TIME_LIMIT.value))
            st.status = RunStatus.TIME_LIMIT
            return True
        # a failed solve (iteration or per-round time cap, numerical trouble, spurious infeasibility)
        # costs a round, not the run: retry from the same reference with a stronger proximal term
        self._record(self._row(solve, status=RoundStatus.SOLVER_FAILED.value))
        st.failures += 1
        if st.failures >= cfg.max_failures:
            st.status, st.termination = RunStatus.SOLVER_FAILED, solve.termination
            why = f": {solve.message}" if solve.message else ""
            where = " in the feasibility phase" if st.phase == 1 else ""
            st.message = f"{st.failures} failed solves in a row{where} (last: {solve.termination}{why})"
            return True
        st.eta = self.schedule.after_failure(st.eta)
        self._recentre(st.best)
        return False

    def _accept(self, solve: RoundSolve, initial_loss: float) -> RoundOutcome:
        """Turn the solution into a proposal and accept it if it is better; record the round."""
        st = self.state
        candidate = self.problem.solution()
        bil, act = self.problem.gaps()
        relaxed = self.problem.relaxed_objective()
        step = self.phase_one_step if st.phase == 1 else self.step
        prop = step.propose(st.best, candidate, self.ev, st.previous_steps)
        accepted = (prop.network is not None and self.ev.better(prop.loss, prop.violation, st.best_loss, st.best_viol)
                    and not self._overshoots(prop))
        improvement = 0.0
        if accepted:
            improvement = st.best_loss - prop.loss
            st.previous_steps = [prop.network.get_flat() - st.best.get_flat()] + st.previous_steps[: max(getattr(step, "memory", 1) - 1, 0)]
            st.best, st.best_loss, st.best_viol = prop.network, prop.loss, prop.violation
        status = RoundStatus.ACCEPTED if accepted else RoundStatus.REJECTED
        self._record(self._row(solve, true_loss=prop.loss, relaxed_objective=relaxed, bilinear_gap=bil,
                               activation_gap=act, status=status.value, step=prop.step if accepted else 0.0,
                               violation=prop.violation))
        exact = max(bil, act) <= self.cfg.exact_tol
        st.stalled += solve.stalled
        return RoundOutcome(accepted, exact, improvement, st.best_loss, initial_loss, solve.stalled, st.constant_loss)

    def _overshoots(self, prop) -> bool:
        """Phase 1 above rho's floor: a proposal that multiplies the loss by more than
        FEASIBILITY_LOSS_GROWTH is refused (rho is then steered down): the step reached the bounds
        only far out along a direction its weak penalty chose (measured on Adult: a boundary step of
        about 150 to a saturated network, 130 times the loss, which the constrained rounds never left)."""
        st = self.state
        return (st.phase == 1 and st.rho > self._rho_floor() and math.isfinite(st.best_loss)
                and prop.loss > self.FEASIBILITY_LOSS_GROWTH * max(st.best_loss, 1e-300))

    def _stop_reason(self, outcome: RoundOutcome) -> str | None:
        """Target or the schedule's convergence rule, after an accepted round with feasible weights."""
        st, cfg = self.state, self.cfg
        if not outcome.accepted or st.best_viol > cfg.constraint_tol:
            return None
        if cfg.target_loss is not None and st.best_loss <= cfg.target_loss:
            st.status, st.message = RunStatus.TARGET_REACHED, f"the loss reached target_loss = {cfg.target_loss:g}"
            return st.message
        reason = self.schedule.converged(outcome)
        if reason is not None:
            st.status, st.message = RunStatus.CONVERGED, reason
        return reason

    def _result(self, initial_loss: float) -> TrainResult:
        import pandas as pd  # here, not at import: every MPI rank would carry it

        st, cfg = self.state, self.cfg
        feasible = st.best_viol <= cfg.constraint_tol
        message = st.message or {RunStatus.ROUND_LIMIT: f"{cfg.rounds} rounds done",
                                 RunStatus.TIME_LIMIT: f"the time limit of {cfg.time_limit} s was reached"}.get(st.status, "")
        if st.stalled:
            message += f"; {st.stalled} round{'s' * (st.stalled > 1)} took a stalled solve's last iterate as candidate"
        if st.retried:
            message += (f"; {st.retried} solve{'s' * (st.retried > 1)} retried with other options (the history's "
                        "message column)")
        refits = self.refits.summary()
        if refits:
            message += f"; {refits}"
        if not feasible:
            before = f" ({st.phase_one_end}, then constrained rounds)" if st.phase_one_end else ""
            message += f"; the hard constraints are still violated by {st.best_viol:.3g}{before}"
        return TrainResult(
            network=st.best, history=pd.DataFrame(st.rows, columns=HISTORY_COLUMNS), status=st.status,
            initial_loss=initial_loss, final_loss=st.best_loss, seconds=time.perf_counter() - st.t_start,
            schedule=self.schedule.name, solver=self.solver_name, violation=st.best_viol, message=message,
            feasible=feasible, termination=st.termination, smallest_kappa_factor=st.kappa_factor,
            model=getattr(self.problem, "model", None) if cfg.keep_model else None,
        )
