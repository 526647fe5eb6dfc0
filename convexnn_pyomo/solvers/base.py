"""What the legacy ``SolverFactory`` protocol and the ``pyomo solve`` command expect of a plugin."""

from __future__ import annotations

__all__ = ["LegacySolverMixin"]


class LegacySolverMixin:
    """Context manager, availability, options and the ``config_block`` used by ``pyomo solve``.

    A plugin sets ``name``, ``module`` (the Python package it needs), ``pip`` (how to install it)
    and ``timelimit_option`` (its own name for Pyomo's generic ``timelimit``).
    """

    name = "convexnn"
    module = ""
    pip = ""
    timelimit_option = ""

    def __init__(self, **kwds):
        self.options = dict(kwds.pop("options", {}) or {})

    def available(self, exception_flag: bool = True) -> bool:
        import importlib

        try:
            importlib.import_module(self.module)
        except ImportError:
            if exception_flag:
                raise RuntimeError(f"{self.name} needs the {self.module!r} package: {self.pip}") from None
            return False
        return True

    def version(self) -> tuple:
        import importlib

        text = getattr(importlib.import_module(self.module), "__version__", "0")
        return tuple(int(t) for t in text.split(".")[:3] if t.isdigit())

    def merged_options(self, options=None, timelimit: float | None = None) -> dict:
        """Plugin options updated by call options; ``None`` values dropped; ``timelimit`` renamed."""
        opts = {k: v for k, v in {**self.options, **(options or {})}.items() if v is not None}
        if "timelimit" in opts:
            opts[self.timelimit_option] = float(opts.pop("timelimit"))
        if timelimit is not None:
            opts[self.timelimit_option] = float(timelimit)
        return opts

    def license_is_valid(self) -> bool:
        return True

    def warm_start_capable(self) -> bool:
        return False

    def config_block(self, init: bool = False):
        from pyomo.scripting.solve_config import default_config_block

        return default_config_block(self, init)[0]

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False

    def new_results(self, status_table: dict, status_name: str, seconds: float):
        """A ``SolverResults`` with this solver's name, the status mapped through
        ``status_table`` (unknown names: error) and the solve time."""
        from pyomo.opt import SolverResults, SolverStatus, TerminationCondition

        status, term = status_table.get(status_name, (SolverStatus.error, TerminationCondition.error))
        results = SolverResults()
        results.solver.name = self.name
        results.solver.status = status
        results.solver.termination_condition = term
        results.solver.message = status_name
        results.solver.wallclock_time = seconds
        return results

    def set_options(self, options) -> None:
        """``pyomo solve --solver-options``: a dict or a ``"key=value key2=value2"`` string."""
        if isinstance(options, str):
            parsed = {}
            for token in options.split():
                key, _, val = token.partition("=")
                try:
                    parsed[key] = int(val)
                except ValueError:
                    try:
                        parsed[key] = float(val)
                    except ValueError:
                        parsed[key] = val
            options = parsed
        self.options.update(dict(options))

    def set_callback(self, name, callback=None) -> None:
        raise NotImplementedError(f"{self.name} does not support callbacks")


def store_solution(model, results, variables, objective_value: float) -> None:
    """Record the loaded primal point in ``results`` and ``model.solutions`` (as legacy solvers do),
    so that ``pyomo solve`` and ``results.write()`` report it."""
    from pyomo.core.expr.symbol_map import SymbolMap
    from pyomo.opt import SolutionStatus

    smap = SymbolMap()
    from pyomo.opt import TerminationCondition

    soln = results.solution.add()
    optimal = results.solver.termination_condition in (TerminationCondition.optimal, TerminationCondition.locallyOptimal)
    soln.status = SolutionStatus.optimal if optimal else SolutionStatus.feasible
    soln.gap = 0.0
    for v in variables:
        label = v.name
        smap.addSymbol(v, label)
        soln.variable[label] = {"Value": v.value}
    soln.objective["objective"] = {"Value": objective_value}
    results._smap = smap
    model.solutions.load_from(results, ignore_invalid_labels=True, select=0)
