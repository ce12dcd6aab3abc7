"""Partitions and copy-average (CA) configurations: counts, criticality, optimum, bad input."""

import itertools
import math

import numpy as np
import pytest

from copyaverage import Teacher, erf_activation, gradient, population_loss
from copyaverage.configurations import (
    bell_number,
    ca_optimum_groups,
    ca_optimum_point,
    canonical_groups,
    copy_average_loss,
    copy_average_point,
    integer_partitions,
    nearest_copy_average,
    optimal_copy_average,
    partition_type,
    set_partitions,
    stirling2,
    survey_copy_average,
)
from copyaverage.one_neuron import optimal_loss


def _partition_count(k, n=None):
    """Integer partitions counted by the standard recurrence p(k, largest part <= j)."""
    if n is None:
        P = [[0] * (k + 1) for _ in range(k + 1)]  # P[s][j]: partitions of s, parts <= j
        for j in range(k + 1):
            P[0][j] = 1
        for s in range(1, k + 1):
            for j in range(1, k + 1):
                P[s][j] = P[s][j - 1] + (P[s - j][j] if s >= j else 0)
        return P[k][k]
    # exactly n parts: q(k, n) = q(k - 1, n - 1) + q(k - n, n)
    q = {(0, 0): 1}

    def Q(s, t):
        if (s, t) in q:
            return q[(s, t)]
        v = 0 if s <= 0 or t <= 0 else Q(s - 1, t - 1) + Q(s - t, t)
        q[(s, t)] = v
        return v

    return Q(k, n)


def test_set_partition_counts_are_bell_and_stirling_numbers():
    assert [bell_number(k) for k in range(1, 9)] == [1, 2, 5, 15, 52, 203, 877, 4140]
    for k in range(1, 9):
        parts = set_partitions(k)
        assert len(parts) == bell_number(k) == len(set(parts))
        for n in range(1, k + 1):
            assert len(set_partitions(k, n)) == stirling2(k, n)
    # every output is a partition of range(k), canonical and in the documented order
    for p in set_partitions(5):
        assert sorted(itertools.chain(*p)) == list(range(5))
        assert canonical_groups(p, 5) == p
        assert [b[0] for b in p] == sorted(b[0] for b in p)


def test_integer_partitions_against_recurrence():
    for k in range(1, 13):
        parts = integer_partitions(k)
        assert len(parts) == _partition_count(k) == len(set(parts))
        assert all(sum(p) == k and list(p) == sorted(p, reverse=True) for p in parts)
        for n in range(1, k + 1):
            assert len(integer_partitions(k, n)) == _partition_count(k, n)
            assert all(len(p) == n for p in integer_partitions(k, n))
    assert len(integer_partitions(12)) == 77
    # the set partitions of 6 grouped by type reproduce the integer partitions of 6
    assert {partition_type(p) for p in set_partitions(6)} == set(integer_partitions(6))


@pytest.mark.parametrize("scale", [1 / math.sqrt(2), 1.3])
def test_erf_ca_points_are_critical_with_split_loss(scale):
    act = erf_activation(scale)
    for k in (3, 5):
        T = Teacher.orthonormal(k)
        for groups in set_partitions(k):
            a, W = copy_average_point(groups, T, act)
            assert np.linalg.norm(gradient(a, W, T, act)) < 1e-14
            assert population_loss(a, W, T, act) == pytest.approx(
                copy_average_loss(partition_type(groups), act), abs=1e-14)


def test_ca_point_structure():
    T = Teacher.orthonormal(5)
    a, W = copy_average_point([[3], (0, 4, 1), [2]], T, "erf")
    assert a.shape == (3,) and W.shape == (3, 6)
    np.testing.assert_allclose(W[0], T.V[3])  # a copy
    assert a[0] == 1.0
    e = T.V[[0, 1, 4]].sum(0)
    assert abs(W[1] @ e) / (np.linalg.norm(W[1]) * np.linalg.norm(e)) == pytest.approx(1, abs=1e-15)
    assert a[1] == pytest.approx(3.0)  # a* = m for erf


