"""The numpy oracle: shapes, forward pass, gradient, persistence, input checks."""

import numpy as np
import pytest

import convexnn_pyomo as cnn


def test_forward_pass_by_hand():
    net = cnn.Network([2, 3, 1], ["tanh", "identity"]).init_he(1)
    X = np.array([[0.1, -0.3], [1.0, 2.0]])
    hidden = np.tanh(X @ net.weights[0].T + net.biases[0])
    out = hidden @ net.weights[1].T + net.biases[1]
    np.testing.assert_allclose(net.predict(X), out)
    fp = net.forward_pass(X)
    assert fp.z[0].shape == (3, 2) and fp.x[0].shape == (2, 2) and fp.x[2].shape == (1, 2)


def test_he_initialisation_shapes_and_zero_biases():
    net = cnn.Network([8, 6, 6, 1], "sigmoid").init_he(0)
    assert [w.shape for w in net.weights] == [(6, 8), (6, 6), (1, 6)]
    assert all(np.all(b == 0) for b in net.biases)
    big = cnn.Network([400, 300, 1], "sigmoid").init_he(0)
    assert np.std(big.weights[0]) == pytest.approx(np.sqrt(2 / 400), rel=0.02)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(0)
    net = cnn.Network([3, 4, 2], ["softplus", "identity"]).init_he(2)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    theta = net.get_flat()
    _, g = net.loss_and_gradient(X, Y, reduction=reduction)
    h = 1e-6
    fd = [
        (net.with_flat(theta + h * e).loss(X, Y, reduction) - net.with_flat(theta - h * e).loss(X, Y, reduction)) / (2 * h)
        for e in np.eye(theta.size)
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_save_and_load_roundtrip(tmp_path):
    net = cnn.Network([3, 2, 1], ["tanh", "identity"]).init_he(5)
    net.save(tmp_path / "w.npz")
    back = cnn.Network.load(tmp_path / "w.npz")
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_bad_inputs_are_named():
    net = cnn.Network([2, 2, 1], "sigmoid").init_he(0)
    with pytest.raises(ValueError, match="NaN or inf"):
        net.predict(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="3 features.*expects 2"):
        net.predict(np.ones((4, 3)))
    with pytest.raises(ValueError, match="4 samples but Y has 3"):
        net.loss(np.ones((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match="output activation must be the identity"):
        cnn.Network([2, 2, 1], ["sigmoid", "sigmoid"])
    with pytest.raises(ValueError, match="needs 2 activations"):
        cnn.Network([2, 2, 1], ["sigmoid", "sigmoid", "identity"])
