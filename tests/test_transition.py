"""The width transition: reduced loss, perturbed copies, block spectra, the table.

Every test pits two routes against each other: the four-parameter reduced loss
against the population loss of the full network, the reduced Newton solution
against the full gradient and against gradient flow, the block spectra against
``numpy.linalg.eigvalsh`` of the dense closed-form Hessian, eigenvalue by
eigenvalue with multiplicities.
"""

import numpy as np
import pytest

from copyaverage import Teacher, erf_activation, pack, population_loss
from copyaverage.classify import PERTURBED_COPY, classify
from copyaverage.configurations import ca_optimum_point
from copyaverage.derivatives import Objective
from copyaverage.experiments import perturbed_copy_point
from copyaverage.exact_transition import (
    ca_optimum_spectrum,
    perturbed_copy,
    perturbed_copy_branch,
    perturbed_copy_network,
    perturbed_copy_params,
    perturbed_copy_spectrum,
    reduced_loss,
    transition,
)


# ------------------------------------------------------------ reduced loss ---
@pytest.mark.parametrize("k,n", [(2, 1), (5, 1), (7, 3), (12, 5), (20, 19), (9, 2)])
def test_reduced_loss_is_the_population_loss_of_the_family(k, n):
    rng = np.random.default_rng(k * 100 + n)
    T = Teacher.orthonormal(k)
    for _ in range(3):
        params = rng.normal(size=4) * np.array([1.0, 0.7, 0.3, 0.3])
        a, W = perturbed_copy_network(params, k, n)
        assert a.shape == (n,) and W.shape == (n, k + 1)
        assert abs(reduced_loss(params, k, n) - population_loss(a, W, T, "erf")) <= 1e-13


def test_reduced_loss_other_erf_scale():
    act = erf_activation(0.8)
    params = np.array([1.3, 0.8, -0.1, 0.05])
    a, W = perturbed_copy_network(params, 9, 4)
    assert abs(reduced_loss(params, 9, 4, act)
               - population_loss(a, W, Teacher.orthonormal(9), act)) <= 1e-13


def test_gradient_at_a_symmetric_point_stays_in_the_family():
    """Symmetric criticality, checked: at any (non-critical) point of the family the
    full gradient has the family's own pattern, so it vanishes once the four
    reduced equations hold."""
    k, n = 11, 6
    params = np.array([0.9, 0.7, 0.12, -0.05])
    a, W = perturbed_copy_network(params, k, n)
    g = Objective(Teacher.orthonormal(k), "erf", n).gradient(pack(a, W))
    ga, gW = g[:n], g[n:].reshape(n, k + 1)
    assert np.ptp(ga) <= 1e-14
    diag = gW[np.arange(n), np.arange(n)]
    off = gW[:, :n][~np.eye(n, dtype=bool)]
    assert np.ptp(diag) <= 1e-14 and np.ptp(off) <= 1e-14 and np.ptp(gW[:, n:k]) <= 1e-14
    assert np.max(np.abs(gW[:, k])) == 0.0
    assert np.linalg.norm(g) > 1e-3  # not a critical point: the check is not empty


# --------------------------------------------------------- perturbed copies ---
@pytest.mark.parametrize("k,n", [(8, 6), (12, 4), (12, 11), (20, 3), (20, 10), (50, 25), (50, 3)])
def test_perturbed_copy_is_a_critical_point_of_the_full_loss(k, n):
    a, W = perturbed_copy(k, n)
    obj = Objective(Teacher.orthonormal(k), "erf", n)
    loss, g = obj.loss_and_gradient(pack(a, W))
    assert np.linalg.norm(g) <= 1e-12
    # the population loss sums terms ~ a^2 (a = 62 at k = 50, n = 3): round-off ~ 1e-16 a^2
    assert abs(loss - reduced_loss(perturbed_copy_params(k, n), k, n)) <= 1e-13 * max(1, a[0]**2)