def test_relu_ca_points_are_not_critical_and_loss_does_not_split():
    T = Teacher.orthonormal(4)
    for groups in ([(0,), (1, 2, 3)], [(0, 1), (2, 3)], [(0, 1), (2,), (3,)]):
        a, W = copy_average_point(groups, T, "relu")
        assert np.linalg.norm(gradient(a, W, T, "relu")) > 0.1
    # two averages: the residual means couple the groups (see the chapter)
    a, W = copy_average_point([(0, 1), (2, 3)], T, "relu")
    split = 2 * optimal_loss(2, "relu")
    mu = (a[0] * np.linalg.norm(W[0]) - 2) / math.sqrt(2 * math.pi)  # mean of each group's residual
    assert population_loss(a, W, T, "relu") == pytest.approx(split + 2 * mu * mu, abs=1e-13)
    assert population_loss(a, W, T, "relu") > split + 1e-3
    with pytest.raises(ValueError, match="only for odd activations"):
        copy_average_loss((2, 2), "relu")


def test_optimal_ca_is_n_minus_one_copies_and_one_average():
    for k in range(2, 10):
        for n in range(1, k + 1):
            sizes, loss, losses = optimal_copy_average(k, n, "erf")
            assert sizes == (k - n + 1,) + (1,) * (n - 1)
            assert loss == pytest.approx(optimal_loss(k - n + 1, "erf"), abs=1e-15)
            assert len(losses) == _partition_count(k, n)


def test_nearest_copy_average_recovers_groups():
    T = Teacher.orthonormal(6)
    groups = [(0, 2), (1,), (3, 4, 5)]
    a, W = copy_average_point(groups, T, "erf")
    found, cosines = nearest_copy_average(a, W, T)
    assert found == groups
    np.testing.assert_allclose(cosines, 1.0, atol=1e-14)
    # flip the sign of one neuron (a symmetry of odd activations): same groups
    a[0], W[0] = -a[0], -W[0]
    assert nearest_copy_average(a, W, T)[0] == groups


def test_bad_input():
    T = Teacher.orthonormal(4)
    with pytest.raises(ValueError, match="must be an integer"):
        set_partitions(3.0)
    with pytest.raises(ValueError, match="must be an integer"):
        integer_partitions(True)
    with pytest.raises(ValueError, match=">= 1"):
        set_partitions(0)
    with pytest.raises(ValueError, match="1 <= n <= k = 3"):
        set_partitions(3, 4)
    with pytest.raises(ValueError, match="1 <= n <= k = 3"):
        integer_partitions(3, 0)
    with pytest.raises(ValueError, match="must be an integer"):
        integer_partitions(3, 1.5)
    with pytest.raises(ValueError, match="missing \\[3\\]"):
        copy_average_point([(0, 1), (2,)], T, "erf")
    with pytest.raises(ValueError, match="more than one place"):
        copy_average_point([(0, 1), (1, 2, 3)], T, "erf")
    with pytest.raises(ValueError, match="out of range"):
        copy_average_point([(0, 1, 2, 3, 4)], T, "erf")
    with pytest.raises(ValueError, match="must not be empty"):
        copy_average_point([(0, 1, 2, 3), ()], T, "erf")
    with pytest.raises(ValueError, match="must be integers"):
        copy_average_point([(0, 1.0), (2, 3)], T, "erf")
    with pytest.raises(ValueError, match="non-empty sequence"):
        copy_average_point("0123", T, "erf")
    with pytest.raises(ValueError, match="teacher must be"):
        copy_average_point([(0,)], None, "erf")
    with pytest.raises(ValueError, match="no optimal one-neuron gelu"):
        copy_average_point([(0, 1, 2), (3,)], T, "gelu")
    with pytest.raises(ValueError, match="stirling|1 <= n <= k"):
        stirling2(3, 5)


