r"""One round of Algorithm 1 split over data shards and solved by Progressive Hedging (mpi-sppy).

Given the weights :math:`(w, b)` and the per-node :math:`W^l_{ii}`, every sample's variables
(:math:`z_j, x_j, u_j, X^l_{jj}`, the misfit auxiliaries) and constraints of problem (9) are
separate.  Problem (9) is therefore a two-stage stochastic program: the *first stage* holds all
``w``, ``b``, every relaxed layer's ``W[i]`` and, with class-wise bounds (19), one budget
:math:`\beta_{kc}` per shard ``k`` and class ``c``; each shard ``k`` of the samples is a
*scenario*: the same Pyomo training model (:class:`~.rounds.PyomoRound`) built on its samples.

Scaling (checked by ``tests/test_sharded.py``).  With ``m_k`` samples in shard ``k`` the scenario
probability is :math:`p_k = m_k / m`.  A shard model's per-sample terms carry its own scale
:math:`s_k` (``1/m_k`` for ``reduction="mean"``, ``1`` for ``"sum"``), the single model's carry
:math:`s = 1/m` or ``1``.  Scenario ``k`` minimises

.. math::
    f_k = a_k\,\big(\ell_k + \eta\,(r^{in}_k + r^{act}_k)\big) + \eta\, r^{w},
    \qquad a_k = \frac{s}{s_k\, p_k},

so :math:`\sum_k p_k f_k` is the single model's objective (9a) term by term: the per-sample
terms sum to :math:`s \sum_j (\cdot)` and the weight term :math:`r^w` (first stage only) to
:math:`\sum_k p_k\, r^w = r^w`.  For ``"mean"`` :math:`a_k = 1`: the shard models are used as built.

Class-wise bounds (19) :math:`\sum_{j \in C_c} |z_j - y_j| \le \kappa_c` sum over the samples of
all shards; each shard bounds its own part by :math:`\beta_{kc}` with
:math:`\sum_k \beta_{kc} = \kappa_c`, :math:`\beta \ge 0` (first stage), which is exact: a point
of the single model gives :math:`\beta_{kc}` = its misfit in shard ``k`` plus an equal share of
the slack, and conversely.

All ranks run the algorithm (numpy work is the same on every rank); mpi-sppy assigns the
scenarios to the ranks, so each rank builds only its own shards.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pyomo.environ as pyo

from ..constraints import ClasswiseMisfitBounds, LinearOutputEquality, MonotoneInputs, OutputBounds, WeightNormBounds
from ..distributed import mpi_rank  # noqa: F401  (re-exported: the rank of this process)
from ..losses import Loss
from ..model import constraint_gaps, get_training_problem, layer_blocks
from ..network import ForwardPass, Network
from ..transformations import get_relaxation_block
from ..transformations.regularize import get_regularization_block
from .rounds import IPOPT_DEFAULTS, PyomoRound, RoundSolve

__all__ = [
    "IPOPT_SUBPROBLEM",
    "IPOPT_WARM_START",
    "PH_DEFAULTS",
    "WATCHDOG_GRACE",
    "ConvexSubproblemSolver",
    "ShardedRound",
    "convex_subproblem_solver",
    "first_stage_vars",
    "mpi_rank",
    "require_mpisppy",
    "shard_indices",
]

#: Progressive Hedging options of one round: mpi-sppy's names, plus ``tol``: PH stops when both
#: residuals are at most ``tol``: primal :math:`\sum_k p_k \|x_k - \bar x\|_1` and dual
#: :math:`\|\rho \circ (\bar x_t - \bar x_{t-1})\|_1` (mpi-sppy's ``PrimalDualConverger``); rho
#: is ``defaultPHrho``, rebalanced when one residual exceeds the other by ``rho_update_threshold``
#: (``PrimalDualRho``) unless it is ``None``; ``"auto"``: 2 without class-wise bounds (m = 20: 91
#: PH iterations instead of 172 with a fixed rho), ``None`` with them (the rebalancing cycled);
#: ``budget_rho``: rho of the class-wise budgets (an O(kappa) scale with no objective term: with
#: rho = 1 PH oscillated for 60+ iterations, 0.1 converged slowly, 0.01 in 224 iterations);
#: ``warm_rounds``: one PH object for the whole run, each round after the first continuing from
#: the last round's duals ``W`` and consensus ``xbar`` (no iteration 0, no new translation)
PH_DEFAULTS = {"PHIterLimit": 500, "defaultPHrho": 1.0, "tol": 1e-6, "rho_update_threshold": "auto",
               "budget_rho": 0.01, "warm_rounds": True}

#: Ipopt options of every PH subproblem: the algorithm's, MUMPS ordered by QAMD (Ipopt orders the
#: KKT matrix anew at every call; m = 2,000, K = 2, round 2 at tol 1e-5: 80.4 s against METIS's
#: 104.3 s, the same 21 PH iterations and loss; ``benchmarks/results/sharded_ordering``)
IPOPT_SUBPROBLEM = {**IPOPT_DEFAULTS, "mumps_pivot_order": 6}

#: Ipopt options of PH's iterations k >= 1 (with an Ipopt subproblem solver): start from the last
#: solve's primal and dual point (``ipopt_casadi`` passes the multipliers) with a small barrier
#: parameter, since consecutive PH subproblems differ only in ``W`` and ``xbar`` (m = 200, K = 2:
#: 1.4 instead of 15 Ipopt iterations per subproblem, same consensus to 1e-10)
IPOPT_WARM_START = {"warm_start_init_point": "yes", "mu_init": 1e-6, "warm_start_bound_push": 1e-9,
                    "warm_start_bound_frac": 1e-9, "warm_start_slack_bound_push": 1e-9,
                    "warm_start_slack_bound_frac": 1e-9, "warm_start_mult_bound_push": 1e-9}


#: hard constraints on single samples or on the weights only: every shard keeps them as they are
PER_SHARD_CONSTRAINTS = (OutputBounds, LinearOutputEquality, MonotoneInputs, WeightNormBounds)


def _check_constraints(constraints: list) -> None:
    """Sums over samples of several shards are exact only for class-wise bounds (split into budgets)."""
    bad = [c for c in constraints if not isinstance(c, (*PER_SHARD_CONSTRAINTS, ClasswiseMisfitBounds))]
    if bad:
        names = ", ".join(sorted({type(c).__name__ for c in bad}))
        raise ValueError(
            f"shards > 1 supports ClasswiseMisfitBounds (split into per-shard budgets) and the per-sample or "
            f"weight constraints {[t.__name__ for t in PER_SHARD_CONSTRAINTS]}; {names} may couple samples of "
            "several shards: train it with shards=1"
        )


def require_mpisppy():
    """Import mpi-sppy's PH or raise a clear error naming the install command."""
    try:
        import mpisppy
        from mpisppy.opt.ph import PH
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "shards > 1 needs mpi-sppy: pip install 'convexnn-pyomo[mpi]' (or pip install mpi-sppy)"
        ) from exc
    from pyomo.common.timing import TicTocTimer

    mpisppy.tt_timer = TicTocTimer(logger=logging.getLogger("mpisppy"))  # its progress lines: to logging
    return PH


