"""What our three solver plugins share, on ``pyomo.contrib.solver``'s conventions.

:class:`ConvexnnSolverBase` is a :class:`~pyomo.contrib.solver.common.base.SolverBase`: a typed
``CONFIG`` (a :class:`~pyomo.contrib.solver.common.config.SolverConfig`, so ``time_limit``,
``tee``, ``load_solutions``, ``raise_exception_on_nonoptimal_result``, ``solver_options`` ... are
the standard ones), ``available()`` returning an
:class:`~pyomo.contrib.solver.common.base.Availability`, ``version()`` and ``solve()`` returning
:class:`~pyomo.contrib.solver.common.results.Results`.  A plugin names the Python package it needs
(``module``) and its own spelling of the time limit (``time_limit_option``) and implements
``_solve``; the base class owns the rest (availability errors naming the pip extra, the time
limit, the raise/load policy, timing).

:func:`register_solver` registers a plugin with Pyomo's new ``SolverFactory`` and, through
:class:`LegacyConvexnnSolver`, with the legacy one, so that both
``pyo.SolverFactory(name).solve(model, options=..., timelimit=...)`` and
``SolverFactory(name).solve(model, solver_options=..., time_limit=...)`` work.
"""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Callable, Mapping, Sequence

from pyomo.common.collections import ComponentMap
from pyomo.common.timing import default_timer
from pyomo.contrib.solver.common.base import Availability, LegacySolverWrapper, SolverBase
from pyomo.contrib.solver.common.config import SolverConfig
from pyomo.contrib.solver.common.factory import SolverFactory
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.contrib.solver.common.solution_loader import SolutionLoader
from pyomo.contrib.solver.common.util import (
    NoDualsError,
    NoOptimalSolutionError,
    NoReducedCostsError,
    NoSolutionError,
)
from pyomo.core.base.PyomoModel import ModelSolution
from pyomo.core.staleflag import StaleFlagManager

__all__ = [
    "ConvexnnSolverBase",
    "LegacyConvexnnSolver",
    "PointSolutionLoader",
    "SolverNotAvailableError",
    "StatusTable",
    "install_hint",
    "register_solver",
]

#: solver status name -> (termination condition, solution status); unknown names map to ``error``
StatusTable = Mapping[str, tuple[TerminationCondition, SolutionStatus]]

#: how to get each optional Python package (the extras of pyproject.toml)
_INSTALL = {
    "casadi": "pip install casadi (a dependency of convexnn-pyomo: reinstall the package)",
    **{m: 'pip install "convexnn-pyomo[solvers]"' for m in ("clarabel", "gurobipy", "highspy", "pyscipopt", "scs")},
    **{m: 'pip install "convexnn-pyomo[baselines]"' for m in ("torch", "imblearn")},
    **{m: 'pip install "convexnn-pyomo[interop]"' for m in ("onnx", "onnxruntime", "omlt")},
    **{m: 'pip install "convexnn-pyomo[mpi]"' for m in ("mpisppy", "mpi4py")},
}


class SolverNotAvailableError(RuntimeError):
    """A requested solver is not installed or not usable here; the message says how to get it."""


def install_hint(module: str) -> str:
    """How to install the Python package ``module`` (the pip extra for optional solvers)."""
    return _INSTALL.get(module, f"pip install {module}")


def map_status(table: StatusTable, name: str) -> tuple[TerminationCondition, SolutionStatus]:
    """``table[name]``; a status the table does not know is an ``error`` without a solution."""
    return table.get(name, (TerminationCondition.error, SolutionStatus.noSolution))


class PointSolutionLoader(SolutionLoader):
    """The one point a solver returned (or none), loaded into the model on request.

    ``values`` are the primal values of ``variables`` in order (``None``: no solution); ``duals``,
    when the solver has them, is a callable returning ``{constraint: dual}``.
    """

    def __init__(self, model, variables: Sequence = (), values: Sequence[float] | None = None,
                 duals: Callable[[], Mapping] | None = None, solver: str = "solver") -> None:
        self._pyomo_model = model
        self._variables = list(variables)
        self._values = None if values is None else [float(v) for v in values]
        self._duals = duals
        self._solver = solver

    def get_number_of_solutions(self) -> int:
        return 0 if self._values is None else 1

    def get_vars(self, vars_to_load: Sequence | None = None) -> ComponentMap:
        if self._values is None:
            raise NoSolutionError()
        out = ComponentMap(zip(self._variables, self._values))
        if vars_to_load is None:
            return out
        return ComponentMap((v, out[v]) for v in vars_to_load if v in out)

    def get_duals(self, cons_to_load: Sequence | None = None) -> dict:
        if self._values is None:
            raise NoSolutionError()
        if self._duals is None:
            raise NoDualsError(f"{self._solver} does not return duals")
        duals = self._duals()
        return duals if cons_to_load is None else {c: duals[c] for c in cons_to_load}

    def get_reduced_costs(self, vars_to_load: Sequence | None = None) -> ComponentMap:
        raise NoReducedCostsError(f"{self._solver} does not return reduced costs")

    def load_import_suffixes(self) -> None:
        """Clear the model's IMPORT suffixes; fill ``dual`` when there are a point and duals."""
        suffixes = self._collect_and_clear_import_suffixes()
        if "dual" in suffixes and self._values is not None and self._duals is not None:
            suffixes["dual"].update(self.get_duals())


