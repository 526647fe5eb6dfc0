"""A positive-semidefinite constraint component for Pyomo models: ``M(x) ⪰ 0``.

Pyomo's ``environ`` has no PSD constraint (only the kernel's ``svec_psdcone``).  A
:class:`PSDConstraint` is a Block of its own ctype holding a symmetric matrix of *affine*
expressions (upper triangle).  Because the ctype is new, NLP writers and solvers do not descend
into it and cannot silently drop it: the embedded Ipopt refuses models that contain an active one,
and the conic plugin ``convexnn_conic`` hands it to Clarabel as a PSD cone.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.block import BlockData, declare_custom_block

__all__ = ["PSDConstraint", "PSDConstraintData", "psd_constraints"]


@declare_custom_block(name="PSDConstraint", new_ctype=True)
class PSDConstraintData(BlockData):
    """``M ⪰ 0`` for a symmetric ``n x n`` matrix ``M`` of affine Pyomo expressions."""

    def set_matrix(self, entries) -> None:
        """``entries[r][c]`` for ``r <= c`` (the upper triangle; the lower one is ignored)."""
        n = len(entries)
        self.size = n
        self.upper = {(r, c): entries[r][c] for c in range(n) for r in range(c + 1)}

    def value_matrix(self) -> np.ndarray:
        M = np.zeros((self.size, self.size))
        for (r, c), e in self.upper.items():
            M[r, c] = M[c, r] = pyo.value(e)
        return M

    def min_eigenvalue(self) -> float:
        return float(np.linalg.eigvalsh(self.value_matrix())[0])


def psd_constraints(model, active: bool = True) -> list:
    return list(model.component_data_objects(PSDConstraint, active=active, descend_into=True))
