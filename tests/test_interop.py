"""Interop: PyTorch both ways, scikit-learn MLP import, ONNX export run by onnxruntime, and the OMLT
round trip (the exported network embedded in a Pyomo model and optimised over its input box)."""

import importlib.util
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import requires_module
from scipy.special import expit, softmax

import convexnn_pyomo as cnn
from convexnn_pyomo.activations import AutoDCActivation, Softplus
from convexnn_pyomo.interop import from_sklearn, from_torch, to_onnx

# the MLPs are fitted for a few iterations only: their weights are what the tests compare
mlp_few_iterations = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
MODEL_FILE = Path(__file__).resolve().parent.parent / "models" / "omlt_maximize_score.py"
SMOOTH = [["sigmoid", "tanh"], [Softplus(tau=2.5), "sigmoid"], ["tanh", "identity"]]


def _network(hidden_activations, seed=0) -> cnn.Network:
    """A 3-5-4-2 network with He weights and nonzero biases."""
    net = cnn.Network([3, 5, 4, 2], [*hidden_activations, "identity"]).init_he(seed)
    rng = np.random.default_rng(seed + 1)
    return net.set_parameters(net.weights, [rng.normal(size=b.shape) for b in net.biases])


def _inputs(m=9, n=3, seed=2):
    return np.random.default_rng(seed).normal(size=(m, n)) * 2.0


# -- PyTorch -------------------------------------------------------------------------------------
@requires_module("torch")
@pytest.mark.parametrize("acts", SMOOTH + [["relu", "sigmoid"]], ids=lambda a: "-".join(map(str, a)))
def test_torch_round_trip_equals_the_numpy_forward_pass(acts):
    import torch

    net, X = _network(acts), _inputs()
    module = net.to_torch()
    assert isinstance(module, torch.nn.Sequential) and module[0].weight.dtype == torch.float64
    out = module(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(out, net.predict(X), rtol=0, atol=1e-12)
    back = cnn.Network.from_torch(module)
    assert back.activations == net.activations and back.sizes == net.sizes
    np.testing.assert_array_equal(back.get_flat(), net.get_flat())


@requires_module("torch")
def test_from_torch_builds_the_class_it_is_called_on():
    class Tagged(cnn.Network):
        pass

    module = _network(SMOOTH[0]).to_torch()
    assert type(Tagged.from_torch(module)) is Tagged
    assert type(from_torch(module)) is cnn.Network and type(from_torch(module, network_cls=Tagged)) is Tagged


@requires_module("torch")
def test_from_torch_reads_what_torch_builds():
    """A module built in PyTorch (consecutive Linear, no bias, Identity) gives the same outputs."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4, bias=False),
                                 torch.nn.Identity(), torch.nn.Linear(4, 2)).double()
    net = from_torch(module)
    assert net.sizes == [3, 4, 4, 2] and [a.name for a in net.activations] == ["tanh", "identity", "identity"]
    X = _inputs()
    np.testing.assert_allclose(net.predict(X), module(torch.as_tensor(X)).detach().numpy(), rtol=0, atol=1e-12)


@requires_module("torch")
def test_from_torch_errors_name_what_is_supported():
    import torch

    nn = torch.nn
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        from_torch(nn.Linear(2, 1))
    with pytest.raises(ValueError, match="Linear and Identity, Sigmoid, Tanh, Softplus, ReLU modules; got ELU"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.ELU(), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="output layer is linear.*loss='logistic'"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1), nn.Sigmoid()))
    with pytest.raises(ValueError, match="must follow a Linear layer"):
        from_torch(nn.Sequential(nn.Sigmoid(), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="no Linear layer"):
        from_torch(nn.Sequential())


def test_an_activation_without_counterparts_is_refused_naming_the_fix():
    cube = AutoDCActivation("cube_root_like", np.tanh, lambda z: 1 - np.tanh(z) ** 2, pyo.tanh, 1.0)
    net = cnn.Network([2, 2, 1], [cube, "identity"]).init_he(0)
    with pytest.raises(ValueError, match="no onnx counterpart.*retrain the network with one of them"):
        to_onnx(net)


# -- scikit-learn MLP ----------------------------------------------------------------------------
@mlp_few_iterations
@pytest.mark.parametrize("activation", ["logistic", "tanh", "relu", "identity"])
def test_from_sklearn_regressor_predicts_like_the_mlp(activation):
    from sklearn.neural_network import MLPRegressor

    X = _inputs(40)
    y = np.c_[np.sin(X[:, 0]), X[:, 1] * X[:, 2]]
    mlp = MLPRegressor(hidden_layer_sizes=(5, 3), activation=activation, max_iter=50, random_state=0).fit(X, y)
    net = from_sklearn(mlp)
    assert net.sizes == [3, 5, 3, 2]
    np.testing.assert_allclose(net.predict(X), mlp.predict(X), rtol=0, atol=1e-12)


@mlp_few_iterations
def test_from_sklearn_classifier_outputs_logits():
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    X, y = load_iris(return_X_y=True)
    multi = MLPClassifier(hidden_layer_sizes=(4,), max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_allclose(softmax(from_sklearn(multi).predict(X), axis=1), multi.predict_proba(X), rtol=0, atol=1e-12)
    binary = MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", max_iter=30, random_state=0).fit(X, y == 2)
    np.testing.assert_allclose(expit(from_sklearn(binary).predict(X)[:, 0]), binary.predict_proba(X)[:, 1], rtol=0, atol=1e-12)


@mlp_few_iterations
def test_from_sklearn_is_a_starting_point_for_training():
    from sklearn.neural_network import MLPRegressor

    from convexnn_pyomo.data import load_breast_cancer

    ds = load_breast_cancer()
    X, y = ds.X[:60], ds.y[:60]
    mlp = MLPRegressor(hidden_layer_sizes=(6,), activation="logistic", max_iter=20, random_state=0).fit(X, y)
    start = from_sklearn(mlp)
    result = cnn.train(start, X, y, rounds=3)
    assert result.initial_loss == pytest.approx(float(np.sum((mlp.predict(X) - y) ** 2)), rel=1e-12)
    assert result.final_loss < result.initial_loss


def test_from_sklearn_errors():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LinearRegression
    from sklearn.neural_network import MLPRegressor

    with pytest.raises(TypeError, match="MLPRegressor or MLPClassifier"):
        from_sklearn(LinearRegression())
    with pytest.raises(NotFittedError):
        from_sklearn(MLPRegressor())


# -- ONNX ----------------------------------------------------------------------------------------
ONNX_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus", "relu": "Relu"}


def _tensor_types(model) -> set[int]:
    """The element types of the model's input, output and weights."""
    return ({v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
            | {t.data_type for t in model.graph.initializer})


@requires_module("onnx", "onnxruntime")
@pytest.mark.parametrize("acts", [SMOOTH[0], SMOOTH[2], ["relu", "tanh"]], ids=lambda a: "-".join(map(str, a)))
def test_onnx_float64_runs_in_onnxruntime_like_numpy(acts, tmp_path):
    import onnx
    import onnxruntime as ort

    net, X = _network(acts), _inputs()
    model = net.to_onnx(tmp_path / "net.onnx")
    ops = [n.op_type for n in model.graph.node]
    expected = [op for a in net.activations for op in ("Gemm", ONNX_OPS.get(a.name))]
    assert ops == [op for op in expected if op is not None]
    assert _tensor_types(model) == {onnx.TensorProto.DOUBLE}
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": X})
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, net.predict(X), rtol=0, atol=1e-12)


@requires_module("onnx", "onnxruntime")
@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")],
                         ids=["name", "numpy-type", "numpy-dtype"])
