"""Round solvers: configured strategies that build and solve each round's convex program.

As ``pyomo.contrib.gdpopt`` configures its strategies, each round solver is a small class with its
own ``CONFIG``; :class:`~.sequential.SequentialRelaxation` takes one (or its name) as
``round_solver`` and never interprets its options:

``"schur"`` (:class:`SchurRounds`, the default)
    The round's Pyomo model built on a template of two samples, derived per sample
    (:func:`~convexnn_pyomo.solvers.arrow.arrow_problem`) and solved by the package's structured
    interior point (:class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint`): every loss,
    activation, library constraint and multi-output net, time and memory linear in ``m``.
``"pyomo"`` or a Pyomo solver name (:class:`PyomoRounds`)
    The round's Pyomo model on every sample, solved by a Pyomo solver (``ipopt``,
    ``ipopt_casadi``, ...): for the studies, another relaxation, and models a user extends beyond
    the per-sample structure.
:class:`ShardedRounds`
    The Pyomo model split into data shards, solved by mpi-sppy's Progressive Hedging.
"""

from __future__ import annotations

from pyomo.common.config import Bool, ConfigDict, ConfigValue, PositiveFloat, PositiveInt

from ..network import Network
from .rounds import TRAINABLE_RELAXATIONS, PyomoRound, RoundProblem, StructuredRound

__all__ = ["ROUND_SOLVERS", "PyomoRounds", "RoundSolver", "SchurRounds", "ShardedRounds", "get_round_solver"]


def _relaxation(name: str) -> str:
    if name not in TRAINABLE_RELAXATIONS:
        raise ValueError(f"relaxation must be one of {TRAINABLE_RELAXATIONS} for training, got {name!r}")
    return name


_relaxation.domain_name = f"one of {TRAINABLE_RELAXATIONS}"


class RoundSolver:
    """Base class: ``build`` returns the round's :class:`~.rounds.RoundProblem`; ``solve_options``
    what each ``problem.solve`` receives; ``config.time_limit`` caps one round."""

    name = "base"
    CONFIG = ConfigDict("round_solver")
    CONFIG.declare("time_limit", ConfigValue(default=120.0, domain=PositiveFloat,
                                             description="seconds for one round (the run's time_limit also caps it)"))

    def __init__(self, **kwds):
        self.config = self.CONFIG(kwds)

    def build(self, net: Network, X, Y, reduction: str, constraints: list, eta: float, mu: tuple,
              loss) -> RoundProblem:
        raise NotImplementedError

    #: whether ``build`` takes ``shards`` (one MPI rank per shard of the samples)
    splits_samples = False

    def solve_options(self) -> dict:
        return dict(self.config.options or {})

    @property
    def solver_name(self) -> str:
        return self.name

    def __repr__(self):
        changed = {k: v for k, v in self.config.items() if v != self.CONFIG.get(k).value()}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _stalled_iterates(stop: str, met: str) -> ConfigValue:
    """The ``stalled_iterates`` option of a round program: how its solver stops short (``stop``) and
    what the stalled point must meet (``met``)."""
    return ConfigValue(default=True, domain=Bool, description=(
        f"a solve that stalls short of its tolerances ({stop}) at a point meeting {met} gives that point as "
        "the round's candidate (the step and the acceptance rule judge its real network; no certificate or "
        "convergence test uses it); False: such a solve fails the round"))


class SchurRounds(RoundSolver):
    """Structured rounds by :class:`~convexnn_pyomo.solvers.schur_ipm.SchurInteriorPoint`;
    ``options`` are its ``CONFIG`` (``tol``, ``dual_tol``, ``max_iter``, ``chunk_size``, ``threads``,
    ...); ``time_limit`` per round defaults to 3600 s (a round at m = 5 x 10^4 takes minutes)."""

    name = "schur"
    splits_samples = True
    CONFIG = RoundSolver.CONFIG()
    # its rounds take minutes at m = 10^5 (one round of the Pyomo model: seconds at m = 10^3); the
    # run's time_limit caps them too
    CONFIG.get("time_limit").set_default_value(3600.0)
    CONFIG.declare("options", ConfigValue(default=None, domain=dict,
                                          description="SchurInteriorPoint options (its CONFIG)"))
    CONFIG.declare("stalled_iterates", _stalled_iterates(
        "no step decreases the KKT residual, or max_iter", "the round's rows to acceptable_tol"))

    def __init__(self, **kwds):
        super().__init__(**kwds)
        from ..solvers.schur_ipm import SchurInteriorPoint

        unknown = sorted(set(self.config.options or {}) - set(SchurInteriorPoint.CONFIG))
        if unknown:
            raise ValueError(f"options {unknown} are not options of the Schur interior point; it takes "
                             f"{sorted(SchurInteriorPoint.CONFIG)}")

    def build(self, net, X, Y, reduction, constraints, eta, mu, loss, shards=None):
        """The structured round; ``shards`` (:class:`~convexnn_pyomo.distributed.SampleShards`): ``X``
        is this MPI rank's shard and the interior point reduces its sums over the ranks."""
        from ..solvers.arrow import NotSeparableError

        try:
            return StructuredRound(net, X, Y, reduction, constraints, eta, mu, loss, self.config.options, shards,
                                   self.config.stalled_iterates)
        except KeyError as err:  # a constraint that names a sample the template does not hold
            raise NotSeparableError(f"a hard constraint refers to a sample by number ({err}): the structured round "
                                    "writes every constraint per sample or as a sum over samples; use "
                                    "round_solver='pyomo' for this model") from err


