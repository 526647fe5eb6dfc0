"""Which solvers this machine has, why the others are missing, and the default NLP solver.

Every solver listed in :data:`SOLVERS` is a ``pyomo.contrib.solver`` (new API) solver:
:func:`get_solver` returns one, :func:`require_solver` returns one that is usable here or raises
:class:`SolverNotAvailableError` saying what to install.  All of them take the same options::

    opt = require_solver("ipopt_casadi")
    res = opt.solve(model, time_limit=60, solver_options={"max_iter": 500},
                    load_solutions=False, raise_exception_on_nonoptimal_result=False)
    if pyo.check_optimal_termination(res):
        res.solution_loader.load_vars()
"""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from pyomo.contrib.solver.common.base import SolverBase
from pyomo.contrib.solver.common.factory import SolverFactory

from .base import SolverNotAvailableError, install_hint

__all__ = [
    "SOLVERS",
    "SolverInfo",
    "SolverNotAvailableError",
    "available_solvers",
    "check_solver",
    "default_nlp_solver",
    "get_solver",
    "require_solver",
]


@dataclass(frozen=True)
class SolverInfo:
    name: str  # name in pyomo.contrib.solver's SolverFactory
    kind: str  # what it solves for us
    missing: str  # what is missing when it is not available
    install: str  # how to get it
    extra: bool = True  # comes with the ``solvers`` extra


def _package(name: str, kind: str, module: str) -> SolverInfo:
    return SolverInfo(name, kind, f"the Python package {module!r} is not installed", install_hint(module), module != "casadi")


SOLVERS: list[SolverInfo] = [
    SolverInfo("ipopt", "local NLP (Pyomo's NL interface)", "no 'ipopt' executable on PATH",
               "an 'ipopt' executable on PATH, e.g. from 'idaes get-extensions' (needs internet) or a conda 'ipopt'", False),
    _package("ipopt_casadi", "local NLP, embedded (Ipopt 3.14 + MUMPS from CasADi)", "casadi"),
    _package("gurobi_direct", "LP/QP/QCP, nonconvex MIQCP (size-limited pip license)", "gurobipy"),
    _package("gurobi_direct_minlp", "global MINLP incl. exp/log (size-limited pip license)", "gurobipy"),
    _package("convexnn_conic", "LP/QP + PSD cones (Clarabel)", "clarabel"),
    _package("convexnn_sdp_cuts", "convexnn.sdp models: Clarabel + tangent cuts until (7) holds", "clarabel"),
    _package("scip_nl", "global MINLP (SCIP 10 from pyscipopt, reads Pyomo's NL file)", "pyscipopt"),
    _package("highs", "LP/QP (HiGHS)", "highspy"),
]
_INFO = {s.name: s for s in SOLVERS}


def get_solver(name: str, **kwds) -> SolverBase:
    """A new-API (``pyomo.contrib.solver``) solver: any name of :data:`SOLVERS`, or another name
    registered with ``pyomo.contrib.solver.common.factory.SolverFactory``.  Not checked for
    availability (see :func:`require_solver`)."""
    if name not in SolverFactory:
        raise SolverNotAvailableError(
            f"unknown solver {name!r}: not a pyomo.contrib.solver SolverFactory name (ours: {', '.join(_INFO)})"
        )
    return SolverFactory(name, **kwds)


def check_solver(name: str) -> tuple[bool, str]:
    """``(True, "")`` when ``name`` is usable here, else ``(False, why not)``."""
    logger = logging.getLogger("pyomo")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            availability = get_solver(name).available()
    except SolverNotAvailableError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot even be created or queried
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        logger.setLevel(level)
    if availability:
        return True, ""
    info = _INFO.get(name)
    return False, info.missing if info is not None and availability.name == "NotFound" else f"availability: {availability}"


def available_solvers():
    """A pandas DataFrame: ``solver, kind, available, reason, install`` (``convexnn solvers``)."""
    import pandas as pd

    rows = []
    for info in SOLVERS:
        ok, reason = check_solver(info.name)
        rows.append({"solver": info.name, "kind": info.kind, "available": ok, "reason": reason,
                     "install": "" if ok else info.install})
    return pd.DataFrame(rows)


def default_nlp_solver() -> str:
    """``"ipopt"`` when an Ipopt executable is on PATH, else the embedded ``"ipopt_casadi"``."""
    for name in ("ipopt", "ipopt_casadi"):
        if check_solver(name)[0]:
            return name
    raise SolverNotAvailableError(
        f"no NLP solver: {install_hint('casadi')}, or put an 'ipopt' executable on PATH"
    )


def require_solver(name: str, **kwds) -> SolverBase:
    """:func:`get_solver` when the solver is usable here; otherwise :class:`SolverNotAvailableError`
    with what is missing, how to install it and the solvers that are available."""
    ok, reason = check_solver(name)
    if ok:
        return get_solver(name, **kwds)
    hint = f" Install: {_INFO[name].install}." if name in _INFO else ""
    usable = [s.name for s in SOLVERS if check_solver(s.name)[0]]
    raise SolverNotAvailableError(
        f"solver {name!r} is not available ({reason}).{hint} Available here: {', '.join(usable) or 'none'}"
    )