@pytest.mark.parametrize("acts", [*SMOOTH, ["relu", "tanh"]], ids=lambda a: "-".join(map(str, a)))
def test_onnx_float32_runs_in_onnxruntime_to_float32_accuracy(acts, dtype, tmp_path):
    """The float32 export (the type most ONNX consumers feed) has FLOAT input, output and weights;
    onnxruntime runs it on float32 inputs and agrees with the float64 forward pass to 1e-5 of the
    outputs' size (float32 rounds to 6e-8; three layers, sums of a few terms).  Softplus runs too
    (onnxruntime has no float64 Softplus kernel), with tau folded into the weights."""
    import onnx
    import onnxruntime as ort

    net, X = _network(acts), _inputs()
    model = net.to_onnx(tmp_path / "net.onnx", dtype=dtype)
    assert _tensor_types(model) == {onnx.TensorProto.FLOAT}
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"]
    (out,) = session.run(None, {"x": X.astype(np.float32)})
    assert out.dtype == np.float32
    expected = net.predict(X)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@requires_module("onnx")
@pytest.mark.parametrize("dtype", ["float16", np.int32, "int64", "not a type", None, object])
def test_onnx_refuses_other_dtypes(dtype):
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
        _network(SMOOTH[0]).to_onnx(dtype=dtype)


