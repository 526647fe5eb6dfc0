"""DC splits: p, q convex, p - q = h, derivatives right, Pyomo pieces reproduce p and q."""

import numpy as np
import pyomo.environ as pyo
import pytest

import convexnn_pyomo as cnn

Z = np.linspace(-12, 12, 2401)
ACTS = [cnn.Sigmoid(), cnn.Softplus(), cnn.Softplus(tau=3.0), cnn.Tanh(), cnn.Identity()]


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_split_sums_to_h(act):
    np.testing.assert_allclose(act.p(Z) - act.q(Z), act.value(Z), atol=1e-12)


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_parts_are_convex(act):
    # midpoint convexity on a grid of pairs, and non-decreasing derivative
    for f, df in ((act.p, act.p_derivative), (act.q, act.q_derivative)):
        a, b = Z[:-200], Z[200:]
        assert np.all(f((a + b) / 2) <= (f(a) + f(b)) / 2 + 1e-12)
        assert np.all(np.diff(df(Z)) >= -1e-12)


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_derivatives_match_finite_differences(act):
    h = 1e-6
    zz = Z[np.abs(Z) > 1e-3]  # the sigmoid split's parts switch formula at 0 (they are C^1 there)
    for f, df in ((act.value, act.derivative), (act.p, act.p_derivative), (act.q, act.q_derivative)):
        np.testing.assert_allclose((f(zz + h) - f(zz - h)) / (2 * h), df(zz), atol=1e-6)


@pytest.mark.parametrize("act", ACTS, ids=repr)
def test_pyomo_expressions_match_numpy(act):
    m = pyo.ConcreteModel()
    m.z = pyo.Var()
    for z in (-30.0, -3.0, -0.2, 0.0, 0.7, 4.0, 30.0):
        m.z.set_value(z)
        assert pyo.value(act.pyomo_expr(m.z)) == pytest.approx(float(act.value(np.array([z]))[0]), abs=1e-12)
        assert max(pyo.value(e) for e in act.p_pieces(m.z)) == pytest.approx(float(act.p(np.array([z]))[0]), abs=1e-12)
        assert max(pyo.value(e) for e in act.q_pieces(m.z)) == pytest.approx(float(act.q(np.array([z]))[0]), abs=1e-12)


def test_sigmoid_split_is_the_papers_hbar_split():
    s = cnn.Sigmoid()
    hbar = lambda z: np.where(z <= 0, 1 / (1 + np.exp(-z)), z / 4 + 0.5)  # noqa: E731
    np.testing.assert_allclose(s.p(Z), hbar(Z) - Z / 4 - 0.5, atol=1e-14)
    np.testing.assert_allclose(s.q(Z), hbar(-Z) - 1, atol=1e-14)


def test_auto_split_needs_bounded_second_derivative():
    with pytest.raises(ValueError, match="second derivative"):
        cnn.AutoDCActivation("exp", np.exp, np.exp, pyo.exp, None)
    c = cnn.Tanh().c
    zz = np.linspace(-5, 5, 100001)
    second = np.gradient(np.gradient(np.tanh(zz), zz), zz)
    assert c == pytest.approx(np.max(np.abs(second[5:-5])), rel=1e-3)


def test_unknown_activation_name():
    with pytest.raises(ValueError, match="unknown activation 'relu6'.*sigmoid"):
        cnn.get_activation("relu6")
