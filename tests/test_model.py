"""Exact model (2a)-(2c), the parabolic + DC relaxation, maps, lifting, and model sizes."""

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import max_violation

import convexnn_pyomo as cnn
from convexnn_pyomo.model import var_matrix


def _random_problem(sizes, acts, m, seed):
    rng = np.random.default_rng(seed)
    net = cnn.Network(sizes, acts).init_he(seed)
    for b in net.biases:
        b += rng.normal(scale=0.5, size=b.shape)
    X = rng.uniform(size=(m, sizes[0]))
    Y = rng.normal(size=(m, sizes[-1]))
    return net, X, Y


CASES = [
    ([3, 4, 1], ["sigmoid", "identity"], 5),
    ([2, 3, 3, 1], ["tanh", "softplus", "identity"], 7),
    ([4, 2, 3, 2], ["sigmoid", "sigmoid", "identity"], 6),
    ([3, 3, 1], ["identity", "identity"], 4),
]


def count(model, ctype):
    """Distinct active component data (a Reference does not add variables)."""
    return len({id(c) for c in model.component_data_objects(ctype, active=True)})


@pytest.mark.parametrize("sizes,acts,m", CASES)
def test_exact_model_at_forward_pass_is_feasible_and_objective_is_loss(sizes, acts, m):
    net, X, Y = _random_problem(sizes, acts, m, 1)
    model = cnn.build_training_model(net, X, Y)
    assert max_violation(model) < 1e-10
    assert pyo.value(model.objective) == pytest.approx(net.loss(X, Y), rel=1e-12)
    mean = cnn.build_training_model(net, X, Y, reduction="mean")
    assert pyo.value(mean.objective) == pytest.approx(net.loss(X, Y) / m, rel=1e-12)


@pytest.mark.parametrize("sizes,acts,m", CASES)
def test_lifted_forward_pass_satisfies_relaxation(sizes, acts, m):
    """The relaxation contains the exact problem: the lifted true point satisfies (5a)-(5d), (7)."""
    for seed in range(3):
        net, X, Y = _random_problem(sizes, acts, m, seed)
        model = cnn.build_training_model(net, X, Y)
        pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
        cnn.set_lifted_values(model, net)
        assert max_violation(model) < 1e-10


def test_points_off_the_exact_set_violate_the_relaxation_somewhere():
    """The relaxation is not vacuous: shrinking W below ||w||^2 or u below p + q is infeasible."""
    net, X, Y = _random_problem([3, 4, 1], ["sigmoid", "identity"], 5, 0)
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    cnn.set_lifted_values(model, net)
    rb = cnn.get_relaxation_block(model.layer[2])
    rb.W[0].set_value(rb.W[0].value - 1e-3)
    assert max_violation(model, [rb.weight_norm[0]]) > 0
    r1 = cnn.get_relaxation_block(model.layer[1])
    r1.u[0, 0].set_value(r1.u[0, 0].value - 1e-3)
    assert max_violation(model, list(r1.dc_p[0, 0, :]) + list(r1.dc_q[0, 0, :])) > 0


def _expected_size(sizes, acts, m, relaxed):
    """The size formula stated in docs/formulation.md."""
    L = len(sizes) - 1
    n_vars = n_cons = 0
    for l in range(1, L + 1):
        n, n_in = sizes[l], sizes[l - 1]
        act = cnn.get_activation(acts[l - 1])
        hidden = l < L
        n_vars += n * n_in + n + n * m + (n * m if hidden else 0)
        n_cons += n * m + (n * m if hidden else 0)
        if relaxed:
            if l >= 2:  # (2b) -> (5a)-(5d)
                n_vars += n + m
                n_cons += -n * m + 2 * n * m + n + m
            if hidden and not act.linear:  # (2c) -> (7)
                pieces = len(act.p_pieces(0.0)) + len(act.q_pieces(0.0))
                n_vars += n * m
                n_cons += -n * m + pieces * n * m
    return n_vars, n_cons


@pytest.mark.parametrize("sizes,acts,m", CASES)
def test_model_sizes_follow_the_documented_formula(sizes, acts, m):
    net, X, Y = _random_problem(sizes, acts, m, 0)
    model = cnn.build_training_model(net, X, Y)
    assert (count(model, pyo.Var), count(model, pyo.Constraint)) == _expected_size(sizes, acts, m, False)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    assert (count(model, pyo.Var), count(model, pyo.Constraint)) == _expected_size(sizes, acts, m, True)