def shard_indices(m: int, shards: int) -> list[np.ndarray]:
    """Sample indices of each shard: ``shards`` contiguous blocks of (almost) equal size."""
    if not (isinstance(shards, int) and 1 <= shards <= m):
        raise ValueError(f"shards must be an integer between 1 and the number of samples ({m}), got {shards!r}")
    return np.array_split(np.arange(m), shards)


def first_stage_vars(model) -> list:
    """The first-stage variables of a shard model: every ``w``, ``b`` and relaxed layer's ``W``."""
    out = []
    for blk in layer_blocks(model):
        out += [blk.w, blk.b]
        rblk = get_relaxation_block(blk)
        if rblk is not None and hasattr(rblk, "W"):
            out.append(rblk.W)
    return out


def _split_classwise(model, constraint: ClasswiseMisfitBounds, Y: np.ndarray, shard: int, shards: int):
    r"""Add (19) to a shard model with first-stage budgets :math:`\beta_{kc}`, :math:`\sum_k \beta_{kc} = \kappa_c`.

    Returns the budget Var (indexed by shard and class position).  The shard's misfit sums reuse
    the constraint's own block (``t``, ``|z - y|``); only their right-hand sides change.
    """
    kappas = constraint.kappas(Y)  # global classes and budgets
    keys = list(kappas)
    local = ClasswiseMisfitBounds(kappa_factor=1.0)  # its bound is replaced below; kappa unused
    local.add_to(model)
    blk = local.block
    local_keys = list(local.classes(get_training_problem(model).Y))
    blk.bound.deactivate()
    blk.budget = pyo.Var(range(shards), range(len(keys)), domain=pyo.NonNegativeReals, doc="beta_kc")
    blk.budget_sum = pyo.Constraint(range(len(keys)), rule=lambda b, c: sum(b.budget[k, c] for k in range(shards))
                                    == kappas[keys[c]], doc="sum_k beta_kc = kappa_c")
    blk.shard_bound = pyo.Constraint(blk.classes, rule=lambda b, c: b.bound[c].body <= b.budget[shard, keys.index(local_keys[c])],
                                     doc="(19) on this shard")
    return blk.budget


