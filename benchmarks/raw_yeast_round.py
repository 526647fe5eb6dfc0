"""A case no test covers, to compare two checkouts of the structured round (issue 27).

Yeast's features scaled up by 10^3 (unscaled data), the three largest classes, replicated 10x with
noise (11,360 rows: the compiled path), an 8-5-3 sigmoid net, softmax loss, class-wise misfit
bounds (19) at 0.9; one round of ``train``; prints the history row (every digit) and a digest of
the weights.  Run it in two checkouts (``PYTHONPATH=OTHER_CHECKOUT python ...``) and compare::

    CONVEXNN_DATA=../shared/data python benchmarks/raw_yeast_round.py
"""
import time
import numpy as np
import convexnn_pyomo as cnn
from convexnn_pyomo.data import YEAST_FEATURES, load_yeast
df = load_yeast()
top = df["cls"].value_counts().index[:3]
df = df[df["cls"].isin(top)]
X = 1e3 * df[YEAST_FEATURES].to_numpy(float)
y = df["cls"].to_numpy()
rng = np.random.default_rng(0)
X = np.vstack([X + 10.0 * rng.normal(size=X.shape) for _ in range(10)])
y = np.concatenate([y] * 10)
Y = (y[:, None] == np.asarray(top)[None, :]).astype(float)
print("rows", len(X), "features", X.shape[1], "max |x|", round(float(np.abs(X).max()), 1))
net = cnn.Network([8, 5, 3], ["sigmoid", "identity"]).init_he(0)
t = time.perf_counter()
res = cnn.train(net, X, Y, loss="softmax", hard_constraints=cnn.ClasswiseMisfitBounds(0.9), rounds=1, progress=False)
print(f"{time.perf_counter() - t:.1f} s; status {res.status}; violation {res.violation:.3g}; feasible {res.feasible}")
print(res.history.to_string()); print([repr(x) for x in res.history.iloc[0].tolist()])
w = res.network.get_flat()
print("weights digest", repr(float(np.abs(w).sum())))
