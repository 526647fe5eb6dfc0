"""Gradient baselines on the same :class:`Network`: full-batch Adam (PyTorch) and L-BFGS (SciPy).

PyTorch is used for Adam because it is the honest baseline the paper compares against; install it
with ``pip install torch==2.13.0`` (the CPU build, the ``baselines`` extra).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .interop import from_torch, to_torch
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
    loss: str = "squared",
) -> GradientResult:
    """Full-batch Adam on the (optionally sample-weighted) loss, from ``net``'s weights.

    The optimised loss is ``sum_j c_j l(f(x_j), y_j)`` with ``c_j = sample_weight_j / m``
    (``reduction="mean"``) or ``sample_weight_j``, and ``l`` the ``loss`` of
    :mod:`convexnn_pyomo.losses` (squared, logistic or softmax cross-entropy on the network's
    outputs, written in PyTorch); ``losses`` records the plain summed loss.
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
    module = to_torch(net, dtype)
    per_sample_loss = _torch_loss(torch, loss)
    opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas)
    losses = np.empty(steps)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed if seed is not None else 0)
    for s in range(steps):
        if random_weights is not None:
            g = torch.clamp(torch.randn(X.shape[0], generator=gen, dtype=dtype), min=0.0)
            wts = g * (X.shape[0] / torch.clamp(g.sum(), min=1e-12))
        opt.zero_grad()
        per_sample = per_sample_loss(module(Xt), Yt)
        (scale * (wts * per_sample).sum()).backward()
        opt.step()
        losses[s] = float(per_sample.sum().detach())
    seconds = time.perf_counter() - t0
    return GradientResult(from_torch(module), losses, seconds, steps)


def _torch_loss(torch, name: str):
    """Per-sample loss ``(outputs (m, n_L), targets (m, n_L)) -> (m,)`` in PyTorch, as in
    :mod:`convexnn_pyomo.losses`: squared error, logistic ``log(1 + e^z) - y z`` on the logits, or
    softmax cross-entropy ``logsumexp(z) - y.z`` with one-hot targets."""
    functions = {
        "squared": lambda z, y: ((z - y) ** 2).sum(dim=1),
        "logistic": lambda z, y: (torch.nn.functional.softplus(z) - y * z).sum(dim=1),
        "softmax": lambda z, y: torch.logsumexp(z, dim=1) - (y * z).sum(dim=1),
    }
    if name not in functions:
        raise ValueError(f"loss must be one of {sorted(functions)}, got {name!r}")
    return functions[name]


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


# -- gradient baselines with hard constraints (docs/constraints.md) -------------------------------


def _torch_problem(net: Network, X, Y, constraints):
    """``(torch, module, linear layers, X, Y, Xt, Yt, constraints)`` for the constrained baselines."""
    from .constraints import ResidualConstraint, as_hard_constraints

    torch = _torch()
    cons = as_hard_constraints(constraints)
    bad = [type(c).__name__ for c in cons if not isinstance(c, ResidualConstraint)]
    if bad:
        raise TypeError(f"the gradient baselines need constraints with residuals() (a ResidualConstraint), got {', '.join(bad)}")
    X, Y = check_data(X, Y, net.sizes[0], net.sizes[-1])
    module = to_torch(net, torch.float64)
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    return torch, module, linears, X, Y, torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64), cons


def _residual_parts(torch, cons, outputs, linears, X, Y):
    r"""The stacked residuals of ``cons`` at the module's outputs: ``(g, h)``, :math:`g \le 0`, :math:`h = 0`."""
    weights = [m.weight for m in linears]
    parts = {False: [], True: []}
    for c in cons:
        parts[c.equality].append(c.residuals(outputs, weights, X, Y).reshape(-1))
    empty = torch.zeros(0, dtype=outputs.dtype)
    return tuple(torch.cat(parts[eq]) if parts[eq] else empty for eq in (False, True))


def _adam_run(net: Network, X, Y, constraints, steps: int, lr: float, seed: int | None, step_fn) -> GradientResult:
    """Full-batch Adam on the mean squared loss; ``step_fn(torch, module, linears, X, Y, Xt, Yt, cons,
    optimizer)`` performs one step and returns the summed squared loss of the step."""
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError("steps must be a non-negative integer")
    torch, module, linears, X, Y, Xt, Yt, cons = _torch_problem(net, X, Y, constraints)
    if seed is not None:
        torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    losses = np.empty(steps)
    t0 = time.perf_counter()
    for s in range(steps):
        losses[s] = step_fn(torch, module, linears, X, Y, Xt, Yt, cons, opt)
    return GradientResult(from_torch(module), losses, time.perf_counter() - t0, steps)


