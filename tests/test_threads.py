"""convexnn_pyomo.threads: blas_threads limits numpy's and CasADi's BLAS pools inside the block and
gives them back their counts after; the CLI's one-thread default leaves no trace."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import threadpoolctl

from convexnn_pyomo.threads import THREAD_VARIABLES, blas_threads, one_thread_unless_set, threadpool_info


def _numpy_blas() -> dict:
    """numpy's BLAS pool, as threadpoolctl sees it."""
    pools = threadpoolctl.threadpool_info()
    for pool in pools:
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]:
            return pool
    pytest.skip(f"threadpoolctl does not see numpy's BLAS here: {pools}")


def test_blas_threads_limits_numpy_inside_and_restores_after():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):  # a known starting count, even on one core
        start = _numpy_blas()["num_threads"]
        with blas_threads(1):
            assert _numpy_blas()["num_threads"] == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
            a = np.ones((300, 300))
            np.testing.assert_array_equal(a @ a, 300.0)  # still computes
        assert _numpy_blas()["num_threads"] == start


def test_blas_threads_restores_after_an_error():
    before = _numpy_blas()["num_threads"]
    with pytest.raises(RuntimeError, match="inside"):
        with blas_threads(1):
            raise RuntimeError("inside")
    assert _numpy_blas()["num_threads"] == before


def test_blas_threads_none_leaves_the_pools_alone():
    before = [(p["filepath"], p["num_threads"]) for p in threadpool_info()]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with blas_threads(None):
            assert _numpy_blas()["num_threads"] == 2
    assert [(p["filepath"], p["num_threads"]) for p in threadpool_info()] == before


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2"])
def test_blas_threads_refuses_what_is_not_a_thread_count(n):
    with pytest.raises(ValueError, match="positive number of threads or None"):
        with blas_threads(n):
            pass


def test_blas_threads_accepts_numpy_integers():
    with blas_threads(np.int64(1)):
        assert _numpy_blas()["num_threads"] == 1


CASADI_PROBE = """
import json, os, sys
from convexnn_pyomo.threads import blas_threads, threadpool_info
import casadi

def casadi_pools():
    return [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "casadi_openblas"]

def ipopt():
    x = casadi.SX.sym("x", 2)
    return casadi.nlpsol("s", "ipopt", {"x": x, "f": (x[0] - 1) ** 2 + x[1] ** 2},
                         {"print_time": False, "ipopt.print_level": 0, "ipopt.sb": "yes"})

out = {"after_import": casadi_pools()}
if sys.argv[1] == "plain":
    ipopt()
    out["default"] = casadi_pools()
else:
    with blas_threads(1):
        solver = ipopt()  # created inside the block: Ipopt's first load of CasADi's OpenBLAS
        out["inside"] = casadi_pools()
        out["x"] = [float(v) for v in solver(x0=[0, 0])["x"].full().ravel()]
    out["after"] = casadi_pools()
out["files"] = sorted(os.path.basename(p["filepath"]) for p in threadpool_info())
print(json.dumps(out))
"""


def _probe(mode: str) -> dict:
    """The probe in a fresh process (CasADi's OpenBLAS not loaded yet, the thread variables unset)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    run = subprocess.run([sys.executable, "-c", CASADI_PROBE, mode], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_blas_threads_reaches_casadis_openblas():
    """CasADi's Ipopt/MUMPS use CasADi's own OpenBLAS (libcasadi-tp-openblas), loaded with the first
    Ipopt solver, not by ``import casadi``.  blas_threads loads it on entry and limits it, so a
    solver created inside the block runs one thread (and uses that same copy); on exit the library
    gets back the count it starts with in a process that never limited it."""
    plain, limited = _probe("plain"), _probe("limited")
    assert plain["after_import"] == [] and limited["after_import"] == []
    assert limited["inside"] == [1]
    np.testing.assert_allclose(limited["x"], [1.0, 0.0], atol=1e-8)
    assert limited["after"] == plain["default"]
    assert sum(f.startswith("libcasadi-tp-openblas") for f in limited["files"]) == 1


def test_one_thread_unless_set(monkeypatch):
    for var in THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with one_thread_unless_set():
            assert {var: os.environ.get(var) for var in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "1")
            assert _numpy_blas()["num_threads"] == 1
        assert not any(var in os.environ for var in THREAD_VARIABLES)
        assert _numpy_blas()["num_threads"] == 2


def test_one_thread_unless_set_respects_the_users_variables(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with one_thread_unless_set():
            assert os.environ.get("OMP_NUM_THREADS") == "2" and "OPENBLAS_NUM_THREADS" not in os.environ
            assert _numpy_blas()["num_threads"] == 2
