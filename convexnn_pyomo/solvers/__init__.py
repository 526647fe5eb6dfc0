"""Solver plugins and solver discovery."""

from .casadi_ipopt import CasadiIpopt
from .registry import available_solvers, default_nlp_solver, require_solver

__all__ = ["CasadiIpopt", "available_solvers", "default_nlp_solver", "require_solver"]