@pytest.mark.parametrize("k,n", [(8, 6), (8, 7), (12, 9), (12, 11)])
def test_gradient_flow_from_near_copies_ends_at_the_perturbed_copy(k, n):
    T = Teacher.orthonormal(k)
    r = perturbed_copy_point(n, T, "erf")
    assert classify(r.a, r.W, T, "erf").label == PERTURBED_COPY
    a, W = perturbed_copy(k, n)
    assert abs(r.loss - population_loss(a, W, T, "erf")) <= 1e-10
    # same point, not only the same loss: the flow keeps student i on teacher neuron i
    assert np.max(np.abs(r.W - W)) <= 1e-6 and np.max(np.abs(r.a - a)) <= 1e-6


def test_branch_ends_at_a_fold_or_on_the_ca_optimum():
    small = perturbed_copy_branch(20)
    assert small.end.kind == "ca_optimum" and small.end.n == 1.0
    T = Teacher.orthonormal(20)
    a_ca, W_ca = ca_optimum_point(1, T, "erf")
    a, W = perturbed_copy(20, 1)
    assert np.allclose(a, a_ca, rtol=0, atol=1e-12) and np.allclose(W, W_ca, rtol=0, atol=1e-12)
    big = perturbed_copy_branch(50)
    assert big.end.kind == "fold" and 2.0 < big.end.n < 2.1
    with pytest.raises(ValueError, match="fold at n = 2.034"):
        perturbed_copy(50, 2)
    with pytest.raises(ValueError, match="fold"):
        perturbed_copy(50, 1)


# ----------------------------------------------------------- block spectra ---
def _assert_same_spectrum(spectrum, H, k, n):
    dense = np.linalg.eigvalsh(H)
    blocks = spectrum.expanded()
    assert spectrum.size == n * (k + 2) == dense.size == blocks.size
    assert np.all(np.diff(blocks) >= 0)
    scale = np.max(np.abs(dense))
    assert np.max(np.abs(blocks - dense)) <= 1e-9 * scale
    big = np.abs(dense) >= 1e-5 * scale  # where eigvalsh itself is relatively accurate
    assert np.max(np.abs(blocks - dense)[big] / np.abs(dense[big])) <= 1e-9


def test_perturbed_copy_spectrum_matches_the_dense_hessian_at_k20():
    k = 20
    T = Teacher.orthonormal(k)
    for n in range(1, k):
        obj = Objective(T, "erf", n)
        H = obj.hessian(pack(*perturbed_copy(k, n)))
        _assert_same_spectrum(perturbed_copy_spectrum(k, n), H, k, n)


@pytest.mark.parametrize("n", [3, 12])
def test_perturbed_copy_spectrum_matches_the_dense_hessian_at_k50(n):
    k = 50
    H = Objective(Teacher.orthonormal(k), "erf", n).hessian(pack(*perturbed_copy(k, n)))
    _assert_same_spectrum(perturbed_copy_spectrum(k, n), H, k, n)


def test_ca_optimum_spectrum_matches_the_dense_hessian_at_k20():
    k = 20
    T = Teacher.orthonormal(k)
    for n in range(1, k):
        H = Objective(T, "erf", n).hessian(pack(*ca_optimum_point(n, T, "erf")))
        _assert_same_spectrum(ca_optimum_spectrum(k, n), H, k, n)


@pytest.mark.parametrize("n", [2, 45])
def test_ca_optimum_spectrum_matches_the_dense_hessian_at_k50(n):
    k = 50
    T = Teacher.orthonormal(k)
    H = Objective(T, "erf", n).hessian(pack(*ca_optimum_point(n, T, "erf")))
    _assert_same_spectrum(ca_optimum_spectrum(k, n), H, k, n)