def _fresh_objective(model, a: float) -> None:
    """(Re)build the scenario objective ``a (loss + eta (r_in + r_act)) + eta r_w`` (module docstring).

    PH adds its dual and proximal terms to the active objective's expression, so every round
    starts from a fresh Objective over the Expression ``shard_value`` and a model without PH's blocks.
    """
    reg = get_regularization_block(model)
    for name in ("_mpisppy_data", "_mpisppy_model", "_mpisppy_node_list", "_mpisppy_probability"):
        if hasattr(model, name):
            model.del_component(name) if model.component(name) is not None else delattr(model, name)
    if reg.component("shard_value") is None:
        reg.objective.deactivate()
        reg.shard_value = pyo.Expression(
            expr=a * (reg.base_objective_expr + reg.eta * (reg.r_inputs + reg.r_activations)) + reg.eta * reg.r_weights
        )
    else:
        reg.del_component(reg.shard_objective)
    reg.shard_objective = pyo.Objective(expr=reg.shard_value)


@contextmanager
def _global_data(model, X: np.ndarray, Y: np.ndarray):
    """Within the block the shard model's :class:`TrainingProblem` describes all samples."""
    tp = get_training_problem(model)
    model.training_problem = dataclasses.replace(tp, X=X, Y=Y)
    try:
        yield
    finally:
        model.training_problem = tp


class ConvexSubproblemSolver:
    """Legacy-interface wrapper mpi-sppy calls for the scenario subproblems: ``<name>_convex``.

    mpi-sppy's PH reads ``results.problem.lower_bound`` of every subproblem (its "trivial bound");
    a local NLP solver reports ``None``.  The subproblems of (9) are convex, so an optimal local
    solution is global and its objective is also a lower bound: this wrapper fills it in.
    Everything else (``options``, ``solve(model, tee=..., load_solutions=...)``, the legacy
    results) is the wrapped solver's.
    """

    def __init__(self, base: str, **kwds):
        self._base = pyo.SolverFactory(base, **kwds)

    def __getattr__(self, name):
        return getattr(self._base, name)

    def solve(self, model, **kwds):
        results = self._base.solve(model, **kwds)
        if results.solver.termination_condition == pyo.TerminationCondition.optimal and results.problem.lower_bound is None:
            results.problem.lower_bound = results.problem.upper_bound
        return results