class ConvexnnSolverBase(SolverBase):
    """Base of our plugins: availability, options, the raise/load policy and timing.

    A subclass sets ``module`` (the Python package it needs), ``time_limit_option`` (its name for
    ``config.time_limit``) and implements :meth:`_solve`, which fills ``termination_condition``,
    ``solution_status``, ``incumbent_objective``, ``objective_bound``, ``solution_loader`` and
    ``extra_info`` (with ``iteration_count``) of the results it is given.
    """

    CONFIG = SolverConfig()
    module: str = ""
    time_limit_option: str = ""

    def available(self) -> Availability:
        try:
            importlib.import_module(self.module)
        except ImportError:
            return Availability.NotFound
        return Availability.FullLicense

    def version(self) -> tuple | None:
        if not self.available():
            return None
        text = str(getattr(importlib.import_module(self.module), "__version__", ""))
        return tuple(int(t) for t in text.split(".")[:3] if t.isdigit()) or None

    def require(self) -> None:
        """Raise :class:`SolverNotAvailableError` (naming what to install) unless available."""
        if not self.available():
            raise SolverNotAvailableError(
                f"solver {self.name!r} needs the Python package {self.module!r}: {install_hint(self.module)}"
            )

    def solver_options(self, config) -> dict:
        """``config.solver_options`` with ``config.time_limit`` under this solver's own name."""
        options = {k: v for k, v in config.solver_options.value().items() if v is not None}
        if config.time_limit is not None:
            options[self.time_limit_option] = float(config.time_limit)
        return options

    def solve(self, model, **kwds) -> Results:
        """Solve ``model``; keywords override ``self.config`` for this call (see ``CONFIG``)."""
        start = default_timer()
        config = self.config(value=kwds, preserve_implicit=True)
        self.require()
        StaleFlagManager.mark_all_as_stale()
        results = Results()
        results.timing_info.start_timestamp = datetime.datetime.now(datetime.timezone.utc)
        results.solver_name = self.name
        version = self.version()
        if version is not None:
            results.solver_version = version
        results.solution_loader = PointSolutionLoader(model, solver=self.name)
        self._solve(model, config, results)
        results.solver_config = config
        if config.raise_exception_on_nonoptimal_result and results.solution_status != SolutionStatus.optimal:
            raise NoOptimalSolutionError(
                f"{self.name}: {results.termination_condition.name} ({results.extra_info.value().get('return_status')}). "
                "Pass raise_exception_on_nonoptimal_result=False to get the results instead."
            )
        if config.load_solutions and results.solution_loader.get_number_of_solutions():
            results.solution_loader.load_solution()
        results.timing_info.wall_time = default_timer() - start
        return results

    def _solve(self, model, config, results: Results) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _solve")


class LegacyConvexnnSolver(LegacySolverWrapper):
    """The legacy ``pyo.SolverFactory`` face of a plugin: Pyomo's :class:`LegacySolverWrapper`
    plus what legacy solvers did and the wrapper does not: ``extra_info`` copied onto
    ``results.solver`` (``iterations`` for ``iteration_count``; ``message`` for ``return_status``)
    and the loaded solution recorded in ``model.solutions`` (``pyomo solve`` reports it)."""

    def _map_results(self, model, results):
        legacy_results, legacy_soln = super()._map_results(model, results)
        info, extra = legacy_results.solver, results.extra_info.value()
        info.iterations = extra.pop("iteration_count", None)
        info.message = str(extra.pop("return_status", results.termination_condition.name))
        for key, val in extra.items():
            if isinstance(val, (bool, int, float, str)):
                setattr(info, key, val)
        info.wallclock_time = results.timing_info.wall_time
        return legacy_results, legacy_soln

    def _solution_handler(self, load_solutions, model, results, legacy_results, legacy_soln):
        legacy_results = super()._solution_handler(load_solutions, model, results, legacy_results, legacy_soln)
        solutions = getattr(model, "solutions", None)
        if load_solutions and solutions is not None and results.solution_loader.get_number_of_solutions():
            record = ModelSolution()
            record._metadata.update(status=legacy_soln.status, gap=legacy_soln.gap)
            solutions.clear(clear_symbol_maps=False)
            solutions.solutions.append(record)  # model.solutions.store_to() adds the model's values
        return legacy_results

    def set_options(self, options) -> None:
        """Also accepts the ``"key=value key2=value2"`` string of ``pyomo solve --solver-options``."""
        if isinstance(options, str):
            self.config.solver_options.set_value(dict(_parse_option(token) for token in options.split()))
        else:
            super().set_options(options)


def _parse_option(token: str) -> tuple[str, int | float | str]:
    key, _, text = token.partition("=")
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, text


def register_solver(name: str, doc: str):
    """Class decorator: register a plugin under ``name`` with both solver factories."""

    def decorator(cls):
        legacy = type(f"Legacy{cls.__name__}", (LegacyConvexnnSolver, cls), {"__doc__": cls.__doc__})
        return SolverFactory.register(name, legacy_name=name, doc=doc)(cls, legacy)

    return decorator