def test_spectrum_multiplicities_and_counts():
    sp = ca_optimum_spectrum(50, 47)
    neg, zero, pos = sp.count()
    assert (neg, zero, pos) == (3, 0, 47 * 52 - 3)  # k - n negative directions
    assert set(sp.components[: 1]) == {"std_m"}
    assert sp.multiplicities[0] == 3


def test_tiny_eigenvalues_of_graded_blocks_in_double_match_long_double():
    """At k = 1000 the CA optimum's trivial block spans ~21 orders of magnitude;
    the Jacobi routine gets its smallest eigenvalue in double as in long double."""
    from copyaverage.exact_transition import _block_spectra, _ca_base

    base = _ca_base(1000.0, np.array([4.0, 300.0, 900.0]), 1.0)
    lo = _block_spectra(base, 1.0, extended=False)[0][1]
    hi = _block_spectra(base, 1.0, extended=True)[0][1]
    assert np.max(lo[:, -1] / lo[:, 0]) > 1e14  # graded indeed
    assert np.allclose(lo, hi, rtol=1e-6, atol=0)


# ------------------------------------------------------------ the table ---
def test_transition_at_k50_agrees_with_the_gradient_flow_data():
    """The book's committed flow data at k = 50: perturbed copies lower from n = 38,
    CA optimum a minimum up to n = 44 and a saddle with k - n negative directions
    from n = 45, perturbed copies reached by the flow from n = 23 (so they are
    minima there)."""
    T = transition(50)
    assert list(T["n"]) == list(range(1, 50))
    assert T.attrs["pc_lower_from"] == 38
    (cross,) = T.attrs["loss_crossings"]
    assert 37 < cross < 38
    assert T.attrs["ca_minimum_up_to"] == 44
    (ca_change,) = T.attrs["ca_stability_changes"]
    assert 44 < ca_change < 45
    late = T[T["n"] >= 45]
    assert list(late["ca_negative"]) == list(50 - late["n"])
    assert T.attrs["pc_minimum_from"] <= 23
    assert T.attrs["branch_end_kind"] == "fold" and T.attrs["branch_end"] < 3
    assert np.isnan(T.loc[T["n"] == 2, "pc_loss"]).all()
    # the columns are the closed forms they claim to be
    row = T[T["n"] == 40].iloc[0]
    a, W = perturbed_copy(50, 40)
    assert abs(row["pc_loss"] - population_loss(a, W, Teacher.orthonormal(50), "erf")) <= 1e-12
    assert row["pc_min_eigenvalue"] == pytest.approx(perturbed_copy_spectrum(50, 40).smallest,
                                                     rel=1e-9)
    assert row["ca_min_eigenvalue"] == pytest.approx(ca_optimum_spectrum(50, 40).smallest,
                                                     rel=1e-9)


# ----------------------------------------------------------------- errors ---
def test_clear_errors():
    with pytest.raises(ValueError, match="erf family"):  # perturbed_copy takes ReLU
        perturbed_copy_params(10, 5, "relu")
    with pytest.raises(ValueError, match="1 <= n < k"):
        perturbed_copy(10, 10)
    with pytest.raises(ValueError, match="1 <= n < k"):
        perturbed_copy(10, 0)
    with pytest.raises(ValueError, match="integer"):
        perturbed_copy(10, 4.5)
    with pytest.raises(ValueError, match="integer"):
        ca_optimum_spectrum(10.0, 4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        reduced_loss([1.0, 1.0, 0.0], 10, 4)
    with pytest.raises(ValueError, match="finite"):
        reduced_loss([1.0, np.nan, 0.0, 0.0], 10, 4)
    with pytest.raises(ValueError, match="1 <= n <= k"):
        reduced_loss([1.0, 1.0, 0.0, 0.0], 4, 5.5)
    with pytest.raises(ValueError, match="k must be an integer >= 3"):
        transition(2)
    with pytest.raises(ValueError, match="1 <= n < k"):
        perturbed_copy_network([1.0, 1.0, 0.0, 0.0], 5, 5)