def convex_subproblem_solver(base: str) -> str:
    """Register ``<base>_convex`` (:class:`ConvexSubproblemSolver`) with the legacy factory; its name."""
    name = f"{base}_convex"
    if name not in pyo.SolverFactory:
        pyo.SolverFactory.register(name, doc=f"{base} with lower bound = objective (convex subproblems)")(
            lambda **kwds: ConvexSubproblemSolver(base, **kwds))
    return name


def _converger():
    """mpi-sppy's primal-dual stopping rule, remembering its verdict; ``fresh`` (set when a round
    continues an earlier one) refuses to stop before the round's first subproblem solves."""
    from mpisppy.convergers.primal_dual_converger import PrimalDualConverger

    class Converger(PrimalDualConverger):
        converged, fresh = False, False

        def is_converged(self):
            self.converged = super().is_converged() and not self.fresh
            self.fresh = False
            return self.converged

    return Converger


def _attached_ph(PH):
    """``PH`` whose dual and proximal terms are in the objective from iteration 0 on (switched off
    there by mpi-sppy's Params): one Pyomo -> CasADi translation per shard instead of two."""

    class AttachedPH(PH):
        def PH_Prep(self, *args, **kwds):
            return super().PH_Prep(*args, **{**kwds, "defer_attach": False})

    return AttachedPH


#: seconds past a round's time limit after which a rank decides another rank has died and aborts
WATCHDOG_GRACE = 30.0


