"""``scip_nl``: SCIP 10 from the ``pyscipopt`` wheel as a global solver for Pyomo models.

Pyomo writes the model as an AMPL NL file with symbolic names; SCIP's own NL reader loads it
(no ``scip`` executable needed), SCIP solves it to global optimality (spatial branch and bound),
and the values are mapped back through Pyomo's symbol map.  SCIP's NL reader does not know
``tanh``: build models for it with ``build_training_model(..., elementary=True)``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pyomo.environ import Objective, SolverFactory, maximize
from pyomo.opt import SolverResults, SolverStatus, TerminationCondition

from .base import LegacySolverMixin, store_solution

__all__ = ["ScipNL"]

_STATUS = {
    "optimal": (SolverStatus.ok, TerminationCondition.optimal),
    "infeasible": (SolverStatus.warning, TerminationCondition.infeasible),
    "unbounded": (SolverStatus.warning, TerminationCondition.unbounded),
    "inforunbd": (SolverStatus.warning, TerminationCondition.infeasibleOrUnbounded),
    "timelimit": (SolverStatus.aborted, TerminationCondition.maxTimeLimit),
    "nodelimit": (SolverStatus.aborted, TerminationCondition.maxEvaluations),
    "gaplimit": (SolverStatus.ok, TerminationCondition.optimal),
    "userinterrupt": (SolverStatus.aborted, TerminationCondition.userInterrupt),
}


@SolverFactory.register("scip_nl", doc="SCIP (pyscipopt wheel) global MINLP solver reading Pyomo's NL file")
class ScipNL(LegacySolverMixin):
    name = "scip_nl"
    module = "pyscipopt"
    pip = "pip install pyscipopt"
    timelimit_option = "limits/time"

    def solve(self, model, tee: bool = False, load_solutions: bool = True, options=None, timelimit=None, **kwds) -> SolverResults:
        import pyscipopt

        self.available(True)
        opts = self.merged_options(options, timelimit)
        obj = next(model.component_data_objects(Objective, active=True, descend_into=True))
        sense = -1.0 if obj.sense == maximize else 1.0
        with tempfile.TemporaryDirectory() as tmp:
            nl = str(Path(tmp) / "model.nl")
            # no linear presolve: every variable stays in the file, so every one gets a value back
            _, smap_id = model.write(nl, format="nl", io_options={"symbolic_solver_labels": True, "linear_presolve": False})
            smap = model.solutions.symbol_map[smap_id]
            col_names = Path(tmp, "model.col").read_text().split("\n")
            scip = pyscipopt.Model()
            if not tee:
                scip.hideOutput()
            try:
                scip.readProblem(nl)
            except OSError as exc:
                raise ValueError(
                    "SCIP's NL reader rejected the model (it knows no tanh; build training models for "
                    "global solvers with build_training_model(..., elementary=True))"
                ) from exc
            for k, v in opts.items():
                scip.setParam(k, v)
            t0 = time.perf_counter()
            scip.optimize()
            seconds = time.perf_counter() - t0
            results = self.new_results(_STATUS, scip.getStatus(), seconds)
            nsols = scip.getNSols()
            primal = scip.getObjVal() if nsols else float("inf")
            dual = scip.getDualbound()
            lo, up = (dual, primal) if sense > 0 else (primal, dual)
            results.problem.lower_bound, results.problem.upper_bound = lo, up
            results.solver.gap = scip.getGap() if nsols else float("inf")
            if load_solutions and nsols:
                values = {v.name: scip.getVal(v) for v in scip.getVars()}
                # SCIP names columns after the .col file; Pyomo's symbol map names them v<k>
                for k, name in enumerate(col_names):
                    var = smap.bySymbol.get(f"v{k}")
                    if var is not None and name in values:
                        var.set_value(values[name], skip_validation=True)
                if "report_timing" in kwds:  # called by `pyomo solve`
                    store_solution(model, results, [smap.bySymbol[f"v{k}"] for k in range(len(col_names)) if f"v{k}" in smap.bySymbol], sense * primal)
        return results
