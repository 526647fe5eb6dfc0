r"""scikit-learn estimators trained by Algorithm 1: :class:`ConvexNNRegressor` and :class:`ConvexNNClassifier`.

Both build a fully connected network ``n_features -> hidden_layer_sizes -> n_outputs`` (He
initialisation from ``random_state``), train it with :func:`~convexnn_pyomo.training.train` and keep
the result as ``network_``, a :class:`~convexnn_pyomo.network.Network` on the *raw* inputs: with
``scale=True`` the inputs are min-max scaled to [0, 1] for training (the regressor also standardises
its targets) and the scaling is folded into the first and last layers afterwards
(:func:`_fold_scaling`), so ``network_.predict(X)`` is the estimator's output and ``network_.to_onnx``
exports what the estimator predicts.

Hard constraints keep the meaning they have on the data the estimator is given.  Their group
labels, callable per-point bounds and right-hand sides are computed from the raw features (each
:class:`~convexnn_pyomo.constraints.ResidualConstraint` is trained as a copy with
:meth:`~convexnn_pyomo.constraints.ResidualConstraint.on_inputs` mapping the scaled rows back).  The
regressor standardises its targets and trains each constraint in their units
(:meth:`~convexnn_pyomo.constraints.ResidualConstraint.on_outputs`: output bounds, parities, linear
equalities, one-output group losses, monotone signs); when one has no such form (weight norms, a
user's Pyomo rows, group losses over outputs of different scales) it trains on the raw targets, so
bounds stay in the targets' units.  Rows on the weights (:class:`WeightNormBounds`, a Lipschitz
bound) constrain the network on the scaled inputs: its first layer is ``w / scale`` on the raw ones.

Losses.  The regressor trains the squared loss.  The classifier trains, on the network's outputs
:math:`z`:

* ``loss="logistic"`` (two classes, the default): one output, the logit; :math:`P(y = 1) = \sigma(z)`;
* ``loss="softmax"`` (the default from three classes): one output per class, one-hot targets;
  probabilities :math:`\mathrm{softmax}(z)`;
* ``loss="squared"`` (two classes): one output fitted to 0/1 targets; the decision function is
  :math:`z - 1/2` and the probability :math:`\sigma(s (z - 1/2))` with the slope :math:`s > 0`
  fitted to the training data by maximum likelihood (temperature scaling: strictly increasing in
  :math:`z`, 1/2 at the decision threshold).
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .activations import get_activation
from .algorithms import RoundSolver, RunStatus, SequentialRelaxation
from .constraints import DecisionParity, GroupLossBounds, ResidualConstraint, as_hard_constraints
from .network import Network

__all__ = ["ConvexNNClassifier", "ConvexNNRegressor"]

#: run statuses that leave the network short of what ``rounds`` promised: warned about
_FAILED = (RunStatus.SOLVER_FAILED, RunStatus.STALLED, RunStatus.INFEASIBLE)
#: estimator parameters that are :class:`SequentialRelaxation` options (or make one): ``train_options``
#: may not repeat them
_OWN_TRAIN_KEYWORDS = ("rounds", "schedule", "hard_constraints", "solver", "round_solver", "time_limit", "progress",
                       "loss")
#: options ``train`` took before the schedule and round-solver objects, and where they went
_MOVED_OPTIONS = {
    **dict.fromkeys(("eta", "epsilon", "patience", "loss_fraction", "mu"),
                    "a schedule option: schedule=AdaptiveSchedule(eta=..., rel_tol=..., patience=..., "
                    "loss_fraction=..., mu=...) or PaperSchedule(eta=..., epsilon=..., mu=...) (convexnn_pyomo.algorithms)"),
    **dict.fromkeys(("solver_options", "round_time_limit", "relaxation", "backend", "ph_options"),
                    "a round-solver option: round_solver=SchurRounds(time_limit=..., options=...) or "
                    "PyomoRounds(solver=..., time_limit=..., options=..., relaxation=...) (convexnn_pyomo.algorithms)"),
}


def _seed(random_state) -> int:
    """An integer seed for :meth:`Network.init_he` from a scikit-learn ``random_state``."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _scaling(A: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, scale)`` per column with ``(A - shift) / scale`` in [0, 1] (``minmax``) or
    standardised (``standard``); a constant column gets scale 1."""
    if kind == "minmax":
        shift, scale = A.min(axis=0), A.max(axis=0) - A.min(axis=0)
    else:
        shift, scale = A.mean(axis=0), A.std(axis=0)
    return shift, np.where(scale > 0, scale, 1.0)


def _no_scaling(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(A.shape[1]), np.ones(A.shape[1])


def _on_raw_inputs(constraints, shift: np.ndarray, scale: np.ndarray) -> list:
    """Every :class:`ResidualConstraint` as a copy whose data come from the raw rows ``Z scale + shift``
    of the scaled rows ``Z`` it is trained on; other hard constraints (a user's Pyomo rows) as given."""
    def raw(Z):
        return Z * scale + shift

    return [c.on_inputs(raw) if isinstance(c, ResidualConstraint) else c for c in as_hard_constraints(constraints)]


#: where the classifier's decision thresholds its output, per loss (the logit at 0; 0/1 targets at 1/2)
_DECISION_THRESHOLD = {"logistic": 0.0, "squared": 0.5}


def _check_constraint_units(constraints, loss: str) -> None:
    """Warn when a constraint's units are not the classifier's: a :class:`DecisionParity` smoothing
    decisions at another threshold than the classifier decides at (its default 0.5 on a logistic
    classifier's logit bounds the rates of ``P(y = 1) > 0.62``: met trivially at rates 0, accuracy
    0.41, ``benchmarks/estimator_decision_parity.py``), a :class:`GroupLossBounds` on logits."""
    decide = _DECISION_THRESHOLD.get(loss)
    for c in as_hard_constraints(constraints):
        if isinstance(c, DecisionParity) and decide is not None and c.threshold != decide:
            warnings.warn(f"{c!r} smooths decisions at output {c.threshold:g}, but this classifier (loss={loss!r}) "
                          f"decides at {decide:g}: its bound is not on the estimator's predictions; pass "
                          f"threshold={decide:g}", UserWarning, stacklevel=3)
        if isinstance(c, GroupLossBounds) and loss != "squared":
            warnings.warn(f"{c!r} bounds each group's mean squared error of the outputs, which are logits with "
                          f"loss={loss!r}, not probabilities: its kappa is in squared logits; use loss='squared' "
                          "for a bound on the groups' squared errors of 0/1 predictions", UserWarning, stacklevel=3)


def _on_scaled_outputs(constraints, shift: np.ndarray, scale: np.ndarray) -> list | None:
    """Every hard constraint in the units of the standardised targets (``on_outputs``), or None when
    one has no such form (a user's Pyomo rows, weight norms, misfit bounds); as given without scaling."""
    out = as_hard_constraints(constraints)
    if np.all(shift == 0.0) and np.all(scale == 1.0):
        return out
    mapped = [c.on_outputs(shift, scale) if isinstance(c, ResidualConstraint) else None for c in out]
    return None if any(c is None for c in mapped) else mapped


def _fold_scaling(net: Network, x_shift, x_scale, y_shift, y_scale) -> Network:
    r"""``net``, trained on :math:`\tilde x = (x - s) / r` and :math:`\tilde y = (y - t) / \rho`, as a
    network on the raw data:

    .. math::
        w^1 \leftarrow w^1 \mathrm{diag}(r)^{-1},\quad b^1 \leftarrow b^1 - w^1 \mathrm{diag}(r)^{-1} s,\quad
        w^L \leftarrow \mathrm{diag}(\rho) w^L,\quad b^L \leftarrow \rho \circ b^L + t.
    """
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    weights[0] = weights[0] / x_scale
    biases[0] = biases[0] - weights[0] @ x_shift
    weights[-1] = np.asarray(y_scale)[:, None] * weights[-1]
    biases[-1] = y_scale * biases[-1] + y_shift
    return Network(list(net.sizes), list(net.activations), weights, biases)


def _calibration_slope(d: np.ndarray, y01: np.ndarray) -> float:
    r"""The slope :math:`s \in [10^{-2}, 10^3]` maximising :math:`\sum_j \log \sigma(\pm s\, d_j)`
    (sign :math:`+` for class 1): temperature scaling of the decision values ``d``."""
    margin = (2.0 * y01 - 1.0) * d
    res = minimize_scalar(lambda t: float(np.mean(np.logaddexp(0.0, -np.exp(t) * margin))),
                          bounds=(np.log(1e-2), np.log(1e3)), method="bounded")
    return float(np.exp(res.x))


class _ConvexNNBase(BaseEstimator):
    """Parameters, their validation and the training shared by both estimators.

    Parameters
    ----------
    hidden_layer_sizes: nodes per hidden layer, e.g. ``(6,)`` or ``(6, 6)``; ``()`` gives a linear model.
    activation: hidden activation: a name (``sigmoid``, ``tanh``, ``softplus``, ``relu``, ...) or an
        :class:`~convexnn_pyomo.activations.Activation`.
    loss: ``None`` (the estimator's default, see the module docstring) or a loss name.
    rounds: maximum number of convex rounds of Algorithm 1 (``train(rounds=...)``).
    schedule: ``"adaptive"``, ``"paper"`` or a configured schedule, e.g. ``AdaptiveSchedule(eta=4)``
        (``train(schedule=...)``; eta, mu and the stop rule are the schedule's).
    hard_constraints: passed to ``train``; they mean on the raw features and targets what they
        mean on the data given to ``fit`` (module docstring).
    solver: a Pyomo NLP solver name: the rounds are then the Pyomo model on every sample solved by it
        (``round_solver=solver``); ``None`` (default): as ``round_solver`` says.
    round_solver: ``"auto"`` (default: the structured round by the Schur interior point), ``"schur"``,
        ``"pyomo"`` (the Pyomo model, solved by :func:`~convexnn_pyomo.solvers.default_nlp_solver`) or
        a configured :class:`~convexnn_pyomo.algorithms.RoundSolver` (``train(round_solver=...)``).
    time_limit: seconds for the whole training run (``None``: no limit).
    scale: min-max scale the inputs (and standardise regression targets, unless a hard constraint
        has no form in their units) for training, folded into ``network_`` afterwards.
    train_options: further options of :class:`~convexnn_pyomo.algorithms.SequentialRelaxation`
        (``target_loss``, ``shards``, ``warm_start``, ``max_failures``, ``constraint_tol``,
        ``exact_tol``), not those given by the parameters above.
    random_state: seed of the He initialisation (int, ``RandomState`` or ``None``).
    verbose: print one line per round.
    """

    def __init__(self, hidden_layer_sizes=(6,), activation="sigmoid", loss=None, rounds=20, schedule="adaptive",
                 hard_constraints=None, solver=None, round_solver="auto", time_limit=None, scale=True,
                 train_options=None, random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.rounds = rounds
        self.schedule = schedule
        self.hard_constraints = hard_constraints
        self.solver = solver
        self.round_solver = round_solver
        self.time_limit = time_limit
        self.scale = scale
        self.train_options = train_options
        self.random_state = random_state
        self.verbose = verbose

    # -- validation ------------------------------------------------------------------------------
    def _hidden_sizes(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, numbers.Integral) else sizes
        try:
            sizes = tuple(sizes)
        except TypeError:
            sizes = None
        if sizes is None or isinstance(self.hidden_layer_sizes, str) or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes
        ):
            raise ValueError(f"hidden_layer_sizes must be positive integers, e.g. (6,) or (6, 6); got {self.hidden_layer_sizes!r}")
        return tuple(int(n) for n in sizes)

    def _round_solver(self):
        """``round_solver`` for :class:`SequentialRelaxation`: a ``solver`` name implies the Pyomo rounds."""
        rs = self.round_solver
        if not (isinstance(rs, RoundSolver) or (isinstance(rs, str) and rs)):
            raise ValueError(f"round_solver must be 'auto', 'schur', 'pyomo', a Pyomo solver name or a RoundSolver, "
                             f"got {rs!r}")
        if self.solver is None:
            return rs
        if not isinstance(self.solver, str):
            raise ValueError(f"solver must be None or a Pyomo solver name, got {self.solver!r}")
        if not (isinstance(rs, str) and rs in ("auto", "pyomo")):
            raise ValueError(f"solver={self.solver!r} names the Pyomo solver of the Pyomo rounds; round_solver={rs!r} "
                             "cannot take it: leave round_solver='auto' (or 'pyomo'), or configure the round solver "
                             "alone, e.g. PyomoRounds(solver=...)")
        return self.solver

    def _train_kwargs(self, loss: str) -> dict:
        """Options of :class:`SequentialRelaxation` from the parameters."""
        if not (isinstance(self.rounds, numbers.Integral) and not isinstance(self.rounds, bool) and self.rounds >= 1):
            raise ValueError(f"rounds must be a positive integer, got {self.rounds!r}")
        if self.time_limit is not None and not (isinstance(self.time_limit, numbers.Real) and self.time_limit > 0):
            raise ValueError(f"time_limit must be None or a positive number of seconds, got {self.time_limit!r}")
        for name in ("scale", "verbose"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        extra = {} if self.train_options is None else self.train_options
        if not isinstance(extra, dict):
            raise ValueError(f"train_options must be a dict of SequentialRelaxation options or None, got "
                             f"{type(extra).__name__}")
        known = set(SequentialRelaxation.CONFIG) - set(_OWN_TRAIN_KEYWORDS)
        for key in extra:
            if key in _OWN_TRAIN_KEYWORDS:
                raise ValueError(f"train_options sets {key!r}, which is an estimator parameter: set it there")
            if key in _MOVED_OPTIONS:
                raise ValueError(f"train_options has {key!r}, now {_MOVED_OPTIONS[key]}")
            if key not in known:
                raise ValueError(f"train_options has {key!r}, not a train() or SequentialRelaxation option; known: "
                                 f"{', '.join(sorted(known))}")
        kwargs = {"rounds": int(self.rounds), "schedule": self.schedule, "hard_constraints": self.hard_constraints,
                  "round_solver": self._round_solver(), "time_limit": self.time_limit, "progress": bool(self.verbose),
                  "loss": loss, **extra}
        return kwargs

    # -- training --------------------------------------------------------------------------------
    def _target_scaling(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shift, scale)`` of the training targets; none by default."""
        return _no_scaling(T)

    def _fit_network(self, X: np.ndarray, T: np.ndarray, loss: str) -> None:
        """Train on ``(X, T)`` (``T`` is ``(m, n_outputs)``) and set the fitted attributes."""
        hidden = self._hidden_sizes()
        act = get_activation(self.activation)
        kwargs = self._train_kwargs(loss)
        if self.scale:
            x_shift, x_scale = _scaling(X, "minmax")
            t_shift, t_scale = self._target_scaling(T)
            constraints = _on_scaled_outputs(kwargs["hard_constraints"], t_shift, t_scale)
            if constraints is None:  # one has no standardised form: raw targets keep its units
                t_shift, t_scale = _no_scaling(T)
                constraints = as_hard_constraints(kwargs["hard_constraints"])
            kwargs["hard_constraints"] = _on_raw_inputs(constraints, x_shift, x_scale)
        else:
            (x_shift, x_scale), (t_shift, t_scale) = _no_scaling(X), _no_scaling(T)
        net = Network([X.shape[1], *hidden, T.shape[1]], [act] * len(hidden) + ["identity"]).init_he(_seed(self.random_state))
        result = SequentialRelaxation(**kwargs).solve(net, (X - x_shift) / x_scale, (T - t_shift) / t_scale)
        self.network_ = _fold_scaling(result.network, x_shift, x_scale, t_shift, t_scale)
        self.train_result_ = dataclasses.replace(result, model=None)  # the Pyomo model is not kept
        self.history_ = result.history
        self.n_iter_ = result.rounds
        self.loss_ = loss
        if result.status in _FAILED:
            warnings.warn(f"{type(self).__name__}: training ended with status {result.status}: {result.message}",
                          ConvergenceWarning, stacklevel=3)

    def _outputs(self, X) -> np.ndarray:
        """The fitted network's outputs ``(m, n_outputs)`` on validated ``X``."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.network_.predict(X)


class ConvexNNRegressor(RegressorMixin, _ConvexNNBase):
    """A network regressor trained by Algorithm 1 (convex relaxation rounds), squared loss.

    Parameters: see :class:`_ConvexNNBase`; ``loss`` must be ``None`` or ``"squared"``.

    Fitted attributes: ``network_`` (on raw inputs, raw targets), ``n_features_in_``,
    ``feature_names_in_`` (for a DataFrame), ``n_outputs_``, ``loss_``, ``history_`` (one row per
    round), ``train_result_`` (the :class:`~convexnn_pyomo.training.TrainResult`, on the scaled
    data, without its Pyomo model), ``n_iter_`` (convex rounds run).
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one network output per target column
        return tags

    def _target_scaling(self, T):
        return _scaling(T, "standard")

    def fit(self, X, y) -> ConvexNNRegressor:
        """Train on ``X (m, n_features)`` and ``y (m,)`` or ``(m, n_outputs)``."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        if self.loss not in (None, "squared"):
            raise ValueError(f"ConvexNNRegressor trains the squared loss (loss=None or 'squared'), got loss={self.loss!r}; "
                             "for classification losses use ConvexNNClassifier")
        T = y.reshape(len(y), -1).astype(float)
        self.n_outputs_ = T.shape[1]
        self._fit_network(X, T, "squared")
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted targets, ``(m,)`` for one output, else ``(m, n_outputs)``."""
        out = self._outputs(X)
        return out[:, 0] if out.shape[1] == 1 else out


class ConvexNNClassifier(ClassifierMixin, _ConvexNNBase):
    """A network classifier trained by Algorithm 1 (convex relaxation rounds).

    Parameters: see :class:`_ConvexNNBase`; ``loss`` is ``None`` (``"logistic"`` for two classes,
    ``"softmax"`` for more),
    ``"logistic"``, ``"softmax"`` or ``"squared"`` (see the module docstring for the probabilities).

    Fitted attributes: ``classes_``, ``network_`` (on raw inputs; its outputs are the logits, or the
    0/1 fit for the squared loss), ``loss_``, ``calibration_slope_`` (binary: ``P(classes_[1]) =
    sigmoid(slope * decision_function)``; 1 for the logistic loss), ``n_features_in_``,
    ``feature_names_in_``, ``history_``, ``train_result_``, ``n_iter_``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # more than two classes need the softmax loss (fit says so, naming the fix)
        tags.classifier_tags.multi_class = self.loss in (None, "softmax")
        return tags

    def _resolve_loss(self, n_classes: int) -> str:
        loss = self.loss
        if loss is None:
            loss = "softmax" if n_classes > 2 else "logistic"
        if loss not in ("logistic", "softmax", "squared"):
            raise ValueError(f"loss must be None (automatic), 'logistic', 'softmax' or 'squared'; got {loss!r}")
        if n_classes > 2 and loss != "softmax":
            raise ValueError(f"Only binary classification is supported with loss={loss!r}: y has {n_classes} classes; "
                             "use loss='softmax' (or None, the default)")
        return loss

    def _check_targets(self, y) -> None:
        y_type = type_of_target(y, input_name="y")
        if y_type.startswith("continuous"):
            raise ValueError(f"Unknown label type: {y_type}. ConvexNNClassifier needs class labels; "
                             "for a continuous target use ConvexNNRegressor")
        check_classification_targets(y)
        if y_type not in ("binary", "multiclass"):
            raise ValueError(f"ConvexNNClassifier takes one column of class labels, got a {y_type} target")

    def fit(self, X, y) -> ConvexNNClassifier:
        """Train on ``X (m, n_features)`` and class labels ``y (m,)``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        self._check_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"ConvexNNClassifier needs samples of at least 2 classes, got 1 class ({self.classes_[0]!r})")
        loss = self._resolve_loss(len(self.classes_))
        _check_constraint_units(self.hard_constraints, loss)
        T = np.eye(len(self.classes_))[labels] if loss == "softmax" else labels[:, None].astype(float)
        self._fit_network(X, T, loss)
        self.calibration_slope_ = 1.0
        if loss == "squared":
            self.calibration_slope_ = _calibration_slope(self.network_.predict(X)[:, 0] - 0.5, labels.astype(float))
        return self

    def decision_function(self, X) -> np.ndarray:
        """Binary: ``(m,)``, positive for ``classes_[1]`` (the logit, or ``z - 1/2`` for the squared
        loss); softmax: the logits ``(m, n_classes)``."""
        z = self._outputs(X)
        if self.loss_ == "softmax":
            return z
        return z[:, 0] - (0.5 if self.loss_ == "squared" else 0.0)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(m, n_classes)``, columns in the order of ``classes_``."""
        d = self.decision_function(X)
        if self.loss_ == "softmax":
            return softmax(d, axis=1)
        p = expit(self.calibration_slope_ * d)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """The class of largest probability (binary: ``decision_function > 0`` gives ``classes_[1]``)."""
        d = self.decision_function(X)
        idx = np.argmax(d, axis=1) if d.ndim == 2 else (d > 0).astype(int)
        return self.classes_[idx]