def test_parabolic_grows_linearly_in_m():
    sizes, acts = [8, 6, 6, 1], ["sigmoid", "sigmoid", "identity"]
    v = [_expected_size(sizes, acts, m, True) for m in (10, 20, 40)]
    assert v[2][0] - v[1][0] == 2 * (v[1][0] - v[0][0])
    assert v[2][1] - v[1][1] == 2 * (v[1][1] - v[0][1])


def test_maps_between_exact_and_relaxed_constraints():
    net, X, Y = _random_problem([2, 3, 3, 1], ["tanh", "sigmoid", "identity"], 4, 0)
    model = cnn.build_training_model(net, X, Y)
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    rb2 = cnn.get_relaxation_block(model.layer[2])
    src = model.layer[2].bilinear[1, 3]
    assert not src.active
    new = cnn.get_transformed_constraints(src)
    assert rb2.parabolic_plus[1, 3] in new and rb2.parabolic_minus[1, 3] in new
    assert rb2.weight_norm[1] in new and rb2.input_norm[3] in new and len(new) == 4
    assert cnn.get_src_constraints(rb2.parabolic_minus[1, 3]) == [src]
    bil = model.layer[2].bilinear
    # (5c) of node 1 replaces node 1's (2b) for every sample; (5d) of sample 3 every node's (2b) of sample 3
    assert cnn.get_src_constraints(rb2.weight_norm[1]) == [bil[1, j] for j in model.samples]
    assert cnn.get_src_constraints(rb2.input_norm[3]) == [bil[i, 3] for i in model.layer[2].nodes]
    assert model.layer[1].bilinear[0, 0].active  # data input: kept exact
    act = model.layer[2].activation[2, 1]
    pieces = cnn.get_transformed_constraints(act)
    assert len(pieces) == 4  # sigmoid: 2 p pieces + 2 q pieces
    assert all(cnn.get_src_constraints(c) == [act] for c in pieces)
    with pytest.raises(ValueError, match="was not transformed"):
        cnn.get_transformed_constraints(model.layer[1].bilinear[0, 0])
    with pytest.raises(ValueError, match="was not created"):
        cnn.get_src_constraints(model.layer[1].bilinear[0, 0])


def test_transformations_are_registered_and_reject_bad_options(small_problem):
    net, X, Y = small_problem
    for name in ("convexnn.parabolic", "convexnn.regularize"):
        assert name in pyo.TransformationFactory
    model = cnn.build_training_model(net, X, Y)
    par = pyo.TransformationFactory("convexnn.parabolic")
    with pytest.raises(ValueError):
        par.apply_to(model, relax_activations="sometimes")
    with pytest.raises(ValueError, match="not a convexnn LayerBlock"):
        par.apply_to(model, targets=[model.x_data])
    par.apply_to(model)
    with pytest.raises(ValueError, match="already relaxed"):
        par.apply_to(model)
    reg = pyo.TransformationFactory("convexnn.regularize")
    with pytest.raises(ValueError, match="eta"):
        reg.apply_to(model, eta=-1.0, reference=net)
    with pytest.raises(ValueError, match="eta"):
        reg.apply_to(model, eta=0.0, reference=net)
    with pytest.raises(ValueError, match="needs eta"):
        reg.apply_to(model, reference=net)
    with pytest.raises(ValueError, match="mu"):
        reg.apply_to(model, eta=1.0, reference=net, mu_z=0.0)
    with pytest.raises(ValueError):
        reg.apply_to(model, eta=1.0, reference=net, not_an_option=3)
    with pytest.raises(ValueError, match="not built by convexnn_pyomo"):
        par.apply_to(pyo.ConcreteModel())


