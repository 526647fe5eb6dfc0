"""Decision parity in ``ConvexNNClassifier`` on raw, unscaled features (docs/constraints.md, "In the
scikit-learn estimators"): the threshold and temperature of :class:`DecisionParity` on a logistic
classifier's logit.

Synthetic census rows (600): age in [17, 90] years, hours in [1, 99] a week, capital gain
(exponential, mean 1,000); the label is ``(age - 40)/20 + (hours - 40)/20 + noise > 0``; the groups
are age over 40 (written on the raw age).  A 3-4-1 sigmoid network, logistic loss, 8 rounds,
``DecisionParity(groups, 0.02, threshold, temperature)``; one line per setting: training accuracy,
the decision parity of the estimator's predictions, the constraint's own (smoothed) violation on the
raw data, and each group's positive rate::

    python benchmarks/estimator_decision_parity.py        # four settings, about 35 s
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import convexnn_pyomo as cnn
from convexnn_pyomo.fairness import parity_difference
from convexnn_pyomo.sklearn import ConvexNNClassifier

SETTINGS = [(0.5, 0.05, 0), (0.0, 0.05, 0), (0.0, 1.0, 0), (0.0, 1.0, 500)]  # threshold, temperature, Adam steps


def census(m: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age, hours, gain = rng.uniform(17, 90, m), rng.uniform(1, 99, m), rng.exponential(1000, m)
    y = ((age - 40) / 20 + (hours - 40) / 20 + rng.normal(size=m) > 0).astype(int)
    return np.c_[age, hours, gain], y


def over_40(Z: np.ndarray) -> np.ndarray:
    return (Z[:, 0] > 40).astype(int)


def main() -> None:
    X, y = census()
    g = over_40(X)
    print(f"positive rate: age <= 40 {y[g == 0].mean():.3f}, over 40 {y[g == 1].mean():.3f}; all positive: "
          f"accuracy {y.mean():.3f}")
    for threshold, temperature, warm in SETTINGS:
        cons = cnn.DecisionParity(groups=over_40, epsilon=0.02, threshold=threshold, temperature=temperature)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the threshold-0.5 setting's warning, on purpose
            clf = ConvexNNClassifier(hidden_layer_sizes=(4,), rounds=8, hard_constraints=cons, random_state=0,
                                     train_options={"warm_start": warm} if warm else None).fit(X, y)
        p = clf.predict(X)
        rates = [p[g == k].mean() for k in (0, 1)]
        print(f"threshold {threshold:g}, temperature {temperature:g}, Adam steps {warm}: accuracy {(p == y).mean():.3f}, "
              f"decision parity {parity_difference(p, g):.3f}, smoothed violation {cons.violation(clf.network_, X, y):.2g}, "
              f"positive rates {rates[0]:.3f} / {rates[1]:.3f} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
