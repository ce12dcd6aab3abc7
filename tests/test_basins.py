"""Features along the flow and the one-threshold rules of the basins chapter."""

import numpy as np
import pytest

from copyaverage.basins import (FEATURES, Stump, fit_stump, flow_features, student_features,
                                stump_accuracy)
from copyaverage.configurations import copy_average_point
from copyaverage.flow import gradient_flow
from copyaverage.loss import population_loss
from copyaverage.sweep import RunSpec
from copyaverage.teacher import Teacher


def test_fit_stump_separates_separable_data_in_either_direction():
    x = np.array([0.1, 0.5, 0.2, 3.0, 2.5, 4.0])
    y = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    up, acc = fit_stump(x, y, "x")
    assert acc == 1.0 and up.sign == 1 and 0.5 < up.threshold < 2.5
    down, acc = fit_stump(x, ~y, "x")
    assert acc == 1.0 and down.sign == -1
    assert stump_accuracy(up, [0.0, 10.0], [False, True]) == 1.0


def test_fit_stump_is_never_worse_than_the_majority_class():
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.standard_normal(31), rng.random(31) < 0.3
        _, acc = fit_stump(x, y)
        assert acc >= max(y.mean(), 1 - y.mean()) - 1e-12


def test_fit_stump_rejects_bad_input():
    with pytest.raises(ValueError, match="same non-zero length"):
        fit_stump([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="non-finite"):
        fit_stump([1.0, np.nan], [True, False], "f")


def test_features_of_a_copy_average_point():
    # k = 5, n = 3: groups (0), (1), (2, 3, 4): two copies, one average of three
    T = Teacher.orthonormal(5, 6)
    a, W = copy_average_point([(0,), (1,), (2, 3, 4)], T, "erf")
    f = student_features(a, W, T, "erf", population_loss(a, W, T, "erf"))
    assert set(f) == set(FEATURES)
    assert f["copies"] == 2 and f["largest_group"] == 3
    assert f["mean_direction_cosine"] == pytest.approx(3 / np.sqrt(15), abs=1e-12)
    # the same function with the first neuron's signs flipped has the same features
    a2, W2 = a.copy(), W.copy()
    a2[0], W2[0] = -a2[0], -W2[0]
    assert student_features(a2, W2, T, "erf", 0.0) | {"loss": f["loss"]} == pytest.approx(f)


def test_flow_features_reads_the_flow_at_the_requested_times():
    spec = RunSpec("erf", 6, 3, 0, "gaussian")
    times = [0.0, 1.0, 10.0, 100.0]
    table = flow_features(spec, times, per_decade=20)
    assert list(table.t) == times and table.t_read.iloc[0] == 0.0
    # the point read is within half a grid step of the requested time (log scale) or the
    # solver's step past it
    ratio = table.t_read.iloc[1:] / table.t.iloc[1:]
    assert np.all(ratio > 10 ** (-0.5 / 20)) and np.all(ratio < 2.0)
    a0, W0 = spec.start()
    T = spec.teacher()
    f0 = student_features(a0, W0, T, "erf", population_loss(a0, W0, T, "erf"))
    assert table.iloc[0][list(f0)].to_dict() == pytest.approx(f0)
    # the loss decreases along the flow
    assert np.all(np.diff(table.loss) < 0)
    full = gradient_flow(a0, W0, T, "erf", trajectory_per_decade=20)
    i = np.argmin(np.abs(np.log(full.trajectory.t[1:] / 10.0))) + 1
    assert table.loss.iloc[2] == pytest.approx(full.trajectory.loss[i], rel=0.05)


def test_flow_features_rejects_bad_times():
    spec = RunSpec("erf", 4, 2, 0)
    with pytest.raises(ValueError, match="times"):
        flow_features(spec, [-1.0])
    with pytest.raises(ValueError, match="per_decade"):
        flow_features(spec, [1.0], per_decade=0)


# ---------------------------------------------------------------- basin statistics --
import pandas as pd  # noqa: E402

from copyaverage.basins import (basin_shares, evaluate_predictors, exact_boundaries,  # noqa: E402
                                majority_switch, wilson)
from copyaverage.classify import CA_OPTIMUM, PERTURBED_COPY  # noqa: E402


def test_wilson_interval_known_values_and_errors():
    # 5 of 10 at 95 %: the textbook interval (0.2366, 0.7634)
    lo, hi = wilson(5, 10)
    assert abs(lo - 0.2366) < 1e-4 and abs(hi - 0.7634) < 1e-4
    lo, hi = wilson(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-15) and 0.1 < hi < 0.2  # never below 0
    with pytest.raises(ValueError, match="successes <= total"):
        wilson(3, 2)


def _table(rows):
    return pd.DataFrame([dict(n=n, label=label, converged=conv) for n, label, conv in rows])


def test_basin_shares_counts_converged_runs_only():
    t = _table([(1, CA_OPTIMUM, True), (1, CA_OPTIMUM, True), (1, PERTURBED_COPY, False),
                (2, PERTURBED_COPY, True), (2, CA_OPTIMUM, True), (2, PERTURBED_COPY, True)])
    s = basin_shares(t)
    assert s.loc[1, "total"] == 2 and s.loc[1, "pc"] == 0 and s.loc[1, "ca"] == 2
    assert s.loc[2, "share"] == pytest.approx(2 / 3)
    assert (s.lo <= s.share).all() and (s.share <= s.hi).all()


def test_majority_switch_none_nan_and_value():
    shares = pd.DataFrame({"share": [0.0, 0.5, 0.6, 1.0]}, index=[3, 4, 5, 6])
    assert majority_switch(shares) == 5  # 0.5 is not a majority
    assert majority_switch(shares.assign(share=0.2)) is None
    assert np.isnan(majority_switch(shares.assign(share=0.9)))  # below the widths measured


def test_exact_boundaries_are_ordered_fractions():
    b = exact_boundaries([20, 50])
    assert list(b.index) == [20, 50]
    # the perturbed copy becomes a minimum before it is better, and the CA optimum turns
    # into a saddle after both (transition-exact chapter)
    assert ((0 < b.pc_minimum) & (b.pc_minimum < b.loss_crossing) & (b.loss_crossing < b.ca_saddle)
            & (b.ca_saddle < 1)).all()
    assert np.isnan(exact_boundaries([4]).loc[4, "ca_saddle"])  # no saddle onset at k = 4


def test_evaluate_predictors_finds_a_separating_feature_on_held_out_seeds():
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for seed in range(200):
        pc = bool(rng.random() < 0.5)
        labels.append(dict(n=10, seed=seed, label=PERTURBED_COPY if pc else CA_OPTIMUM,
                           converged=True))
        for t in (0.0, 5.0):
            x = rng.standard_normal() + (3.0 if (pc and t > 0) else 0.0)
            rows.append(dict(t=t, n=10, seed=seed, max_abs_a=x, mean_direction_cosine=0.0,
                             copies=0, largest_group=1, loss=1.0))
    out = evaluate_predictors(pd.DataFrame(rows), pd.DataFrame(labels))
    assert out.loc[5.0, "feature"] == "max_abs_a" and out.loc[5.0, "held_out_accuracy"] > 0.9
    assert out.loc[0.0, "held_out_accuracy"] < 0.7  # noise at t = 0
    assert (out.held_out_runs == 100).all()
    with pytest.raises(ValueError, match="no label"):
        evaluate_predictors(pd.DataFrame(rows), pd.DataFrame(labels[:10]))
