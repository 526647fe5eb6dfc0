"""Gradient baselines on the same :class:`Network`: full-batch Adam (PyTorch) and L-BFGS (SciPy).

PyTorch is used for Adam because it is the honest baseline the paper compares against; install it
with ``pip install torch==2.13.0`` (the CPU build, the ``baselines`` extra).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .network import Network, check_data

__all__ = ["GradientResult", "train_adam", "train_lbfgs", "torch_available"]


@dataclass
class GradientResult:
    network: Network
    losses: np.ndarray  # training loss (summed squared error, unweighted) after each logged step
    seconds: float
    steps: int


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "the Adam baseline needs PyTorch: pip install torch==2.13.0 (CPU build), "
            "or pip install -e .[baselines]"
        ) from exc
    return torch


def train_adam(
    net: Network,
    X,
    Y,
    steps: int = 2000,
    lr: float = 0.005,
    betas: tuple[float, float] = (0.9, 0.999),
    sample_weight=None,
    reduction: str = "mean",
    seed: int | None = 0,
    random_weights: str | None = None,
) -> GradientResult:
    """Full-batch Adam on the (optionally sample-weighted) squared loss, from ``net``'s weights.

    The optimised loss is ``sum_j c_j ||f(x_j) - y_j||^2`` with ``c_j = sample_weight_j / m``
    (``reduction="mean"``) or ``sample_weight_j``; ``losses`` records the plain summed loss.
    ``random_weights="rectified_gaussian"`` draws new weights every step, ``c_j = max(g_j, 0)``
    with ``g ~ N(0, 1)``, normalised to mean one (the "Random" baseline of Ren et al. 2018).
    """
    if random_weights not in (None, "rectified_gaussian"):
        raise ValueError(f"unknown random_weights {random_weights!r}")
    torch = _torch()
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError("steps must be a non-negative integer")
    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    if seed is not None:
        torch.manual_seed(seed)
    dtype = torch.float64
    Xt, Yt = torch.tensor(X, dtype=dtype), torch.tensor(Y, dtype=dtype)
    wts = torch.ones(X.shape[0], dtype=dtype) if sample_weight is None else torch.tensor(np.asarray(sample_weight, float), dtype=dtype)
    scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
    params = []
    for w, b in zip(net.weights, net.biases):
        params += [torch.tensor(w, dtype=dtype, requires_grad=True), torch.tensor(b, dtype=dtype, requires_grad=True)]
    acts = [_torch_activation(torch, a) for a in net.activations]

    def forward():
        h = Xt
        for l in range(net.n_layers):
            h = acts[l](h @ params[2 * l].T + params[2 * l + 1])
        return h

    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    losses = np.empty(steps)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed if seed is not None else 0)
    for s in range(steps):
        if random_weights is not None:
            g = torch.clamp(torch.randn(X.shape[0], generator=gen, dtype=dtype), min=0.0)
            wts = g * (X.shape[0] / torch.clamp(g.sum(), min=1e-12))
        opt.zero_grad()
        r2 = ((forward() - Yt) ** 2).sum(dim=1)
        loss = scale * (wts * r2).sum()
        loss.backward()
        opt.step()
        losses[s] = float(r2.sum().detach())
    seconds = time.perf_counter() - t0
    weights = [params[2 * l].detach().numpy().copy() for l in range(net.n_layers)]
    biases = [params[2 * l + 1].detach().numpy().copy() for l in range(net.n_layers)]
    out = Network(list(net.sizes), list(net.activations), weights, biases)
    return GradientResult(out, losses, seconds, steps)


def _torch_activation(torch, act):
    name = act.name
    if name == "identity":
        return lambda h: h
    if name == "sigmoid":
        return torch.sigmoid
    if name == "tanh":
        return torch.tanh
    if name == "softplus":
        tau = getattr(act, "tau", 1.0)
        return lambda h: torch.nn.functional.softplus(h, beta=tau)
    raise ValueError(f"no PyTorch version of activation {name!r}")


def train_lbfgs(net: Network, X, Y, max_iter: int = 2000) -> GradientResult:
    """Full-batch L-BFGS (SciPy) on the summed squared loss with numpy gradients."""
    from scipy.optimize import minimize

    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    losses: list[float] = []

    def fun(theta):
        loss, grad = net.with_flat(theta).loss_and_gradient(X, Y)
        losses.append(loss)
        return loss, grad

    t0 = time.perf_counter()
    res = minimize(fun, net.get_flat(), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return GradientResult(net.with_flat(res.x), np.array(losses), time.perf_counter() - t0, int(res.nit))
