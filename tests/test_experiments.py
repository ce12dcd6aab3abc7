"""Experiment drivers: committed end points, their round trip and their re-check."""

import json
import stat

import numpy as np
import pandas as pd
import pytest

from copyaverage import Teacher
from copyaverage.configurations import copy_average_point
from copyaverage.experiments import (K50_DIR, K50_GAUSSIAN_DIR, export_endpoints, first_from, k50_specs,
                                     load_endpoints, nearest_ca, relabel, transition_edges,
                                     verify_sample)
from copyaverage.sweep import grid, sweep


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("k3")
    specs = grid("erf", 3, [1, 2], [0, 1], "glorot")
    results = sweep(specs, store=None, n_jobs=1, progress=False)
    export_endpoints(specs, results, out, command="test", elapsed=1.0)
    return out, specs, results


def test_export_and_load_round_trip(small):
    out, specs, results = small
    specs2, ends, table, meta = load_endpoints(out)
    assert specs2 == specs
    for (a, W), r in zip(ends, results):
        assert np.array_equal(a, r.a) and np.array_equal(W, r.W)
    assert list(table.loss) == pytest.approx([r.loss for r in results], abs=0)
    assert meta["runs"] == len(specs) and len(meta["lib_hash"]) == 64
    for name in ("endpoints.npz", "summary.csv", "meta.json"):
        assert (out / name).stat().st_mode & stat.S_IROTH  # readable, not mkstemp's 0600
    assert not list(out.glob("*.tmp"))


def test_verify_sample_detects_a_changed_end_point(small, tmp_path):
    out, specs, results = small
    check = verify_sample(out, m=4, seed=0)
    assert len(check) == 4 and check.matches.all()
    assert check.max_weight_difference.max() <= 1e-7
    # tamper with one stored end point: the re-check must see it
    with np.load(out / "endpoints.npz") as z:
        arrays = dict(z)
    arrays["W_0"] = arrays["W_0"] + 1e-6
    for name in ("summary.csv", "meta.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    np.savez_compressed(tmp_path / "endpoints.npz", **arrays)
    check = verify_sample(tmp_path, m=4, seed=0)
    assert not check.set_index("run").matches.loc[0]
    assert check.set_index("run").matches.drop(0).all()


def test_nearest_ca_of_a_ca_point_is_itself():
    T = Teacher.orthonormal(4)
    a, W = copy_average_point([(0,), (1, 2, 3)], T, "erf")
    near = nearest_ca(a, W, T, "erf")
    assert near["groups"] == [(0,), (1, 2, 3)]
    assert near["distance"] == pytest.approx(0.0, abs=1e-14)
    assert near["ca_loss"] == pytest.approx(near["loss"], abs=1e-14)


@pytest.mark.parametrize("path, init", [(K50_DIR, "glorot"), (K50_GAUSSIAN_DIR, "gaussian")])
def test_committed_k50_results_are_complete(path, init):
    """The committed files hold exactly the 980 runs of the k = 50 grid, under 20 MB."""
    if not (path / "meta.json").is_file():
        pytest.skip(f"no committed results in {path}")
    specs, ends, table, meta = load_endpoints(path)
    assert specs == k50_specs(init=init)
    assert len(ends) == len(table) == meta["runs"] == 980
    assert all(a.shape == (s.n,) and W.shape == (s.n, 51) for s, (a, W) in zip(specs, ends))
    assert list(zip(table.n, table.seed)) == [(s.n, s.seed) for s in specs]
    assert (table.grad_norm[table.converged] <= 1e-12).all()
    assert sum(p.stat().st_size for p in path.iterdir()) < 20e6
    assert meta["command"].startswith("python -m copyaverage.experiments k50")
    assert json.loads((path / "meta.json").read_text())["machine"]["cpus"] >= 1


def test_k50_specs_rejects_an_unknown_initialization():
    with pytest.raises(ValueError, match="glorot"):
        k50_specs(init="uniform")


def test_relabel_recomputes_and_counts_changes(small):
    out, specs, results = small
    _, ends, table, _ = load_endpoints(out)
    same, changed = relabel(ends, table, k=3)
    assert changed == 0 and list(same.label) == list(table.label)
    wrong = table.copy()
    wrong.loc[0, "label"] = "other"
    fixed, changed = relabel(ends, wrong, k=3)
    assert changed == 1 and fixed.label[0] == table.label[0]
    with pytest.raises(ValueError, match="end points"):
        relabel(ends[:-1], table, k=3)


def test_first_from():
    idx = range(1, 7)
    assert first_from(pd.Series([0, 1, 0, 1, 1, 1], index=idx, dtype=bool)) == 4
    assert first_from(pd.Series([1] * 6, index=idx, dtype=bool)) == 1
    assert first_from(pd.Series([1, 1, 1, 1, 1, 0], index=idx, dtype=bool)) is None


def test_transition_edges_on_a_constructed_sweep():
    """n = 1..6, 4 seeds: CA optimum only up to 2, mixed at 3-4, perturbed copies from 5;
    the perturbed copy has the lower loss from n = 4."""
    rows = []
    pc_per_n = {1: 0, 2: 0, 3: 1, 4: 3, 5: 4, 6: 4}
    ca_loss = pd.Series([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], index=range(1, 7))
    pc_loss = {3: 4.5, 4: 2.9, 5: 1.5, 6: 0.5}
    for n, pcs in pc_per_n.items():
        for s in range(4):
            pc = s < pcs
            rows.append(dict(n=n, label="perturbed copy" if pc else "CA optimum",
                             loss=pc_loss[n] if pc else ca_loss[n]))
    e = transition_edges(pd.DataFrame(rows), ca_loss)
    assert list(e) == [2, 3, 4, 4, 5, 4, 4]