@requires_module("onnx")
def test_onnx_export_leaves_the_network_alone():
    """Folding softplus's tau into the exported weights works on copies."""
    net = _network(SMOOTH[1])
    before = net.get_flat()
    to_onnx(net, dtype="float32")
    np.testing.assert_array_equal(net.get_flat(), before)
    assert net.activations[0].tau == 2.5


# -- OMLT ----------------------------------------------------------------------------------------
def _model_file():
    spec = importlib.util.spec_from_file_location("omlt_maximize_score", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _omlt_outputs_at(model, x) -> np.ndarray:
    """OMLT's outputs with the inputs fixed at ``x`` (the square system solved by Ipopt)."""
    for i, v in zip(model.nn.inputs_set, x):
        model.nn.inputs[i].fix(float(v))
    res = pyo.SolverFactory("ipopt_casadi").solve(model)
    assert pyo.check_optimal_termination(res)
    out = np.array([pyo.value(model.nn.outputs[k]) for k in model.nn.outputs_set])
    model.nn.inputs.unfix()
    return out


@requires_module("onnx", "omlt")
@pytest.mark.parametrize("acts", SMOOTH, ids=lambda a: "-".join(map(str, a)))
def test_omlt_reads_the_export_with_our_outputs(acts, tmp_path):
    net = _network(acts)
    net.to_onnx(tmp_path / "net.onnx")
    X = np.clip(_inputs(4), -2.0, 2.0)
    model = _model_file().build_model(tmp_path / "net.onnx", -2.0 * np.ones(3), 2.0 * np.ones(3))
    for x, expected in zip(X, net.predict(X)):
        np.testing.assert_allclose(_omlt_outputs_at(model, x), expected, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def maximised():
    """The model file's network and box, optimised from the best corner or training sample."""
    mod = _model_file()
    net, X = mod.trained_network(rounds=3)
    return mod, net, X


@requires_module("onnx", "omlt")
def test_omlt_maximises_the_score_over_the_box(maximised, tmp_path):
    mod, net, X = maximised
    lower, upper = np.zeros(8), np.ones(8)
    candidates = mod.candidate_inputs(lower, upper, X)
    assert len(candidates) == 256 + len(X)
    net.to_onnx(tmp_path / "net.onnx")
    model = mod.build_model(tmp_path / "net.onnx", lower, upper, start=mod.best_start(net, candidates))
    res = pyo.SolverFactory("ipopt_casadi").solve(model)
    assert pyo.check_optimal_termination(res)
    x = np.array([pyo.value(model.nn.inputs[i]) for i in model.nn.inputs_set])
    assert np.all(x >= lower - 1e-7) and np.all(x <= upper + 1e-7)
    score = net.predict(x[None, :])[0, 0]
    assert pyo.value(model.score) == pytest.approx(score, abs=1e-6)  # OMLT's output is the network's
    # a local maximum, started at the best candidate; Ipopt stops 1e-8 inside the bounds
    assert score >= net.predict(candidates)[:, 0].max() - 1e-6


@requires_module("onnx", "omlt")
def test_model_file_builds_and_solves():
    model = _model_file().pyomo_create_model()
    assert pyo.check_optimal_termination(pyo.SolverFactory("ipopt_casadi").solve(model))
    assert model.score.sense == pyo.maximize


@requires_module("onnx", "onnxruntime")
def test_a_fitted_estimator_exports_what_it_predicts(tmp_path):
    """The estimator's input and target scaling live in network_, so the ONNX graph needs none."""
    import onnxruntime as ort
    from sklearn.datasets import make_regression

    from convexnn_pyomo.sklearn import ConvexNNRegressor

    X, y = make_regression(n_samples=30, n_features=3, noise=0.1, random_state=0)
    X = X * 50.0 + 7.0
    reg = ConvexNNRegressor(rounds=2, random_state=0).fit(X, y)
    reg.network_.to_onnx(tmp_path / "reg.onnx")
    (out,) = ort.InferenceSession(str(tmp_path / "reg.onnx")).run(None, {"x": X})
    np.testing.assert_allclose(out[:, 0], reg.predict(X), rtol=1e-12, atol=1e-9)


def test_every_activation_pickles():
    """A fitted network (and an estimator holding it) must pickle for joblib / GridSearchCV(n_jobs>1):
    Tanh's derivative was a lambda."""
    import pickle

    for act in ("sigmoid", "tanh", "softplus", "relu"):
        net = cnn.Network([2, 3, 1], [act, "identity"]).init_he(0)
        back = pickle.loads(pickle.dumps(net))
        x = np.linspace(-1, 1, 10).reshape(5, 2)
        np.testing.assert_array_equal(back.predict(x), net.predict(x))
