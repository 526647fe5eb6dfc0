"""Solver plugins (``pyomo.contrib.solver`` solvers, also registered with the legacy
``SolverFactory``) and solver discovery.

* ``ipopt_casadi``      -- Ipopt 3.14 + MUMPS from CasADi's wheel (:class:`CasadiIpopt`)
* ``convexnn_conic``    -- LP/QP objective, linear and PSD constraints to Clarabel (:class:`ConicSolver`)
* ``convexnn_sdp_cuts`` -- ``convexnn.sdp`` models with cuts refined until (7) holds (:class:`SDPCutsSolver`)
* ``scip_nl``           -- SCIP 10 from pyscipopt through Pyomo's NL file (:class:`ScipNL`)
"""

from .base import ConvexnnSolverBase, SolverNotAvailableError
from .casadi_ipopt import CasadiIpopt
from .conic import ConicSolver
from .registry import (
    SOLVERS,
    available_solvers,
    check_solver,
    default_nlp_solver,
    get_solver,
    require_solver,
)
from .scip_nl import ScipNL
from .sdp_cuts import SDPCutsSolver, dc_violation, solve_sdp_relaxation

__all__ = [
    "SOLVERS",
    "CasadiIpopt",
    "ConicSolver",
    "ConvexnnSolverBase",
    "SDPCutsSolver",
    "ScipNL",
    "SolverNotAvailableError",
    "available_solvers",
    "check_solver",
    "dc_violation",
    "default_nlp_solver",
    "get_solver",
    "require_solver",
    "solve_sdp_relaxation",
]