@contextmanager
def _watchdog(seconds: float, comm):
    """Abort every rank (``comm.Abort``) when the block runs ``seconds``: a dead rank leaves the others
    waiting in a collective forever.  Only with more than one rank (one process is never stuck)."""
    if comm.Get_size() == 1:
        yield
        return

    def fire():
        sys.stderr.write(
            f"error: rank {comm.Get_rank()}: a sharded round ran {seconds:.0f} s, past its time limit; another rank "
            "has probably died: aborting the run (the best accepted weights were saved after each accepted round)\n"
        )
        sys.stderr.flush()
        comm.Abort(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _shard_fp(fp: ForwardPass, idx: np.ndarray) -> ForwardPass:
    """The columns ``idx`` (samples) of a forward pass."""
    return ForwardPass([z[:, idx] for z in fp.z], [x[:, idx] for x in fp.x])


class ShardedRound:
    """The round's convex program (9) as a two-stage program over ``shards`` data shards, solved by PH.

    Implements :class:`~.rounds.PyomoRound`'s protocol.  ``solver`` is a (legacy) Pyomo solver
    name for the scenario subproblems; ``ph_options`` override :data:`PH_DEFAULTS`; ``comm`` is an
    mpi4py communicator (default: mpi-sppy's ``COMM_WORLD``, a single process without mpi4py).
    """

    def __init__(self, net: Network, X: np.ndarray, Y: np.ndarray, reduction: str, relaxation: str,
                 constraints: list, solver: str, eta: float, mu: tuple[float, float, float],
                 loss: str | Loss = "squared", shards: int = 2, ph_options: dict | None = None, comm=None):
        _check_constraints(constraints)
        self._PH = require_mpisppy()
        self.X, self.Y, self.solver_name, self.comm = X, Y, solver, comm
        self.shards = shard_indices(X.shape[0], shards)
        self.names = [f"shard{k}" for k in range(shards)]
        unknown = set(ph_options or {}) - set(PH_DEFAULTS) - {"primal_dual_converger_options"}
        if unknown:
            raise ValueError(f"unknown PH options {sorted(unknown)}; known: {sorted(PH_DEFAULTS)}")
        self.ph_options = {**PH_DEFAULTS, **(ph_options or {})}
        hard = [c for c in constraints if not isinstance(c, ClasswiseMisfitBounds)]
        self._classwise = [c for c in constraints if isinstance(c, ClasswiseMisfitBounds)]
        self.constraints = constraints
        self._build = {"net": net, "reduction": reduction, "relaxation": relaxation, "constraints": hard, "eta": eta,
                       "mu": mu, "loss": loss}
        self.rounds: dict[str, PyomoRound] = {}
        from mpisppy.utils import sputils

        # the round's solver options (set by solve), and the warm start of PH iterations k >= 1
        self._solver_layers = {when: sputils.solver_options_layer(when, {}) for when in ("default", "iterk")}
        self._ph = self._make_ph()
        self._ph_started = False
        self._comm = self._ph.mpicomm
        self.last_ph_iterations = 0

    # -- scenarios ---------------------------------------------------------------------------------
    def _scenario(self, name: str):
        """mpi-sppy's scenario creator: the shard's model (built once, on the rank that owns it)."""
        k = self.names.index(name)
        if name not in self.rounds:
            idx = self.shards[k]
            b = self._build
            rnd = PyomoRound(b["net"], self.X[idx], self.Y[idx], b["reduction"], b["relaxation"], b["constraints"],
                             None, b["eta"], b["mu"], b["loss"])
            rnd.budgets = [_split_classwise(rnd.model, c, self.Y, k, len(self.shards)) for c in self._classwise]
            rnd.probability = len(idx) / self.X.shape[0]
            self.rounds[name] = rnd
        rnd = self.rounds[name]
        tp = get_training_problem(rnd.model)
        a = (1.0 / self.X.shape[0] if tp.reduction == "mean" else 1.0) / tp.loss_scale / rnd.probability
        _fresh_objective(rnd.model, a)
        from mpisppy.utils import sputils

        sputils.attach_root_node(rnd.model, 0.0, first_stage_vars(rnd.model) + rnd.budgets)
        rnd.model._mpisppy_probability = rnd.probability
        return rnd.model

    def _make_ph(self):
        """A PH object over the shards: fixed rho (``budget_rho`` on the budgets), primal-dual stopping rule."""
        from mpisppy.extensions.primal_dual_rho import PrimalDualRho

        opts = dict(self.ph_options)
        tol = opts.pop("tol")
        opts.pop("warm_rounds")
        options = {"solver_name": convex_subproblem_solver(self.solver_name), "verbose": False,
                   "display_progress": False, "display_timing": False, "convthresh": 0.0,
                   "solver_options_layers": list(self._solver_layers.values()),
                   "primal_dual_converger_options": {"tol": tol, **opts.pop("primal_dual_converger_options", {})},
                   "primal_dual_rho_options": {"rho_update_threshold": opts.pop("rho_update_threshold")}, **opts}
        kw = {} if self.comm is None else {"mpicomm": self.comm}
        budget_rho = options.pop("budget_rho")
        kw["rho_setter"] = lambda s: [(id(v), budget_rho) for r in self._local if r.model is s for b in r.budgets for v in b.values()]
        threshold = options["primal_dual_rho_options"]["rho_update_threshold"]
        if threshold == "auto":
            threshold = options["primal_dual_rho_options"]["rho_update_threshold"] = None if self._classwise else 2.0
        if threshold is not None:
            kw["extensions"] = PrimalDualRho
        return _attached_ph(self._PH)(options, self.names, lambda name: self._scenario(name),
                                      ph_converger=_converger(), **kw)

    @property
    def _local(self) -> list[PyomoRound]:
        return list(self.rounds.values())

    def _allreduce(self, value: float, op: str) -> float:
        comm = self._comm
        if comm.Get_size() == 1:
            return value
        from mpisppy import MPI

        return float(comm.allreduce(value, op=getattr(MPI, op)))

    # -- the protocol -----------------------------------------------------------------------------
    @property
    def eta(self) -> float:
        return self._local[0].eta

    def exactness_weights(self, reference: Network, fp: ForwardPass) -> dict:
        """The single model's exactness weights (they sum over all samples): numpy on the full data."""
        model = self._local[0].model
        with _global_data(model, self.X, self.Y):
            return self._local[0].exactness_weights(reference, fp)

    def recentre(self, reference: Network, eta: float, fp: ForwardPass, **mu_weights) -> None:
        for name, rnd in self.rounds.items():
            rnd.recentre(reference, eta, _shard_fp(fp, self.shards[self.names.index(name)]), **mu_weights)

    def solve(self, time_limit: float, options: dict) -> RoundSolve:
        """One PH solve (every rank takes part): ``ok`` when both PH residuals reached ``tol``.

        With ``warm_rounds`` every round after the first continues PH from the last round's ``W``
        and ``xbar`` (only the Params changed); otherwise each round is a fresh PH run.
        ``time_limit`` bounds PH (checked between its iterations); a rank still inside the round
        ``WATCHDOG_GRACE`` seconds later aborts the run (another rank has died)."""
        t0 = time.perf_counter()
        ph = self._ph if self._ph is not None else self._make_ph()
        warm = self._ph_started and self.ph_options["warm_rounds"]
        self._ph, self._comm = (ph if self.ph_options["warm_rounds"] else None), ph.mpicomm
        self._set_solver_options(options)
        ph.options["time_limit"], ph.start_time = time_limit, t0  # mpi-sppy counts from start_time
        try:
            with _watchdog(time_limit + WATCHDOG_GRACE, self._comm):
                if warm:
                    ph.convobject.fresh = True
                    ph.iterk_loop()
                else:
                    ph.ph_main(finalize=False)
                    self._ph_started = True
        except Exception as exc:  # noqa: BLE001 -- a failed round, not a crash; mpi-sppy raises RuntimeError("Infeasibility detected; ...") for infeasible shards
            self._ph, self._ph_started = None, False  # the next round starts a fresh PH
            return RoundSolve(False, f"error: {type(exc).__name__}: {exc}", "nfeasib" in str(exc), False, -1,
                              time.perf_counter() - t0)
        self.last_ph_iterations = int(ph._PHIter)
        converged = ph.convobject.converged
        self._load_xbar(ph)
        term = "ph_converged" if converged else "ph_iteration_limit"
        return RoundSolve(converged, term, False, not converged and time.perf_counter() - t0 >= time_limit,
                          self.last_ph_iterations, time.perf_counter() - t0)

    def _set_solver_options(self, options: dict) -> None:
        """The round's subproblem options; with Ipopt, :data:`IPOPT_SUBPROBLEM` under them and
        :data:`IPOPT_WARM_START` from PH iteration 1 on."""
        ipopt = self.solver_name.startswith("ipopt")
        self._solver_layers["default"]["options"] = {**IPOPT_SUBPROBLEM, **options} if ipopt else dict(options)
        self._solver_layers["iterk"]["options"] = dict(IPOPT_WARM_START) if ipopt else {}

    @staticmethod
    def _load_xbar(ph) -> None:
        """Set every first-stage variable of the local scenarios to the consensus value xbar."""
        for s in ph.local_scenarios.values():
            xbars = s._mpisppy_model.xbars
            for ndn_i, var in s._mpisppy_data.nonant_indices.items():
                var.set_value(pyo.value(xbars[ndn_i]), skip_validation=True)

    def solution(self) -> Network:
        return self._local[0].solution()

    def gaps(self) -> tuple[float, float]:
        local = [constraint_gaps(r.model) for r in self._local]
        return tuple(self._allreduce(max(g[i] for g in local), "MAX") for i in range(2))

    def relaxed_objective(self) -> float:
        local = sum(r.probability * pyo.value(get_regularization_block(r.model).shard_value) for r in self._local)
        return self._allreduce(float(local), "SUM")

    def smallest_kappa_factor(self) -> float | None:
        return None  # the diagnosis solves one model; not available for sharded rounds
