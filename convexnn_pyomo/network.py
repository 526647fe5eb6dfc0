"""Network description, kept apart from Pyomo: sizes, activations, weights and a numpy oracle.

Conventions (paper section II with the shapes made consistent, see ``docs/formulation.md``):

* layers are numbered ``l = 1..L``; ``sizes = [n_0, n_1, ..., n_L]`` with ``n_0`` the number of
  input features;
* ``weights[l-1]`` is ``w^l`` with shape ``(n_l, n_{l-1})`` (row ``i`` holds node ``i``'s weights),
  ``biases[l-1]`` is ``b^l`` with shape ``(n_l,)``;
* the public data layout is the scikit-learn one: ``X`` has shape ``(m, n_0)`` and ``Y`` shape
  ``(m, n_L)`` (or ``(m,)`` for one output); internally ``x^1 = X.T`` has one column per sample;
* ``z^l = w^l x^l + b^l 1^T`` and ``x^{l+1} = h^l(z^l)``; ``h^L`` is the identity.

:meth:`Network.to_torch`, :meth:`Network.from_torch` and :meth:`Network.to_onnx` call
:mod:`convexnn_pyomo.interop`, which does not import this module (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .interop import from_torch, network_class, to_onnx, to_torch
from .activations import Activation, Identity, as_activation_list
from .losses import Loss, get_loss

__all__ = ["Network", "ForwardPass", "check_data"]


@dataclass
class ForwardPass:
    """Every intermediate quantity of a forward pass, in the paper's column layout.

    ``z[l-1]`` is ``z^l`` (``n_l x m``) and ``x[l-1]`` is ``x^l`` (``n_{l-1} x m``), so ``x[0]`` is
    the data and ``x[l]`` is the output of layer ``l`` (``x[L]`` equals ``z[L-1]``).
    """

    z: list[np.ndarray]
    x: list[np.ndarray]

    @property
    def output(self) -> np.ndarray:
        """Network output ``z^L`` with shape ``(m, n_L)``."""
        return self.z[-1].T


def check_data(X, Y=None, n_inputs: int | None = None, n_outputs: int | None = None):
    """Validate and convert data to float arrays ``X (m, n_0)`` and ``Y (m, n_L)``.

    Raises ``ValueError`` with a message naming the problem (NaN/inf, shapes, sizes).
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (samples x features), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"X contains NaN or inf (first at row {bad[0]}, column {bad[1]}); clean the data first")
    if n_inputs is not None and X.shape[1] != n_inputs:
        raise ValueError(
            f"X has {X.shape[1]} features but the network's first layer expects {n_inputs} "
            f"(sizes[0]); build the Network with sizes[0] = {X.shape[1]}"
        )
    if Y is None:
        return X, None
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"Y must be 1-D or 2-D (samples x outputs), got shape {Y.shape}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}; they must match")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or inf; clean the labels first")
    if n_outputs is not None and Y.shape[1] != n_outputs:
        raise ValueError(
            f"Y has {Y.shape[1]} output columns but the network's last layer has {n_outputs} nodes"
        )
    return X, Y


