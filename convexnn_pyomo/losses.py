r"""Training losses on the network's outputs (logits) :math:`z^L`, each convex in :math:`z^L`.

A loss is a sum over samples of a per-sample term :math:`\ell(z_{*j}, y_j)`; every loss offers its
per-sample values and gradient in numpy, a Pyomo expression for one sample, and the map from
logits to predictions:

``squared`` (:class:`SquaredLoss`, the paper's (1))
    :math:`\ell = \|z - y\|^2`; predictions ``z``.
``logistic`` (:class:`LogisticLoss`, binary cross-entropy on logits)
    :math:`\ell = \sum_i \log(1 + e^{z_i}) - y_i z_i` with labels :math:`y_i \in \{0, 1\}` (or in
    :math:`[0, 1]`), one output per binary label; predictions :math:`\sigma(z)`.
``softmax`` (:class:`SoftmaxLoss`, multi-class cross-entropy on logits)
    :math:`\ell = \log \sum_i e^{z_i} - y \cdot z` with one-hot (or probability) rows ``y``, one
    output per class; predictions :math:`\mathrm{softmax}(z)`.

The Pyomo forms avoid overflow for large logits (Ipopt's iterates do reach them):
:math:`\log(1 + e^t) = \max(t, 0) + \log(1 + e^{-|t|})` and
:math:`\log\sum_i e^{z_i} = c + \log \sum_i e^{z_i - c}` with :math:`c = \max_i z_i` written with
``abs``.  Both are smooth although their parts are not (the derivative of the whole in ``c`` is
identically zero).  ``elementary_expr`` gives the textbook forms (``exp``/``log`` only) for global
solvers on bounded variables.  See ``docs/formulation.md`` for the exactness weights of each loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import Any

import numpy as np
import pyomo.environ as pyo

from .activations import _sigmoid, softplus_expr

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "SoftmaxLoss", "LOSSES", "get_loss", "available_losses"]


class Loss:
    """Base class of a loss :math:`\\sum_j \\ell(z_{*j}, y_j)`, convex in the logits ``z``.

    Layouts: ``z`` is ``(n_L, m)`` (one column per sample, as :class:`~.network.ForwardPass`),
    ``Y`` is ``(m, n_L)`` (scikit-learn layout, as :func:`~.network.check_data` returns it).
    """

    name: str = "loss"
    #: largest eigenvalue of the per-sample Hessian in ``z``, over all ``z`` (its curvature)
    curvature: float = np.inf
    #: the curvature vanishes as ``|z|`` grows (logistic, softmax): a round's relaxed outputs can then
    #: drift far along the output biases (a 10-class Yeast round never converged), so the
    #: regularizer anchors them with :math:`\mu_z^L\|b^L - \check b^L\|^2`
    #: (:class:`~convexnn_pyomo.transformations.regularize.Regularize`)
    saturating: bool = False

    def value(self, z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Per-sample losses, shape ``(m,)``."""
        raise NotImplementedError

    def gradient(self, z: np.ndarray, Y: np.ndarray) -> np.ndarray:
        r""":math:`\partial \ell_j / \partial z_{ij}`, shape ``(n_L, m)``."""
        raise NotImplementedError

    def pyomo_expr(self, z_col: Sequence[Any], y_col: Sequence[float]) -> Any:
        """The loss of one sample: ``z_col`` its ``n_L`` output expressions, ``y_col`` its labels."""
        raise NotImplementedError

    def elementary_expr(self, z_col: Sequence[Any], y_col: Sequence[float]) -> Any:
        """:meth:`pyomo_expr` from ``exp``, ``log``, ``+ - * /`` only, for global solvers."""
        return self.pyomo_expr(z_col, y_col)

    def predict(self, z: np.ndarray, axis: int = 0) -> np.ndarray:
        """Predictions from logits ``z`` whose outputs run along ``axis`` (0 for ``(n_L, m)``,
        1 for :meth:`Network.predict`'s ``(m, n_L)``); same shape as ``z``."""
        return np.asarray(z, dtype=float)

    def check_targets(self, Y: np.ndarray) -> None:
        """Raise a ``ValueError`` naming the fix when ``Y (m, n_L)`` does not suit the loss."""

    def constant_output(self, mean_y: np.ndarray) -> np.ndarray | None:
        """The output ``(n_L,)`` that ignores the inputs with the least loss, from the targets' column
        means (the adaptive schedule's scale for its relative stop); None when the loss has no such
        formula."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self).__name__)


def _columns(z, Y) -> tuple[np.ndarray, np.ndarray]:
    """``z`` and ``Y.T``, both ``(n_L, m)`` floats (a 1-D ``Y`` is one output)."""
    z = np.asarray(z, dtype=float)
    Y = np.asarray(Y, dtype=float)
    Yt = (Y[:, None] if Y.ndim == 1 else Y).T
    if z.shape != Yt.shape:
        raise ValueError(f"logits z {z.shape} (outputs x samples) and labels Y {Yt.T.shape} (samples x outputs) do not match")
    return z, Yt


class SquaredLoss(Loss):
    r""":math:`\ell = \|z - y\|^2` (the paper's loss (1))."""

    name = "squared"
    curvature = 2.0

    def value(self, z, Y):
        z, Yt = _columns(z, Y)
        r = z - Yt
        return np.sum(r * r, axis=0)

    def gradient(self, z, Y):
        z, Yt = _columns(z, Y)
        return 2.0 * (z - Yt)

    def pyomo_expr(self, z_col, y_col):
        return sum((zi - yi) ** 2 for zi, yi in zip(z_col, y_col))

    def constant_output(self, mean_y):
        return np.asarray(mean_y, dtype=float)  # the mean minimises the summed squares


class LogisticLoss(Loss):
    r""":math:`\ell = \sum_i \log(1 + e^{z_i}) - y_i z_i`, binary cross-entropy on the logits, one
    output per binary label (0/1, or a probability in [0, 1]); curvature :math:`\sigma' \le 1/4`."""

    name = "logistic"
    curvature = 0.25
    saturating = True

    def value(self, z, Y):
        z, Yt = _columns(z, Y)
        return np.sum(np.logaddexp(0.0, z) - Yt * z, axis=0)

    def gradient(self, z, Y):
        z, Yt = _columns(z, Y)
        return _sigmoid(z) - Yt

    def pyomo_expr(self, z_col, y_col):
        return sum(softplus_expr(zi) - yi * zi for zi, yi in zip(z_col, y_col))

    def elementary_expr(self, z_col, y_col):
        return sum(pyo.log(1.0 + pyo.exp(zi)) - yi * zi for zi, yi in zip(z_col, y_col))

    def predict(self, z, axis=0):
        return _sigmoid(np.asarray(z, dtype=float))

    def constant_output(self, mean_y):
        p = np.clip(np.asarray(mean_y, dtype=float), 1e-12, 1.0 - 1e-12)
        return np.log(p) - np.log1p(-p)  # the logit of each label's rate

    def check_targets(self, Y):
        Y = np.asarray(Y, dtype=float)
        if Y.size and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(
                f"the logistic loss needs labels 0/1 (or probabilities in [0, 1]), got values in "
                f"[{Y.min():g}, {Y.max():g}]; encode the two classes as 0 and 1, use loss='softmax' with "
                "one-hot Y for several classes, or loss='squared' for regression"
            )


def _max_expr(a, b):
    """:math:`\\max(a, b) = (a + b + |a - b|)/2` as a Pyomo expression."""
    return 0.5 * (a + b + abs(a - b))


class SoftmaxLoss(Loss):
    r""":math:`\ell = \log\sum_i e^{z_i} - y\cdot z`, cross-entropy of :math:`\mathrm{softmax}(z)`
    against one-hot (or probability) rows ``y``, one output per class.  Convex in ``z``: its
    Hessian :math:`\mathrm{diag}(\pi) - \pi\pi^\top` (:math:`\pi = \mathrm{softmax}(z)`) is PSD with
    eigenvalues at most 1/2."""

    name = "softmax"
    curvature = 0.5
    saturating = True

    @staticmethod
    def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def value(self, z, Y):
        z, Yt = _columns(z, Y)
        c = z.max(axis=0)
        return c + np.log(np.exp(z - c).sum(axis=0)) - np.sum(Yt * z, axis=0)

    def gradient(self, z, Y):
        z, Yt = _columns(z, Y)
        return self._softmax(z, 0) - Yt

    def pyomo_expr(self, z_col, y_col):
        c = reduce(_max_expr, z_col)
        return c + pyo.log(sum(pyo.exp(zi - c) for zi in z_col)) - sum(yi * zi for zi, yi in zip(z_col, y_col))

    def elementary_expr(self, z_col, y_col):
        return pyo.log(sum(pyo.exp(zi) for zi in z_col)) - sum(yi * zi for zi, yi in zip(z_col, y_col))

    def predict(self, z, axis=0):
        return self._softmax(np.asarray(z, dtype=float), axis)

    def constant_output(self, mean_y):
        return np.log(np.clip(np.asarray(mean_y, dtype=float), 1e-12, None))  # softmax gives the class frequencies

    def check_targets(self, Y):
        Y = np.asarray(Y, dtype=float)
        fix = "one column per class with one-hot rows, e.g. Y = np.eye(n_classes)[labels]"
        if Y.ndim != 2 or Y.shape[1] < 2:
            raise ValueError(f"the softmax loss needs {fix} (and a network with one output per class); "
                             f"got Y of shape {Y.shape}; for two classes loss='logistic' takes 0/1 labels")
        if Y.min() < 0 or not np.allclose(Y.sum(axis=1), 1.0, rtol=0, atol=1e-9):
            raise ValueError(f"the softmax loss needs rows of Y that are one-hot (or probabilities summing to 1): {fix}")


#: loss name -> class
LOSSES: dict[str, type[Loss]] = {"squared": SquaredLoss, "logistic": LogisticLoss, "softmax": SoftmaxLoss}


def available_losses() -> list[str]:
    return sorted(LOSSES)


def get_loss(spec: str | Loss) -> Loss:
    """A :class:`Loss` for a name (``squared``, ``logistic``, ``softmax``) or pass an instance through."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.lower() in LOSSES:
        return LOSSES[spec.lower()]()
    raise ValueError(
        f"unknown loss {spec!r}; known names: {', '.join(available_losses())} (or pass a convexnn_pyomo.losses.Loss instance)"
    )
