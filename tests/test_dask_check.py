"""Dask workers must run the library code the client files results under.

dask is not a dependency: joblib's "dask" backend is replaced here by its threading
backend, whose workers are threads of this process, so a worker's code hash can be
faked. A test with a real in-process Dask cluster runs only where dask is installed.
"""

import importlib.util

import joblib.parallel
import numpy as np
import pytest

import copyaverage.sweep as sw
from copyaverage.store import ResultStore, code_hash
from copyaverage.sweep import CodeMismatchError, grid, sweep

SPECS = grid("erf", 3, [1, 2], [0, 1], "gaussian")


@pytest.fixture
def fake_dask(monkeypatch):
    """joblib's backend name "dask" served by threads of this process."""
    monkeypatch.setitem(joblib.parallel.BACKENDS, "dask", joblib.parallel.ThreadingBackend)


def test_workers_with_other_code_are_refused_before_they_compute(fake_dask, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(sw, "_worker_code_hash", lambda: "0" * 64)
    monkeypatch.setattr(sw, "run", lambda spec: calls.append(spec))
    store = ResultStore(tmp_path)
    with pytest.raises(CodeMismatchError, match=r"runs copyaverage code 0000000000000000 .* "
                                                rf"under code {code_hash()[:16]}"):
        sweep(SPECS, store=store, n_jobs=2, backend="dask", progress=False)
    assert calls == [] and store.keys() == []  # nothing computed, nothing filed


def test_workers_with_the_same_code_give_the_local_results(fake_dask, tmp_path):
    remote = sweep(SPECS, store=tmp_path / "a", n_jobs=2, backend="dask", progress=False)
    local = sweep(SPECS, store=tmp_path / "b", n_jobs=1, progress=False)
    for r, s in zip(remote, local):
        assert np.array_equal(r.theta, s.theta) and r.converged
    assert len(ResultStore(tmp_path / "a").keys()) == len(SPECS)


def test_local_backends_are_not_checked(monkeypatch, tmp_path):
    """loky's workers are started from this checkout's files: no check, no cost."""
    monkeypatch.setattr(sw, "_worker_code_hash", lambda: "0" * 64)  # would fail if asked
    results = sweep(SPECS[:2], store=tmp_path, n_jobs=2, backend="threading", progress=False)
    assert all(r.converged for r in results)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed (not a dependency)")
def test_a_real_dask_cluster_with_other_code_is_refused(monkeypatch, tmp_path):
    from dask.distributed import Client

    monkeypatch.setattr(sw, "_worker_code_hash", lambda: "f" * 64)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        with pytest.raises(CodeMismatchError):
            sweep(SPECS, store=tmp_path, n_jobs=2, backend="dask", progress=False)
    assert ResultStore(tmp_path).keys() == []
