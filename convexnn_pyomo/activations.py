"""Activation functions as objects, each with a difference-of-convex (DC) split.

Every activation ``h`` offers its value and derivative in numpy, a Pyomo expression, and a
split ``h = p - q`` with ``p`` and ``q`` convex (Proposition 1 of the paper).  The convex parts are
given as *lists of smooth pieces* whose pointwise maximum is the convex function:

* ``p(z) = max_k p_k(z)`` and ``q(z) = max_k q_k(z)``.

A convex inequality ``s >= p(z)`` is then the set of smooth inequalities ``s >= p_k(z)`` for every
``k``, which every solver interface understands (NL files, Gurobi, SCIP, tangent cuts).  For the
paper's sigmoid split, built from the piecewise function ``hbar``, the pieces are

* ``p(z) = max(sigmoid(z) - z/4 - 1/2, 0)`` and ``q(z) = max(-sigmoid(z), -z/4 - 1/2)``,

which equal ``hbar(z) - z/4 - 1/2`` and ``hbar(-z) - 1`` exactly (see ``docs/formulation.md``).
Convex activations (softplus, ReLU) split as ``p = h``, ``q = 0``; ReLU's ``p`` is the maximum of
the linear pieces ``0`` and ``z``, so its DC inequalities (7) are linear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyomo.environ as pyo

__all__ = [
    "Activation",
    "ConvexActivation",
    "Identity",
    "Sigmoid",
    "Softplus",
    "Tanh",
    "ReLU",
    "AutoDCActivation",
    "get_activation",
    "register_activation",
    "available_activations",
]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def softplus_expr(t: Any) -> Any:
    r""":math:`\log(1 + e^t)` as a Pyomo expression that neither overflows nor loses its derivatives
    for large :math:`|t|`: :math:`\max(t, 0) + \log(1 + e^{-|t|})`, with the max written
    :math:`(t + |t|)/2`.  The sum is smooth although its two terms are not."""
    return 0.5 * (t + abs(t)) + pyo.log(1.0 + pyo.exp(-abs(t)))


class Activation:
    """Base class of an element-wise activation ``h`` with a DC split ``h = p - q``.

    Subclasses implement ``value``, ``derivative``, ``pyomo_expr`` and the pieces of ``p`` and
    ``q``.  An activation is *linear* when ``h(z) = a z + c``; linear activations are kept as exact
    equalities by the relaxations (no DC variables are needed).
    """

    name: str = "activation"
    linear: bool = False
    #: ``sup |h''|`` when finite (``None`` when unbounded or unknown)
    second_derivative_bound: float | None = None

    # -- numpy ---------------------------------------------------------------------------------
    def value(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def derivative(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def p(self, z: np.ndarray) -> np.ndarray:
        """Convex part ``p`` (numpy)."""
        raise NotImplementedError

    def q(self, z: np.ndarray) -> np.ndarray:
        """Convex part ``q`` (numpy); ``p - q = h``."""
        raise NotImplementedError

    def p_derivative(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def q_derivative(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- pyomo ---------------------------------------------------------------------------------
    def pyomo_expr(self, z: Any) -> Any:
        """``h(z)`` as a Pyomo expression of the scalar expression ``z``."""
        raise NotImplementedError

    def elementary_expr(self, z: Any) -> Any:
        """``h(z)`` from ``exp``, ``log``, ``+ - * /`` only: the form global solvers (Gurobi's
        nonlinear constraints, SCIP's NL reader) accept.  Use it on bounded variables only."""
        return self.pyomo_expr(z)

    def p_pieces(self, z: Any) -> list[Any]:
        """Smooth Pyomo expressions whose maximum is ``p(z)``."""
        raise NotImplementedError

    def q_pieces(self, z: Any) -> list[Any]:
        """Smooth Pyomo expressions whose maximum is ``q(z)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.__dict__.items()))))


class ConvexActivation(Activation):
    """A convex activation: ``p = h``, ``q = 0`` (subclasses give ``value``, ``derivative``,
    ``pyomo_expr`` and the pieces of ``p``)."""

    def p(self, z):
        return self.value(z)

    def q(self, z):
        return np.zeros_like(np.asarray(z, dtype=float))

    def p_derivative(self, z):
        return self.derivative(z)

    def q_derivative(self, z):
        return np.zeros_like(np.asarray(z, dtype=float))

    def q_pieces(self, z):
        return [0.0]


class Identity(ConvexActivation):
    """``h(z) = z``; the output layer's activation.  Split ``p = z``, ``q = 0``."""

    name = "identity"
    linear = True
    second_derivative_bound = 0.0

    def value(self, z):
        return np.asarray(z, dtype=float)

    def derivative(self, z):
        return np.ones_like(np.asarray(z, dtype=float))

    def pyomo_expr(self, z):
        return z

    def p_pieces(self, z):
        return [z]


class Sigmoid(Activation):
    r"""Logistic sigmoid with the paper's split.

    .. math::
        \bar h(z) = \begin{cases} \sigma(z) & z \le 0 \\ z/4 + 1/2 & z > 0 \end{cases},\quad
        p(z) = \bar h(z) - z/4 - 1/2 = \max(\sigma(z) - z/4 - 1/2,\ 0),\quad
        q(z) = \bar h(-z) - 1 = \max(-\sigma(z),\ -z/4 - 1/2).
    """

    name = "sigmoid"
    second_derivative_bound = 1.0 / (6.0 * math.sqrt(3.0))

    def value(self, z):
        return _sigmoid(z)

    def derivative(self, z):
        s = _sigmoid(z)
        return s * (1.0 - s)

    def p(self, z):
        z = np.asarray(z, dtype=float)
        return np.maximum(_sigmoid(z) - z / 4.0 - 0.5, 0.0)

    def q(self, z):
        z = np.asarray(z, dtype=float)
        return np.maximum(-_sigmoid(z), -z / 4.0 - 0.5)

    def p_derivative(self, z):
        z = np.asarray(z, dtype=float)
        s = _sigmoid(z)
        return np.where(z <= 0, s * (1.0 - s) - 0.25, 0.0)

    def q_derivative(self, z):
        z = np.asarray(z, dtype=float)
        s = _sigmoid(z)
        return np.where(z >= 0, -s * (1.0 - s), -0.25)

    def pyomo_expr(self, z):
        # sigma(z) = (1 + tanh(z/2)) / 2: no overflow of exp(-z) and its derivatives for large |z|
        return 0.5 + 0.5 * pyo.tanh(0.5 * z)

    def elementary_expr(self, z):
        return 1.0 / (1.0 + pyo.exp(-z))

    def p_pieces(self, z):
        return [0.5 * pyo.tanh(0.5 * z) - z / 4.0, 0.0]

    def q_pieces(self, z):
        return [-0.5 - 0.5 * pyo.tanh(0.5 * z), -z / 4.0 - 0.5]


class Softplus(ConvexActivation):
    r"""``h(z) = log(1 + exp(tau z)) / tau``, convex itself: ``p = h``, ``q = 0``."""

    name = "softplus"

    def __init__(self, tau: float = 1.0):
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"softplus needs a positive finite tau, got {tau!r}")
        self.tau = float(tau)
        self.second_derivative_bound = self.tau / 4.0

    def value(self, z):
        return np.logaddexp(0.0, self.tau * np.asarray(z, dtype=float)) / self.tau

    def derivative(self, z):
        return _sigmoid(self.tau * np.asarray(z, dtype=float))

    def pyomo_expr(self, z):
        return softplus_expr(self.tau * z) / self.tau

    def elementary_expr(self, z):
        return pyo.log(1.0 + pyo.exp(self.tau * z)) / self.tau

    def p_pieces(self, z):
        return [self.pyomo_expr(z)]

    def __repr__(self):
        return f"Softplus(tau={self.tau})"


