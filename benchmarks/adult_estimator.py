"""Decision parity through the scikit-learn estimator on the full UCI Adult data (session 14's check
of the constraint mapping at 30,162 rows).

``ConvexNNClassifier(loss="squared", hidden_layer_sizes=(4,), rounds=10, train_options={"warm_start":
2000})`` with ``DecisionParity(sex column, 0.02)`` (the settings of ``convexnn experiment fairness``'s
``decision@0.02``, through the estimator's own scaling and constraint copies); prints the time, the
smoothed bound's violation on the raw data and the decisions' accuracy and parity on both sets::

    python benchmarks/adult_estimator.py          # about 6 minutes
"""

from __future__ import annotations

import time

import convexnn_pyomo as cnn
from convexnn_pyomo.data import load_adult
from convexnn_pyomo.fairness import parity_difference as parity
from convexnn_pyomo.sklearn import ConvexNNClassifier


def main() -> None:
    ds = load_adult()
    cons = cnn.DecisionParity(ds.sensitive_index, 0.02)
    t0 = time.perf_counter()
    clf = ConvexNNClassifier(loss="squared", hidden_layer_sizes=(4,), rounds=10, hard_constraints=cons,
                             random_state=0, train_options={"warm_start": 2000}).fit(ds.X_train, ds.y_train)
    train, test = clf.predict(ds.X_train), clf.predict(ds.X_test)
    print(f"{time.perf_counter() - t0:.0f} s, {clf.train_result_.status}: smoothed violation on the raw data "
          f"{cons.violation(clf.network_, ds.X_train, ds.y_train):.2g}; train accuracy {(train == ds.y_train).mean():.4f}, "
          f"decision parity {parity(train, ds.group_train):.4f}; test accuracy {(test == ds.y_test).mean():.4f}, "
          f"decision parity {parity(test, ds.group_test):.4f}")


if __name__ == "__main__":
    main()
