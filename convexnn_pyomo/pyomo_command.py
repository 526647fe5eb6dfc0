"""``pyomo convexnn-solvers``: a Pyomo subcommand, loaded through the ``pyomo.command`` entry point.

Loading it also imports ``convexnn_pyomo``, which registers the package's transformations and
solver plugins, so ``pyomo solve models/<file>.py --solver=ipopt_casadi`` (or ``convexnn_conic``,
``convexnn_sdp_cuts``, ``scip_nl``) works: Pyomo creates the solver before it reads the model file.
Those plugins are ``pyomo.contrib.solver`` solvers; ``pyomo solve`` reaches them through Pyomo's
legacy wrapper (``--solver-options="max_iter=100"`` and the results file work).
"""

from __future__ import annotations

import pyomo.scripting.pyomo_parser

import convexnn_pyomo  # noqa: F401  (registers transformations and solvers)


def _list_solvers(options=None, *args, **kwds) -> int:
    from convexnn_pyomo.solvers import available_solvers

    print(available_solvers().to_string(index=False))
    return 0


pyomo.scripting.pyomo_parser.add_subparser(
    "convexnn-solvers",
    func=_list_solvers,
    help="List the solvers convexnn-pyomo can use here, and why others are unavailable",
    description="List the solvers convexnn-pyomo can use here (ipopt_casadi, convexnn_conic, convexnn_sdp_cuts, scip_nl, ...)",
)
