"""Solver plugins and solver discovery."""

from .casadi_ipopt import CasadiIpopt
from .conic import ConicSolver
from .scip_nl import ScipNL
from .registry import available_solvers, default_nlp_solver, require_solver

__all__ = ["CasadiIpopt", "ConicSolver", "ScipNL", "available_solvers", "default_nlp_solver", "require_solver"]
