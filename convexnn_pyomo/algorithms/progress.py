"""One line per round on stdout, under a header that says what the columns mean."""

from __future__ import annotations

__all__ = ["RoundPrinter", "COLUMN_HELP"]

COLUMN_HELP = """\
one line per convex round; its columns (in history.csv as true_loss, relaxed_objective, ...):
  status    accepted, rejected (retried with a larger eta), solver_failed or infeasible
  loss      true training loss, summed over samples (numpy forward pass) of the best network
  relaxed   objective of the round's convex program: loss of the relaxed outputs + eta * regularizer (8)
  gaps a/b  largest violation of the layer equalities (2b) / of the activations (2c) at the convex
            solution; both near 0 means the relaxation was exact in that round
  eta       regularizer weight (paper schedule) or safety factor on the exactness weights (adaptive)
  step      length of the accepted step along the convex solution (1 = the solution itself, 0 = none)"""


class RoundPrinter:
    """``progress=True`` of :func:`~convexnn_pyomo.train`: prints :data:`COLUMN_HELP` once, then a line per round."""

    def __init__(self, stream=None):
        self.stream = stream
        self._header = False

    def __call__(self, row: dict, network=None) -> None:
        if not self._header:
            self._header = True
            self._print(COLUMN_HELP)
        if row["status"] == "warm_start":
            self._print(f"warm start: {row['iterations']} Adam steps, loss {row['true_loss']:.6g}, {row['solve_seconds']:.2f}s")
            return
        self._print(
            f"round {row['round']:4d}  {row['status']:<13s} loss {row['true_loss']:.6g}  "
            f"relaxed {row['relaxed_objective']:.6g}  gaps {row['bilinear_gap']:.1e}/{row['activation_gap']:.1e}  "
            f"eta {row['eta']:.3g}  step {row['step']:g}  {row['solve_seconds']:.2f}s"
        )

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