def train_adam_penalty(net: Network, X, Y, constraints, weight: float = 1.0, steps: int = 2000, lr: float = 0.005,
                       seed: int | None = 0) -> GradientResult:
    r"""Adam on the mean squared loss plus an exact (l1) penalty of the constraints' residuals,

    .. math:: \frac{1}{m} \sum_j \|f(x_j) - y_j\|^2 + \rho \Big(\sum_k \max(0, g_k) + \sum_k |h_k|\Big),

    ``rho = weight``; ``constraints``: :class:`~convexnn_pyomo.constraints.ResidualConstraint` (s).
    No feasibility guarantee: for a large enough ``rho`` the penalty is exact at a local minimum,
    which Adam need not reach."""
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")

    def step(torch, module, linears, X, Y, Xt, Yt, cons, opt):
        opt.zero_grad()
        out = module(Xt)
        r2 = ((out - Yt) ** 2).sum(dim=1)
        g, h = _residual_parts(torch, cons, out, linears, X, Y)
        (r2.mean() + weight * (torch.relu(g).sum() + h.abs().sum())).backward()
        opt.step()
        return float(r2.sum().detach())

    return _adam_run(net, X, Y, constraints, steps, lr, seed, step)


def train_adam_projected(net: Network, X, Y, constraints, steps: int = 2000, lr: float = 0.005,
                         seed: int | None = 0) -> GradientResult:
    """Projected Adam: after every Adam step on the mean squared loss the weights and biases are mapped
    by each constraint's ``project(weights, biases)`` (cheap for weight signs: clamp; norm bounds:
    rescale; ``LinearOutputEquality(every_input=True)``: an orthogonal projection of the last layer),
    so the returned network meets them exactly.  Constraints without ``project`` are refused."""
    from .constraints import as_hard_constraints

    missing = [type(c).__name__ for c in as_hard_constraints(constraints) if not hasattr(c, "project")]
    if missing:
        raise ValueError(f"projected Adam needs a cheap projection; {', '.join(missing)} has none (use the penalty or Cooper)")

    def step(torch, module, linears, X, Y, Xt, Yt, cons, opt):
        opt.zero_grad()
        r2 = ((module(Xt) - Yt) ** 2).sum(dim=1)
        r2.mean().backward()
        opt.step()
        with torch.no_grad():
            for c in cons:
                weights, biases = c.project([m.weight for m in linears], [m.bias for m in linears])
                for m, w, b in zip(linears, weights, biases):
                    m.weight.copy_(w)
                    m.bias.copy_(b)
        return float(r2.sum().detach())

    return _adam_run(net, X, Y, constraints, steps, lr, seed, step)


def _cooper():
    try:
        import cooper
    except ImportError as exc:
        raise ImportError("the Cooper baseline needs cooper-optim: pip install cooper-optim") from exc
    return cooper


def train_cooper(net: Network, X, Y, constraints, dual_lr: float = 0.01, steps: int = 2000, lr: float = 0.005,
                 seed: int | None = 0) -> GradientResult:
    r"""Cooper's Lagrangian method (``cooper-optim`` 1.x): simultaneous gradient descent-ascent on

    .. math:: \frac{1}{m} \sum_j \|f(x_j) - y_j\|^2 + \lambda^\top g + \mu^\top h, \qquad \lambda \ge 0,

    Adam (``lr``) on the weights, SGD ascent (``dual_lr``) on one multiplier per residual.  The
    last iterate is returned; no feasibility guarantee on a nonconvex problem."""
    cooper = _cooper()
    torch, module, linears, X, Y, Xt, Yt, cons = _torch_problem(net, X, Y, constraints)
    with torch.no_grad():
        g0, h0 = _residual_parts(torch, cons, module(Xt), linears, X, Y)
    kinds = [(k, n) for k, n in (("INEQUALITY", g0.numel()), ("EQUALITY", h0.numel())) if n]
    if not kinds:
        raise ValueError("train_cooper needs at least one constraint residual on these data")

    class Problem(cooper.ConstrainedMinimizationProblem):
        def __init__(self):
            super().__init__()
            for kind, n in kinds:
                mult = cooper.multipliers.DenseMultiplier(num_constraints=n, dtype=torch.float64)
                setattr(self, kind.lower(), cooper.Constraint(getattr(cooper.ConstraintType, kind), multiplier=mult))

        def compute_cmp_state(self):
            out = module(Xt)
            r2 = ((out - Yt) ** 2).sum(dim=1)
            values = dict(zip(("INEQUALITY", "EQUALITY"), _residual_parts(torch, cons, out, linears, X, Y)))
            observed = {getattr(self, k.lower()): cooper.ConstraintState(violation=values[k]) for k, _ in kinds}
            return cooper.CMPState(loss=r2.mean(), observed_constraints=observed, misc={"summed": r2.sum().detach()})

    if seed is not None:
        torch.manual_seed(seed)
    cmp = Problem()
    opt = cooper.optim.SimultaneousOptimizer(
        cmp=cmp, primal_optimizers=torch.optim.Adam(module.parameters(), lr=lr),
        dual_optimizers=torch.optim.SGD(cmp.dual_parameters(), lr=dual_lr, maximize=True),
    )
    losses = np.empty(steps)
    t0 = time.perf_counter()
    for s in range(steps):
        losses[s] = float(opt.roll().cmp_state.misc["summed"])
    return GradientResult(from_torch(module), losses, time.perf_counter() - t0, steps)


__all__ += ["train_adam_penalty", "train_adam_projected", "train_cooper"]
