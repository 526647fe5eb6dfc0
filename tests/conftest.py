import importlib

import numpy as np
import pytest

import convexnn_pyomo as cnn
from convexnn_pyomo.solvers import SOLVERS, check_solver
from convexnn_pyomo.solvers.base import install_hint


def requires_solver(*names: str):
    """skipif marker: the test needs these solvers; the reason says what is missing and the pip
    extra that brings it (CI installs every extra and runs the test)."""
    install = {s.name: s.install for s in SOLVERS}
    missing = [(n, check_solver(n)[1]) for n in names if not check_solver(n)[0]]
    reason = "; ".join(f"{n} not available ({why}): {install.get(n, '')}" for n, why in missing)
    return pytest.mark.skipif(bool(missing), reason=reason or "solvers available")


def requires_module(*modules: str):
    """skipif marker: the test needs these optional Python packages; the reason names the extra."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    reason = "; ".join(f"needs {m}: {install_hint(m)}" for m in missing)
    return pytest.mark.skipif(bool(missing), reason=reason or "packages available")


def max_violation(model, constraints=None):
    """Largest violation of the active constraints of a Pyomo model (or of ``constraints``) at its
    current values: the package's ``row_violation``."""
    import pyomo.environ as pyo

    from convexnn_pyomo.algorithms.rounds import row_violation

    return row_violation(constraints if constraints is not None
                         else model.component_data_objects(pyo.Constraint, active=True))


def group_loss_case(m: int):
    """``(net, X, y, bound)``: 8 uniform features, an 8-6-6-1 sigmoid teacher (He seed 7) plus noise
    0.1, the student from He seed 0, and every group's mean squared loss (``x_0 > 0.7`` and the
    rest) bounded at half the start's smaller one (``benchmarks/group_loss_retry.py``'s data)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (m, 8))
    teacher = cnn.Network([8, 6, 6, 1], activations=["sigmoid", "sigmoid", "identity"]).init_he(7)
    y = teacher.predict(X).ravel() + 0.1 * rng.standard_normal(m)
    net = cnn.Network([8, 6, 6, 1], activations=["sigmoid", "sigmoid", "identity"]).init_he(0)
    in_group = X[:, 0] > 0.7
    start = [np.mean((net.predict(X).ravel() - y)[in_group == g] ** 2) for g in (False, True)]
    return net, X, y, cnn.constraints.GroupLossBounds(lambda Z: Z[:, 0] > 0.7, 0.5 * min(start))


@pytest.fixture
def small_problem():
    """8-6-6-1 sigmoid network on 20 breast_cancer samples, He init."""
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    rng = np.random.default_rng(3)
    idx = rng.choice(ds.m, 20, replace=False)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    return net, ds.X[idx], ds.y[idx]