@network_class  # what interop.from_torch / from_sklearn build
@dataclass
class Network:
    """A fully connected network ``sizes[0] -> ... -> sizes[L]`` with element-wise activations.

    ``activations`` has one entry per layer (``L`` entries, the last must be linear), or one per
    hidden layer (``L - 1`` entries; the output layer is then the identity).  Weights start as
    ``None``; call :meth:`init_he` or pass arrays.
    """

    sizes: Sequence[int]
    activations: Sequence[str | Activation] = ("sigmoid",)
    weights: list[np.ndarray] | None = None
    biases: list[np.ndarray] | None = None
    seed: int | None = field(default=None, repr=False)

    def __post_init__(self):
        sizes = list(self.sizes)
        if len(sizes) < 2 or any((not isinstance(n, (int, np.integer))) or n < 1 for n in sizes):
            raise ValueError(f"sizes must list at least two positive integers, got {self.sizes!r}")
        self.sizes = [int(n) for n in sizes]
        L = len(self.sizes) - 1
        acts = as_activation_list(
            [self.activations] if isinstance(self.activations, (str, Activation)) else self.activations
        )
        if len(acts) == 1 and L > 1:
            acts = acts * (L - 1)
        if len(acts) == L - 1:
            acts = acts + [Identity()]
        if len(acts) != L:
            raise ValueError(
                f"a network with {L} layers needs {L} activations (or {L - 1} for the hidden "
                f"layers), got {len(acts)}"
            )
        if not acts[-1].linear:
            raise ValueError(
                f"the output activation must be the identity (paper section II), got {acts[-1].name!r}"
            )
        self.activations = acts
        if self.weights is None:
            if self.seed is not None:
                self.init_he(self.seed)
        else:
            self.set_parameters(self.weights, self.biases)

    # -- shape helpers ---------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_parameters(self) -> int:
        return sum(self.sizes[l] * (self.sizes[l - 1] + 1) for l in range(1, len(self.sizes)))

    def activation(self, l: int) -> Activation:
        """``h^l`` for ``l = 1..L``."""
        return self.activations[l - 1]

    # -- parameters ------------------------------------------------------------------------------
    def init_he(self, seed: int | np.random.Generator | None = None) -> "Network":
        """He initialisation: ``w^l ~ N(0, 2 / n_{l-1})``, zero biases (paper section V)."""
        rng = np.random.default_rng(seed)
        self.weights = [
            rng.normal(0.0, np.sqrt(2.0 / self.sizes[l - 1]), size=(self.sizes[l], self.sizes[l - 1]))
            for l in range(1, len(self.sizes))
        ]
        self.biases = [np.zeros(self.sizes[l]) for l in range(1, len(self.sizes))]
        return self

    def set_parameters(self, weights, biases=None) -> "Network":
        weights = [np.array(w, dtype=float) for w in weights]
        if biases is None:
            biases = [np.zeros(w.shape[0]) for w in weights]
        biases = [np.array(b, dtype=float).reshape(-1) for b in biases]
        if len(weights) != self.n_layers or len(biases) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} weight matrices and bias vectors")
        for l in range(1, self.n_layers + 1):
            shape = (self.sizes[l], self.sizes[l - 1])
            if weights[l - 1].shape != shape:
                raise ValueError(f"w^{l} must have shape {shape} (n_l, n_(l-1)), got {weights[l - 1].shape}")
            if biases[l - 1].shape != (self.sizes[l],):
                raise ValueError(f"b^{l} must have shape ({self.sizes[l]},), got {biases[l - 1].shape}")
            if not (np.all(np.isfinite(weights[l - 1])) and np.all(np.isfinite(biases[l - 1]))):
                raise ValueError(f"w^{l} or b^{l} contains NaN or inf")
        self.weights, self.biases = weights, biases
        return self

    def _require_parameters(self):
        if self.weights is None or self.biases is None:
            raise ValueError("the network has no weights yet: call net.init_he(seed) or set_parameters()")

    def copy(self) -> "Network":
        new = Network(list(self.sizes), list(self.activations))
        if self.weights is not None:
            new.set_parameters([w.copy() for w in self.weights], [b.copy() for b in self.biases])
        return new

    def get_flat(self) -> np.ndarray:
        """All parameters as one vector (``w^1, b^1, w^2, b^2, ...``)."""
        self._require_parameters()
        return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(self.weights, self.biases)])

    def with_flat(self, theta: np.ndarray) -> "Network":
        """A copy of this network with parameters taken from a flat vector."""
        theta = np.asarray(theta, dtype=float)
        if theta.size != self.n_parameters:
            raise ValueError(f"expected {self.n_parameters} parameters, got {theta.size}")
        weights, biases, k = [], [], 0
        for l in range(1, len(self.sizes)):
            n, n_in = self.sizes[l], self.sizes[l - 1]
            weights.append(theta[k : k + n * n_in].reshape(n, n_in))
            k += n * n_in
            biases.append(theta[k : k + n].copy())
            k += n
        return Network(list(self.sizes), list(self.activations), weights, biases)

    # -- numpy oracle ----------------------------------------------------------------------------
    def forward_pass(self, X) -> ForwardPass:
        """Exact forward pass; ``X`` has shape ``(m, n_0)``."""
        self._require_parameters()
        X, _ = check_data(X, n_inputs=self.sizes[0])
        xs, zs = [X.T], []
        for l in range(1, self.n_layers + 1):
            z = self.weights[l - 1] @ xs[-1] + self.biases[l - 1][:, None]
            zs.append(z)
            xs.append(self.activation(l).value(z))
        return ForwardPass(z=zs, x=xs)

    def predict(self, X) -> np.ndarray:
        """Network output ``f(w, b)`` with shape ``(m, n_L)``."""
        return self.forward_pass(X).output

    def loss(self, X, Y, reduction: str = "sum", loss: str | Loss = "squared") -> float:
        """Training loss of the network's outputs ``z^L`` (default: the squared l2 loss
        ``||f(w,b) - y||^2``; see :mod:`convexnn_pyomo.losses`); ``reduction='mean'`` divides by ``m``."""
        X, Y = check_data(X, Y, self.sizes[0], self.sizes[-1])
        fn = get_loss(loss)
        fn.check_targets(Y)
        total = float(np.sum(fn.value(self.forward_pass(X).z[-1], Y)))
        return total / X.shape[0] if reduction == "mean" else total

    def sensitivities(self, X, Y, reduction: str = "sum", sample_weight=None, fp: ForwardPass | None = None,
                      loss: str | Loss = "squared") -> list[np.ndarray]:
        """Backpropagated ``d loss / d z^l`` for every layer: ``out[l-1]`` has shape ``(n_l, m)``."""
        X, Y = check_data(X, Y, self.sizes[0], self.sizes[-1])
        fp = fp if fp is not None else self.forward_pass(X)
        wts = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
        delta = scale * get_loss(loss).gradient(fp.z[-1], Y) * wts  # dloss/dz^L
        deltas = [delta]
        for l in range(self.n_layers, 1, -1):
            delta = (self.weights[l - 1].T @ delta) * self.activation(l - 1).derivative(fp.z[l - 2])
            deltas.append(delta)
        return deltas[::-1]

    def loss_and_gradient(self, X, Y, reduction: str = "sum", sample_weight=None,
                          loss: str | Loss = "squared") -> tuple[float, np.ndarray]:
        """Loss and its gradient with respect to :meth:`get_flat` (backpropagation in numpy)."""
        X, Y = check_data(X, Y, self.sizes[0], self.sizes[-1])
        fn = get_loss(loss)
        fn.check_targets(Y)
        fp = self.forward_pass(X)
        wts = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
        value = scale * float(np.sum(wts * fn.value(fp.z[-1], Y)))
        deltas = self.sensitivities(X, Y, reduction, sample_weight, fp=fp, loss=fn)
        grads = [np.concatenate([(d @ fp.x[l].T).ravel(), d.sum(axis=1)]) for l, d in enumerate(deltas)]
        return value, np.concatenate(grads)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write sizes, activation names and parameters to an ``.npz`` file."""
        self._require_parameters()
        arrays = {f"w{l}": w for l, w in enumerate(self.weights, 1)}
        arrays.update({f"b{l}": b for l, b in enumerate(self.biases, 1)})
        np.savez(
            path,
            sizes=np.array(self.sizes),
            activations=np.array([a.name for a in self.activations]),
            **arrays,
        )

    @classmethod
    def load(cls, path: str | Path) -> "Network":
        with np.load(path, allow_pickle=False) as data:
            sizes = [int(n) for n in data["sizes"]]
            L = len(sizes) - 1
            return cls(
                sizes,
                [str(a) for a in data["activations"]],
                [data[f"w{l}"] for l in range(1, L + 1)],
                [data[f"b{l}"] for l in range(1, L + 1)],
            )

    # -- interop (convexnn_pyomo.interop) ------------------------------------------------------------
    def to_torch(self, dtype=None):
        """An equal ``torch.nn.Sequential`` (float64 by default): :func:`convexnn_pyomo.interop.to_torch`."""
        return to_torch(self, dtype)

    @classmethod
    def from_torch(cls, module) -> "Network":
        """A network from a ``torch.nn.Sequential``: :func:`convexnn_pyomo.interop.from_torch`."""
        return from_torch(module, network_cls=cls)

    def to_onnx(self, path: str | Path | None = None, dtype="float64", **kwds):
        """The network as an ONNX model, written to ``path`` when given:
        :func:`convexnn_pyomo.interop.to_onnx`.  ``dtype`` is ``"float64"`` (default, exact to
        round-off; what OMLT should read) or ``"float32"`` (what most ONNX runtimes are fed), by
        name or as a numpy dtype."""
        return to_onnx(self, path, dtype=dtype, **kwds)