class ReLU(ConvexActivation):
    r"""``h(z) = max(z, 0)``, convex itself: ``p = h``, ``q = 0``.

    ``p`` is the maximum of the linear pieces ``0`` and ``z``, so the DC inequalities (7) read
    :math:`(u + x)/2 \ge 0`, :math:`(u + x)/2 \ge z` and :math:`(u - x)/2 \ge 0`: linear, smooth
    for Ipopt, with no second-derivative bound needed (ReLU has none: it has a kink).  At the
    kink the derivative is taken as ``0`` (a subgradient, which is all the regularizer (8) needs).
    For global solvers the exact (2c) is :math:`(z + |z|)/2` (SCIP's NL reader and Gurobi both
    take ``abs``) or the mixed-integer big-M form of ``convexnn.relu_bigm``.
    """

    name = "relu"

    def value(self, z):
        return np.maximum(np.asarray(z, dtype=float), 0.0)

    def derivative(self, z):
        return (np.asarray(z, dtype=float) > 0).astype(float)

    def pyomo_expr(self, z):
        return 0.5 * (z + abs(z))

    def p_pieces(self, z):
        return [0.0, z]


#: names whose activation has an exact piecewise-linear convex split (no automatic split)
_CONVEX_PIECEWISE_LINEAR = ("relu",)


