r"""Per-sample components and their values for every sample, also in a *template* model.

A training model's ``samples`` Set is either every sample ``0..m-1`` (the full model, solved by
Ipopt or any Pyomo solver) or a few of them (a *template*: the same Pyomo code run on a few
samples, from which :mod:`convexnn_pyomo.solvers.arrow` derives the per-sample functions of the
structured round).  A component is *per-sample* when the last set of its index is the model's
``samples`` (``z[i, j]``, ``x_data[k, j]``, ``t[i, j]``, ``X[j]``, ``member[c, j]``, ...).

Values of per-sample components are handled as arrays whose last axis is the sample:
:func:`set_sample_array` writes ``values[..., j]`` into the model's components for its samples and,
on a template, keeps the whole array so that the samples the template does not hold still have
their data, reference values and starting values; :func:`get_sample_array` reads them back (from
the kept array on a template, from the components on a full model).  Library code that writes
data, references, tangents or lifted values into the model goes through these two functions, so
one piece of code serves both the full model and the template.

A per-sample Param that a template needs for every sample (class membership, signs, a bound per
point) is declared with :func:`sample_param`.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap

__all__ = ["get_sample_array", "is_per_sample", "is_template", "sample_arrays", "sample_param", "sample_position",
           "set_sample_array", "template_samples"]

_SCOPE = "convexnn_pyomo.samples"


def sample_arrays(model) -> ComponentMap:
    """Component -> the array of its values for every sample (sample axis last), kept by the model."""
    data = model.private_data(_SCOPE)
    if "arrays" not in data:
        data["arrays"] = ComponentMap()
    return data["arrays"]


def _n_samples(model) -> int:
    return int(model.training_problem.X.shape[0])


def is_template(model) -> bool:
    """True when the model holds fewer samples than its training data (a template)."""
    return len(model.samples) < _n_samples(model)


def template_samples(m: int, count: int = 2) -> list[int]:
    """The samples a template holds: the first and the last (data are often sorted by class, so a
    per-sample term that secretly depends on the sample is likely to differ between them)."""
    if m < 1:
        raise ValueError("a template needs at least one sample")
    return sorted({0, m - 1}) if count >= 2 else [0]


def sample_position(component, model=None) -> int | None:
    """Where the model's ``samples`` is among the sets of ``component``'s index (``None``: nowhere;
    the first such set when there are several, e.g. a Gram matrix ``X[j, j']``)."""
    model = model if model is not None else component.model()
    if not component.is_indexed() or component.is_reference():
        return None
    index = component.index_set()
    if index is model.samples:
        return 0
    subsets = list(index.subsets()) if hasattr(index, "subsets") else []
    for k, sub in enumerate(subsets if len(subsets) > 1 else []):
        if sub is model.samples:
            return k
    return None


def is_per_sample(component, model=None) -> bool:
    """True when the last set of ``component``'s index is the model's ``samples``."""
    model = model if model is not None else component.model()
    pos = sample_position(component, model)
    if pos is None:
        return False
    index = component.index_set()
    return index is model.samples or len(list(index.subsets())) - 1 == pos


def _positions(component):
    """``(index, position)`` pairs: position is the index with each non-sample element replaced by
    its place in its (ordered) set and the sample kept as the sample number."""
    index = component.index_set()
    sets = list(index.subsets()) if hasattr(index, "subsets") else [index]
    places = [{k: n for n, k in enumerate(s)} for s in sets[:-1]]
    for idx in component:
        key = idx if isinstance(idx, tuple) else (idx,)
        yield idx, tuple(p[k] for p, k in zip(places, key[:-1])) + (int(key[-1]),)


def set_sample_array(component, values) -> None:
    """Set ``component[idx]`` to ``values[position of idx]`` for every index the model holds.

    ``values`` has the component's shape with the sample axis last and *every* sample of the
    training data (``(n, m)`` for ``z[i, j]``, ``(m,)`` for ``X[j]``); on a template the whole array
    is kept (:func:`get_sample_array`).  A component that is not per-sample takes ``values``
    indexed by its own index (a scalar for a scalar component).
    """
    values = np.asarray(values, dtype=float)
    if not is_per_sample(component):
        if not component.is_indexed():
            _set(component, float(values))
            return
        for idx in component:
            _set(component[idx], float(values[idx]))
        return
    model = component.model()
    if values.shape[-1] != _n_samples(model):
        raise ValueError(f"{component.name}: values for {values.shape[-1]} samples, the data have {_n_samples(model)}")
    for idx, pos in _positions(component):
        _set(component[idx], float(values[pos]))
    if is_template(model):
        sample_arrays(model)[component] = values.copy()


def _set(data, v: float) -> None:
    if data.is_variable_type():
        data.set_value(v, skip_validation=True)
    else:
        data.set_value(v)


def get_sample_array(component, shape: tuple[int, ...]) -> np.ndarray:
    """The values of a per-sample component for every sample, ``shape`` with the sample axis last
    (NaN where a value is missing); on a template, the array kept by :func:`set_sample_array`."""
    model = component.model()
    if is_template(model):
        kept = sample_arrays(model).get(component)
        if kept is None:
            raise KeyError(f"{component.name} has no values for the samples outside the template")
        return kept.reshape(shape)
    out = np.full(shape, np.nan)
    for idx, pos in _positions(component):
        v = component[idx].value
        if v is not None:
            out[pos] = v
    return out


def sample_param(block, name: str, index_sets: list, values, doc: str = "") -> pyo.Param:
    """Declare ``block.<name>`` as a mutable Param indexed by ``index_sets`` and the model's samples,
    set from ``values`` (shape ``[len(s) for s in index_sets] + [m]``): a per-sample datum that a
    template keeps for every sample (class membership, a sign, a bound per point)."""
    model = block.model()
    param = pyo.Param(*index_sets, model.samples, mutable=True, initialize=0.0, doc=doc)
    block.add_component(name, param)
    set_sample_array(param, values)
    return param