def test_survey_matches_direct_computation_and_symmetry():
    rows = survey_copy_average(4, "erf")
    assert len(rows) == bell_number(4)
    assert max(r["grad_norm"] for r in rows) < 1e-14
    # relabelling teacher neurons is a symmetry: the Hessian signature depends on the type only
    by_type = {}
    for r in rows:
        by_type.setdefault(r["type"], set()).add((r["n_negative"], r["n_zero"], r["n_positive"]))
    assert all(len(s) == 1 for s in by_type.values())
    # each record agrees with a direct evaluation
    r = rows[7]
    T = Teacher.orthonormal(4)
    a, W = copy_average_point(r["groups"], T, "erf")
    assert r["loss"] == population_loss(a, W, T, "erf")
    assert r["n"] == len(r["groups"]) and r["type"] == partition_type(r["groups"])


def test_ca_optimum_point_is_n_minus_one_copies_and_one_average():
    assert ca_optimum_groups(5, 3) == ((0,), (1,), (2, 3, 4))
    assert ca_optimum_groups(4, 1) == ((0, 1, 2, 3),)
    T = Teacher.orthonormal(5)
    a, W = ca_optimum_point(3, T, "erf")
    a2, W2 = copy_average_point([(0,), (1,), (2, 3, 4)], T, "erf")
    assert np.array_equal(a, a2) and np.array_equal(W, W2)
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="n"):
            ca_optimum_groups(5, bad)
    with pytest.raises(ValueError, match="Teacher"):
        ca_optimum_point(2, np.eye(3), "erf")


# ------------------------------------------------------------ issue 15, item 7 --
def test_enumerations_refuse_more_than_the_limit_quickly():
    """set_partitions(13) (27.6 million) and integer_partitions(90) (56.6 million) used to
    fill the memory; now they stop at MAX_PARTITIONS with an error naming it. The book's
    largest uses (all set partitions of 8 neurons, integer partitions of 24) stay well below."""
    import time

    from copyaverage.configurations import MAX_PARTITIONS
    assert MAX_PARTITIONS == 100_000 and bell_number(9) < MAX_PARTITIONS < bell_number(10)
    start = time.perf_counter()
    for call in (lambda: set_partitions(13), lambda: set_partitions(20, 10),
                 lambda: set_partitions(1000, 500), lambda: integer_partitions(90),
                 lambda: integer_partitions(500, 40), lambda: survey_copy_average(10, "erf")):
        with pytest.raises(ValueError, match=r"MAX_PARTITIONS = 100,000"):
            call()
    assert time.perf_counter() - start < 10
    assert len(set_partitions(9)) == bell_number(9)
    assert len(set_partitions(200, 200)) == 1 and len(set_partitions(200, 1)) == 1
    assert len(integer_partitions(45)) == _partition_count(45)
    assert integer_partitions(200, 199) == [(2,) + (1,) * 198]
    # the guards' fast counts against the independent recurrences
    from copyaverage.configurations import _integer_partition_count, _set_partition_count
    for k in (1, 2, 7, 30, 46, 60):
        for n in [None, 1, 2, k // 2 + 1, k]:
            if n is None or n <= k:
                capped = min(_partition_count(k, n), MAX_PARTITIONS + 1)
                assert _integer_partition_count(k, n) == capped, (k, n)
    for k in (1, 2, 7, 9, 10, 15):
        for n in [None, 1, 2, k // 2 + 1, k]:
            if n is None or n <= k:
                exact = bell_number(k) if n is None else stirling2(k, n)
                assert _set_partition_count(k, n) == min(exact, MAX_PARTITIONS + 1), (k, n)


def test_signed_cosines_sign_by_outgoing_weight_and_zero_rows():
    import numpy as np

    from copyaverage.configurations import signed_cosines
    from copyaverage.teacher import Teacher

    teacher = Teacher.orthonormal(3)
    W = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    S = signed_cosines(np.array([1.0, -2.0, 0.5]), W, teacher)
    assert np.allclose(S[0], [1, 0, 0])
    assert np.allclose(S[1], [0, 1 / np.sqrt(2), -1 / np.sqrt(2)])  # sign of a flips the row
    assert np.all(S[2] == 0)  # w = 0 points nowhere
