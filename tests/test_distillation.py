"""Finite-sample end points against the population ones (copyaverage.distillation)."""

import numpy as np
import pandas as pd
import pytest

from copyaverage.distillation import class_table, recheck_rows, sample_size_threshold
from copyaverage.store import ResultStore
from copyaverage.sweep import RunSpec, sweep


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("store"))
    specs = [RunSpec("erf", 4, 2, seed, samples=N, data_seed=seed)
             for N in (30, 1000, 100_000) for seed in (0, 1)]
    results = sweep(specs, store=store, n_jobs=1, progress=False)
    ends = [(r.a, r.W) for r in results]
    converged = [r.converged for r in results]
    table = class_table(specs, ends, converged, store=store, n_jobs=1, progress=False)
    return specs, ends, converged, table, store


def test_large_samples_reach_the_population_end_point(small):
    _, _, _, table, _ = small
    big = table[table.samples == 100_000]
    assert big.converged.all()
    assert (big.label == big.population_label).all() and big.same_point.all()
    assert (big.distance < 1e-4).all()
    # the flow on 30 inputs (P = 12 parameters) fits them and generalizes worse
    small_n = table[(table.samples == 30) & table.converged]
    assert (small_n.population_loss > big.population_loss.max()).all()


def test_excess_is_never_negative(small):
    """The population flow from theta_N descends, so L(theta_N) >= the loss it reaches."""
    _, _, _, table, _ = small
    done = table[table.label.notna()]
    assert len(done) > 0 and (done.excess >= -1e-12).all()


def test_threshold_reads_the_smallest_n_from_which_all_agree():
    rows = []
    for N, agree in [(10, 10), (100, 5), (1000, 9), (10_000, 10)]:
        rows += [dict(k=4, n=2, samples=N, converged=True, label="CA optimum",
                      population_label="CA optimum" if i < agree else "other",
                      same_point=i < agree) for i in range(10)]
    rows += [dict(k=4, n=3, samples=N, converged=True, label="other",
                  population_label="CA optimum", same_point=False) for N in (10, 100)]
    rows.append(dict(k=4, n=2, samples=100, converged=False, label=None,
                     population_label="CA optimum", same_point=False))
    shares, thresholds = sample_size_threshold(pd.DataFrame(rows))
    t = thresholds.set_index(["k", "n"]).n_star
    assert t[(4, 2)] == 1000 and np.isnan(t[(4, 3)])
    # the run that did not converge is not counted
    assert shares.set_index(["k", "n", "samples"]).loc[(4, 2, 100), "runs"] == 10


def test_recheck_finds_a_changed_row(small):
    specs, ends, converged, table, store = small
    rows = [2, 5]
    assert recheck_rows(table, specs, ends, converged, rows, store=store).matches.all()
    tampered = table.copy()
    tampered.loc[5, "label"] = "other" if tampered.loc[5, "label"] != "other" else "CA optimum"
    again = recheck_rows(tampered, specs, ends, converged, rows, store=store)
    assert again.matches.tolist() == [True, False]


def test_population_runs_are_rejected():
    with pytest.raises(ValueError, match="finite-sample"):
        class_table([RunSpec("erf", 4, 2, 0)], [(np.ones(2), np.ones((2, 5)))], [True],
                    n_jobs=1, progress=False)


# ------------------------------------------------------------------ SGD experiment --
from copyaverage.distillation import (SGDRun, load_sgd_experiment, sgd_sweep, sgd_table,
                                      specialization_time, write_sgd_experiment)


def test_specialization_time_is_the_first_crossing():
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    loss = np.array([5.0, 1.0, 0.8, 0.4, 0.1])
    # level = 1 - (1 - 0) / 2 = 0.5
    assert specialization_time(t, loss, 1.0, 0.0) == 3.0
    assert np.isnan(specialization_time(t, loss, 1.0, -1.0))  # level 0: never reached


def test_sgd_runs_are_cached_and_classified(tmp_path, monkeypatch):
    monkeypatch.setattr("copyaverage.distillation.default_store_dir", lambda: tmp_path)
    runs = [SGDRun(4, 3, 0, "sgd_0.1_64"), SGDRun(4, 3, 1, "sgd_0.5_1")]
    first = sgd_sweep(runs, n_jobs=1, progress=False)
    again = sgd_sweep(runs, n_jobs=1, progress=False)  # loaded from the cache
    assert all(np.array_equal(x.a, y.a) and x.status == y.status for x, y in zip(first, again))
    table = write_sgd_experiment(tmp_path / "out", runs, n_jobs=1, progress=False)
    # k = 4, seed 1 at lr 0.5, batch 1 diverges within its 10,000 steps: reported,
    # not classified
    assert table.status.tolist() == ["finished", "diverged"]
    assert table.label[0] == table.population_label[0] and pd.isna(table.label[1])
    loaded_runs, loaded, arrays, meta = load_sgd_experiment(tmp_path / "out")
    assert loaded_runs == runs and meta["runs"] == 2
    assert np.array_equal(arrays[0][0], first[0].a)
    assert pd.isna(loaded.label[1])


def test_unknown_sgd_setting_is_named():
    with pytest.raises(ValueError, match="known"):
        SGDRun(4, 3, 0, "sgd_fast")


def test_recheck_endpoints_recomputes_the_empirical_loss(small):
    from copyaverage.distillation import recheck_endpoints
    from copyaverage.experiments import summarize
    from copyaverage.sweep import sweep

    specs, ends, converged, _, store = small
    summary = summarize(specs, sweep(specs, store=store, n_jobs=1, progress=False))
    assert recheck_endpoints(specs, ends, summary, range(len(specs))).matches.all()
    changed = summary.copy()
    changed.loc[3, "loss"] *= 1.001
    assert recheck_endpoints(specs, ends, changed, [2, 3]).matches.tolist() == [True, False]


def test_recheck_sgd_tells_round_off_sensitive_runs_from_reproducible_ones():
    """A k = 8 run at rate 0.1, batch 1 ends elsewhere from a start moved by 1e-12 (only its
    status is compared); a k = 4 run at batch 64 does not, and must match bit for bit."""
    from copyaverage.distillation import load_sgd_experiment, recheck_sgd, run_sgd
    from copyaverage.experiments import committed_results_dir

    runs, table, arrays, _ = load_sgd_experiment(
        committed_results_dir("erf_samples").with_name("erf_sgd"))
    names = [(r.k, r.n, r.seed, r.setting) for r in runs]
    picks = [names.index((8, 6, 0, "sgd_0.1_1")), names.index((4, 3, 10, "sgd_0.1_64"))]
    check = recheck_sgd(runs, table, arrays, picks)
    assert check.sensitive.tolist() == [True, False]
    assert check.sensitivity[0] > 0.1 and check.sensitivity[1] < 1e-12
    assert check.matches.all() and check.end_difference[1] <= 1e-9
    # a stored end point that moved fails a reproducible run
    moved = list(arrays)
    a, W, *rest = moved[picks[1]]
    moved[picks[1]] = (a, W + 1e-6, *rest)
    assert not recheck_sgd(runs, table, moved, picks[1:]).matches.any()
    with pytest.raises(ValueError, match="nudge"):
        run_sgd(runs[0], nudge=-1.0)
