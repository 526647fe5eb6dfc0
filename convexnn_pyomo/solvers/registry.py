"""Which solvers this machine has, why the others are missing, and the default NLP solver."""

from __future__ import annotations

import io
import logging
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pyomo.environ as pyo

__all__ = ["SOLVERS", "available_solvers", "default_nlp_solver", "require_solver", "SolverNotAvailableError"]


class SolverNotAvailableError(RuntimeError):
    """A requested solver is not installed or not usable here."""


@dataclass(frozen=True)
class SolverInfo:
    name: str  # Pyomo SolverFactory name
    kind: str  # what it solves for us
    install: str  # how to get it


SOLVERS: list[SolverInfo] = [
    SolverInfo("ipopt", "local NLP (executable on PATH)", "an 'ipopt' executable on PATH, e.g. from 'idaes get-extensions' (needs internet) or a conda 'ipopt'"),
    SolverInfo("ipopt_casadi", "local NLP, embedded (Ipopt 3.14 + MUMPS from CasADi)", "pip install casadi"),
    SolverInfo("gurobi_direct", "LP/QP/QCP, nonconvex MIQCP (size-limited pip license)", "pip install gurobipy"),
    SolverInfo("gurobi_direct_minlp", "global MINLP incl. exp/log (size-limited pip license)", "pip install gurobipy"),
    SolverInfo("convexnn_conic", "LP/QP + PSD cones (Clarabel), for convexnn.sdp", "pip install clarabel"),
    SolverInfo("scip_nl", "global MINLP (SCIP 10 from pyscipopt, reads Pyomo's NL file)", "pip install pyscipopt"),
    SolverInfo("appsi_highs", "LP/QP", "pip install highspy"),
    SolverInfo("scip", "global MINLP (executable on PATH)", "a 'scip' executable on PATH"),
]


def _check(name: str) -> tuple[bool, str]:
    if name == "ipopt" and shutil.which("ipopt") is None:
        return False, "no 'ipopt' executable on PATH"
    if name == "scip" and shutil.which("scip") is None:
        return False, "no 'scip' executable on PATH"
    try:
        buf = io.StringIO()
        logger = logging.getLogger("pyomo")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            with redirect_stdout(buf), redirect_stderr(buf):
                solver = pyo.SolverFactory(name)
                ok = bool(solver.available(exception_flag=False))
        finally:
            logger.setLevel(level)
    except Exception as exc:  # a plugin that cannot even be created
        return False, f"{type(exc).__name__}: {exc}"
    if not ok:
        return False, "plugin present but the solver library/executable was not found"
    try:
        lic = solver.license_is_valid() if hasattr(solver, "license_is_valid") else True
    except Exception as exc:
        return False, f"license check failed: {exc}"
    if not lic:
        return False, "no valid license"
    return True, ""


def available_solvers():
    """A pandas DataFrame: ``solver, kind, available, reason, install``."""
    import pandas as pd

    rows = []
    for info in SOLVERS:
        ok, reason = _check(info.name)
        rows.append(
            {"solver": info.name, "kind": info.kind, "available": ok, "reason": reason, "install": "" if ok else info.install}
        )
    return pd.DataFrame(rows)


def default_nlp_solver() -> str:
    """``"ipopt"`` when an Ipopt executable is on PATH, else the embedded ``"ipopt_casadi"``."""
    if _check("ipopt")[0]:
        return "ipopt"
    if _check("ipopt_casadi")[0]:
        return "ipopt_casadi"
    raise SolverNotAvailableError(
        "no NLP solver: install the package's dependencies (pip install casadi) or put an 'ipopt' executable on PATH"
    )


def require_solver(name: str):
    """``SolverFactory(name)`` when usable; otherwise a clear error with the fix and the alternatives."""
    known = {s.name: s for s in SOLVERS}
    ok, reason = _check(name)
    if ok:
        return pyo.SolverFactory(name)
    usable = [s.name for s in SOLVERS if _check(s.name)[0]]
    hint = f" Install: {known[name].install}." if name in known else ""
    raise SolverNotAvailableError(
        f"solver {name!r} is not available ({reason}).{hint} Available here: {', '.join(usable) or 'none'}"
    )