class AutoDCActivation(Activation):
    r"""Any activation with bounded second derivative, split automatically.

    With ``c = sup |h''|``: ``p(z) = h(z) + c z^2 / 2`` and ``q(z) = c z^2 / 2``, both convex
    because ``p'' = h'' + c >= 0``.
    """

    def __init__(
        self,
        name: str,
        value: Callable[[np.ndarray], np.ndarray],
        derivative: Callable[[np.ndarray], np.ndarray],
        pyomo_expr: Callable[[Any], Any],
        second_derivative_bound: float | None,
    ):
        if name.lower() in _CONVEX_PIECEWISE_LINEAR:
            raise ValueError(
                f"{name!r} is convex and piecewise linear: it needs no automatic DC split (and has no "
                f"bound on its second derivative); use get_activation({name.lower()!r}), whose split is "
                "p = max(0, z), q = 0 with linear pieces"
            )
        if second_derivative_bound is None or not math.isfinite(second_derivative_bound):
            raise ValueError(
                f"activation {name!r} has no finite bound on its second derivative, so it has no "
                "automatic DC split (Proposition 1 needs sup|h''| < inf); give an explicit split "
                "by subclassing convexnn_pyomo.Activation"
            )
        if second_derivative_bound < 0:
            raise ValueError("second_derivative_bound must be >= 0")
        self.name = name
        self._value = value
        self._derivative = derivative
        self._pyomo_expr = pyomo_expr
        self.second_derivative_bound = float(second_derivative_bound)

    @property
    def c(self) -> float:
        return self.second_derivative_bound

    def value(self, z):
        return self._value(np.asarray(z, dtype=float))

    def derivative(self, z):
        return self._derivative(np.asarray(z, dtype=float))

    def p(self, z):
        z = np.asarray(z, dtype=float)
        return self.value(z) + 0.5 * self.c * z**2

    def q(self, z):
        z = np.asarray(z, dtype=float)
        return 0.5 * self.c * z**2

    def p_derivative(self, z):
        z = np.asarray(z, dtype=float)
        return self.derivative(z) + self.c * z

    def q_derivative(self, z):
        return self.c * np.asarray(z, dtype=float)

    def pyomo_expr(self, z):
        return self._pyomo_expr(z)

    def p_pieces(self, z):
        return [self._pyomo_expr(z) + 0.5 * self.c * z**2]

    def q_pieces(self, z):
        return [0.5 * self.c * z**2]

    def __eq__(self, other):
        return isinstance(other, AutoDCActivation) and (self.name, self.c) == (other.name, other.c)

    def __hash__(self):
        return hash(("auto", self.name, self.c))

    def __repr__(self):
        return f"AutoDCActivation({self.name!r}, c={self.c:.6g})"


def _tanh_derivative(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


class Tanh(AutoDCActivation):
    """Hyperbolic tangent, ``sup |tanh''| = 4 / (3 sqrt 3)``, with the automatic split."""

    def __init__(self):
        super().__init__(
            "tanh",
            np.tanh,
            _tanh_derivative,  # a module-level function: a Tanh network pickles
            pyo.tanh,
            4.0 / (3.0 * math.sqrt(3.0)),
        )

    def elementary_expr(self, z):
        return 1.0 - 2.0 / (pyo.exp(2.0 * z) + 1.0)

    def __repr__(self):
        return "Tanh()"


_REGISTRY: dict[str, Callable[[], Activation]] = {
    "relu": ReLU,
    "identity": Identity,
    "linear": Identity,
    "sigmoid": Sigmoid,
    "softplus": Softplus,
    "tanh": Tanh,
}


def register_activation(name: str, factory: Callable[[], Activation]) -> None:
    """Make ``get_activation(name)`` return ``factory()``."""
    _REGISTRY[name.lower()] = factory


def available_activations() -> list[str]:
    return sorted(_REGISTRY)


def get_activation(spec: str | Activation) -> Activation:
    """Return an :class:`Activation` for a name or pass an instance through."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str) and spec.lower() in _REGISTRY:
        return _REGISTRY[spec.lower()]()
    raise ValueError(
        f"unknown activation {spec!r}; known names: {', '.join(available_activations())} "
        "(or pass a convexnn_pyomo.Activation instance)"
    )


def as_activation_list(specs: Sequence[str | Activation]) -> list[Activation]:
    return [get_activation(s) for s in specs]
