import numpy as np
import pytest

import convexnn_pyomo as cnn


def max_violation(model, constraints=None):
    """Largest violation of the active constraints of a Pyomo model at its current values."""
    import pyomo.environ as pyo

    worst = 0.0
    cons = constraints if constraints is not None else model.component_data_objects(pyo.Constraint, active=True)
    for c in cons:
        body = pyo.value(c.body)
        if c.upper is not None:
            worst = max(worst, body - pyo.value(c.upper))
        if c.lower is not None:
            worst = max(worst, pyo.value(c.lower) - body)
    return worst


@pytest.fixture
def small_problem():
    """8-6-6-1 sigmoid network on 20 breast_cancer samples, He init."""
    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    rng = np.random.default_rng(3)
    idx = rng.choice(ds.m, 20, replace=False)
    net = cnn.Network([8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]).init_he(0)
    return net, ds.X[idx], ds.y[idx]