class PyomoRounds(RoundSolver):
    """The round's Pyomo model on every sample, solved by the Pyomo solver ``solver`` (default:
    :func:`~convexnn_pyomo.solvers.default_nlp_solver`) with ``options`` (over the algorithm's Ipopt
    defaults for an Ipopt), under ``relaxation``."""

    name = "pyomo"
    CONFIG = RoundSolver.CONFIG()
    CONFIG.declare("solver", ConfigValue(default=None, description="Pyomo solver name (default: default_nlp_solver())"))
    CONFIG.declare("options", ConfigValue(default=None, domain=dict, description="options for that solver"))
    CONFIG.declare("relaxation", ConfigValue(default="parabolic", domain=_relaxation,
                                             description="relaxation of each round: 'parabolic' or 'mccormick'"))
    _MODEL_CONFIG = CONFIG()  #: the options ShardedRounds shares (PH's subproblems take no stalled points)
    CONFIG.declare("stalled_iterates", _stalled_iterates(
        "its iteration limit or too small a step; Progressive Hedging's subproblems take no such point",
        "every row and bound of the round's model to stalled_tol (absolute)"))
    CONFIG.declare("stalled_tol", ConfigValue(default=1e-6, domain=PositiveFloat,
                                              description="largest row or bound violation of a stalled point taken"))

    def __init__(self, **kwds):
        super().__init__(**kwds)
        from ..solvers.registry import default_nlp_solver, require_solver

        self._name = self.config.solver or default_nlp_solver()
        self.opt = require_solver(self._name)

    @property
    def solver_name(self) -> str:
        return self._name

    def build(self, net, X, Y, reduction, constraints, eta, mu, loss):
        stalled = self.config.stalled_tol if self.config.stalled_iterates else None
        return PyomoRound(net, X, Y, reduction, self.config.relaxation, constraints, self.opt, eta, mu, loss, stalled)


class ShardedRounds(PyomoRounds):
    """The Pyomo model split into ``shards`` data shards, solved by mpi-sppy's Progressive Hedging
    (:mod:`.sharded`; the ``[mpi]`` extra), in one process or one rank per shard group under
    ``mpiexec``; ``ph_options`` over ``sharded.PH_DEFAULTS``."""

    name = "sharded"
    CONFIG = PyomoRounds._MODEL_CONFIG()
    CONFIG.declare("shards", ConfigValue(default=2, domain=PositiveInt, description="data shards (> 1)"))
    CONFIG.declare("ph_options", ConfigValue(default=None, domain=dict,
                                             description="PH options over sharded.PH_DEFAULTS, e.g. {'tol': 1e-5}"))

    def build(self, net, X, Y, reduction, constraints, eta, mu, loss):
        from .sharded import ShardedRound

        return ShardedRound(net, X, Y, reduction, self.config.relaxation, constraints, self._name, eta, mu, loss,
                            shards=self.config.shards, ph_options=self.config.ph_options)


ROUND_SOLVERS = {"schur": SchurRounds, "pyomo": PyomoRounds, "sharded": ShardedRounds}


def get_round_solver(spec: str | RoundSolver | None = "auto", shards: int = 1) -> RoundSolver:
    """``"auto"``: :class:`SchurRounds` (with ``shards > 1`` one MPI rank per shard); ``"schur"``;
    ``"pyomo"``; ``"sharded"`` (with ``shards > 1``: mpi-sppy's PH); another string: the name of a
    Pyomo solver for :class:`PyomoRounds`; or a configured :class:`RoundSolver`."""
    if isinstance(spec, RoundSolver):
        if shards > 1 and not isinstance(spec, (ShardedRounds, SchurRounds)):
            raise ValueError(f"shards={shards} splits the samples of a SchurRounds round over MPI ranks (or, with "
                             f"ShardedRounds, the Pyomo model over mpi-sppy PH); {spec!r} cannot")
        if shards > 1 and isinstance(spec, ShardedRounds) and spec.config.shards != shards:
            raise ValueError(f"shards={shards} but the round solver has shards={spec.config.shards}: give one of them")
        return spec
    if shards > 1:
        if spec in (None, "auto", "schur"):
            return SchurRounds()
        if spec not in ("sharded", "pyomo") and spec in ROUND_SOLVERS:
            raise ValueError(f"shards={shards}: round_solver {spec!r} cannot be split; give 'schur' (one MPI rank per "
                             "shard) or 'sharded' (mpi-sppy PH)")
        solver = None if spec in ("sharded", "pyomo") else spec
        return ShardedRounds(shards=shards, solver=solver)
    if spec in (None, "auto", "schur"):
        return SchurRounds()
    if spec == "pyomo":
        return PyomoRounds()
    if spec == "sharded":
        raise ValueError("round_solver='sharded' needs shards > 1 (or ShardedRounds(shards=K))")
    if not isinstance(spec, str):
        raise TypeError(f"round_solver must be a name or a RoundSolver, got {type(spec).__name__}")
    return PyomoRounds(solver=spec)