def test_targets_must_belong_to_the_transformed_model(small_problem):
    net, X, Y = small_problem
    m1, m2 = cnn.build_training_model(net, X, Y), cnn.build_training_model(net, X, Y)
    par = pyo.TransformationFactory("convexnn.parabolic")
    for target in (m2.layer[2], m2.layer, m2):
        with pytest.raises(ValueError, match="does not belong to the model being transformed"):
            par.apply_to(m1, targets=[target])
    for m in (m1, m2):  # neither model was touched
        assert all(c.active for c in m.component_data_objects(pyo.Constraint))
        assert all(cnn.get_relaxation_block(b) is None for b in cnn.layer_blocks(m))
    par.apply_to(m1, targets=[m1.layer[2]])
    assert cnn.get_relaxation_block(m1.layer[2]) is not None and cnn.get_relaxation_block(m1.layer[3]) is None


def test_transformation_blocks_get_unique_names(small_problem):
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y)
    model.layer[2].parabolic = pyo.Block()  # a user's component with the default names
    model.regularization = pyo.Block()
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=1.0, reference=net)
    rb, reg = cnn.get_relaxation_block(model.layer[2]), cnn.get_regularization_block(model)
    assert rb is not model.layer[2].parabolic and rb.parent_block() is model.layer[2]
    assert reg is not model.regularization and reg.parent_block() is model
    assert len(cnn.get_transformed_constraints(model.layer[2].bilinear[0, 0])) == 4


def test_create_using_leaves_the_exact_model_alone(small_problem):
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y)
    relaxed = pyo.TransformationFactory("convexnn.parabolic").create_using(model)
    assert model.layer[2].bilinear[0, 0].active
    assert not relaxed.layer[2].bilinear[0, 0].active
    assert cnn.get_relaxation_block(relaxed.layer[2]) is not None
    assert cnn.get_relaxation_block(model.layer[2]) is None
    with pytest.raises(ValueError, match="was not transformed"):
        cnn.get_transformed_constraints(model.layer[2].bilinear[0, 0])
    # the maps live in the relaxed model's private data and point into the relaxed model
    new = cnn.get_transformed_constraints(relaxed.layer[2].bilinear[0, 0])
    assert all(c.model() is relaxed for c in new)
    assert "_convexnn_relaxation_info" not in relaxed.__dict__
    # a clone of a relaxed model carries its own maps
    again = relaxed.clone()
    rb = cnn.get_relaxation_block(again.layer[2])
    assert rb.model() is again
    assert cnn.get_src_constraints(rb.weight_norm[0]) == [again.layer[2].bilinear[0, j] for j in again.samples]


def test_regularizer_is_zero_at_reference_and_nonnegative_on_relaxed_points(small_problem):
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y, reduction="mean")
    pyo.TransformationFactory("convexnn.parabolic").apply_to(model)
    pyo.TransformationFactory("convexnn.regularize").apply_to(model, eta=2.0, reference=net)
    cnn.set_lifted_values(model, net)
    reg = cnn.get_regularization_block(model)
    assert abs(pyo.value(reg.r)) < 1e-10
    # another network's lifted point: feasible, so r >= 0; and r > 0 since it differs
    other = cnn.Network(net.sizes, net.activations).init_he(7)
    cnn.set_lifted_values(model, other)
    assert max_violation(model) < 1e-10
    assert pyo.value(reg.r) > 1e-3
    # a new reference changes values only
    cnn.update_reference(model, other, eta=3.0)
    assert abs(pyo.value(reg.r)) < 1e-10 and pyo.value(reg.eta) == 3.0


def test_network_roundtrip_through_model(small_problem):
    net, X, Y = small_problem
    model = cnn.build_training_model(net, X, Y)
    back = cnn.network_from_model(model)
    np.testing.assert_array_equal(back.get_flat(), net.get_flat())
    z = var_matrix(model.layer[3].z, (1, len(Y)))
    np.testing.assert_allclose(z.T, net.predict(X))


def test_model_rejects_mismatched_data(small_problem):
    net, X, Y = small_problem
    with pytest.raises(ValueError, match="features"):
        cnn.build_training_model(net, X[:, :5], Y)
    with pytest.raises(ValueError, match="samples"):
        cnn.build_training_model(net, X, Y[:-1])
    with pytest.raises(ValueError, match="output columns"):
        cnn.build_training_model(net, X, np.c_[Y, Y])
    with pytest.raises(ValueError, match="reduction"):
        cnn.build_training_model(net, X, Y, reduction="max")
