"""``scip_nl``: SCIP 10 from the ``pyscipopt`` wheel as a global solver for Pyomo models.

Pyomo's NL writer writes the model with symbolic column names; SCIP's own NL reader loads it
(no ``scip`` executable needed), SCIP solves it to global optimality (spatial branch and bound),
and the values are mapped back through the column order of the writer.  SCIP's NL reader does not
know ``tanh``: build models for it with ``build_training_model(..., elementary=True)``.
"""

from __future__ import annotations

import math
import os

from pyomo.common.tempfiles import TempfileManager
from pyomo.contrib.solver.common.results import Results, SolutionStatus, TerminationCondition
from pyomo.repn.plugins.nl_writer import NLWriter

from .base import ConvexnnSolverBase, PointSolutionLoader, StatusTable, map_status, register_solver

__all__ = ["SCIP_STATUS", "ScipNL"]

_TC, _SS = TerminationCondition, SolutionStatus
#: SCIP's ``getStatus()`` -> (termination condition, solution status); ``feasible`` becomes
#: ``noSolution`` when SCIP stopped without an incumbent.  ``gaplimit`` is the optimality gap the
#: user asked for (``limits/gap``, 0 by default), hence converged.
SCIP_STATUS: StatusTable = {
    "optimal": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "gaplimit": (_TC.convergenceCriteriaSatisfied, _SS.optimal),
    "infeasible": (_TC.provenInfeasible, _SS.noSolution),
    "unbounded": (_TC.unbounded, _SS.feasible),
    "inforunbd": (_TC.infeasibleOrUnbounded, _SS.noSolution),
    "timelimit": (_TC.maxTimeLimit, _SS.feasible),
    "nodelimit": (_TC.iterationLimit, _SS.feasible),
    "totalnodelimit": (_TC.iterationLimit, _SS.feasible),
    "stallnodelimit": (_TC.iterationLimit, _SS.feasible),
    "restartlimit": (_TC.iterationLimit, _SS.feasible),
    "sollimit": (_TC.objectiveLimit, _SS.feasible),
    "bestsollimit": (_TC.objectiveLimit, _SS.feasible),
    "primallimit": (_TC.objectiveLimit, _SS.feasible),
    "duallimit": (_TC.objectiveLimit, _SS.feasible),
    "memlimit": (_TC.error, _SS.feasible),
    "userinterrupt": (_TC.interrupted, _SS.feasible),
    "terminate": (_TC.interrupted, _SS.feasible),
}


@register_solver("scip_nl", doc="SCIP (pyscipopt wheel) global MINLP solver reading Pyomo's NL file")
class ScipNL(ConvexnnSolverBase):
    """SCIP through its NL reader: a global solver (``objective_bound`` is SCIP's dual bound).

    ``solver_options`` are SCIP parameters (``limits/gap``, ``numerics/feastol``, ...);
    ``time_limit`` becomes ``limits/time``.  ``extra_info``: ``iteration_count`` (LP iterations),
    ``nodes``, ``gap``, ``return_status`` (SCIP's, mapped by :data:`SCIP_STATUS`).
    """

    module = "pyscipopt"
    time_limit_option = "limits/time"
    _scip_version: tuple | None = None

    def version(self) -> tuple | None:
        """SCIP's version (not pyscipopt's)."""
        if ScipNL._scip_version is None and self.available():
            import pyscipopt

            ScipNL._scip_version = tuple(int(t) for t in str(pyscipopt.Model().version()).split("."))
        return ScipNL._scip_version

    def _solve(self, model, config, results: Results) -> None:
        import pyscipopt

        with TempfileManager.new_context() as tmp:
            base = os.path.join(config.working_dir or tmp.mkdtemp(), "model")
            with open(base + ".nl", "w") as nl, open(base + ".row", "w") as row, open(base + ".col", "w") as col:
                # no linear presolve: every variable stays in the file, so every one gets a value back
                info = NLWriter().write(model, nl, row, col, symbolic_solver_labels=True, linear_presolve=False)
            with open(base + ".col") as fh:
                names = fh.read().split("\n")
            scip = pyscipopt.Model()
            if not config.tee:
                scip.hideOutput()
            try:
                scip.readProblem(base + ".nl")
            except OSError as exc:
                raise ValueError(
                    "SCIP's NL reader rejected the model (it knows no tanh; build training models for "
                    "global solvers with build_training_model(..., elementary=True))"
                ) from exc
            for key, val in self.solver_options(config).items():
                try:
                    scip.setParam(key, val)
                except (KeyError, LookupError) as exc:
                    raise ValueError(f"scip_nl: SCIP has no parameter {key!r}") from exc
            scip.optimize()
        self._read_results(scip, model, [names[k] for k in range(len(info.variables))], info.variables, results)

    def _read_results(self, scip, model, names: list, variables: list, results: Results) -> None:
        status, nsols = scip.getStatus(), scip.getNSols()
        results.termination_condition, solution_status = map_status(SCIP_STATUS, status)
        if solution_status == SolutionStatus.feasible and not nsols:
            solution_status = SolutionStatus.noSolution
        results.solution_status = solution_status
        if nsols:
            results.incumbent_objective = float(scip.getObjVal())
        if math.isfinite(scip.getDualbound()):
            results.objective_bound = float(scip.getDualbound())
        info = results.extra_info
        info.iteration_count, info.nodes = int(scip.getNLPIterations()), int(scip.getNNodes())
        info.gap, info.return_status = float(scip.getGap()) if nsols else math.inf, status
        if solution_status != SolutionStatus.noSolution:
            # SCIP names its columns after the .col file: the writer's column order
            values = {v.name: scip.getVal(v) for v in scip.getVars()}
            pairs = [(var, values[name]) for var, name in zip(variables, names) if name in values]
            results.solution_loader = PointSolutionLoader(
                model, [p[0] for p in pairs], [p[1] for p in pairs], solver=self.name
            )
