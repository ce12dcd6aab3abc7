"""Large-k boundaries and k -> infinity limits of the width transition.

The closed-form moments are checked against Gauss-Hermite quadrature, the
boundaries found alone against those of the full table ``transition(k)``, and
the limits against the exact transition at growing k.
"""

import math

import numpy as np
import pytest
from scipy.integrate import quad

from copyaverage import Teacher, erf_activation, transition
from copyaverage.asymptotics import (
    ca_saddle_constant,
    ca_saddle_onset,
    gaussian_moments,
    loss_crossing_limit,
    loss_gap_limit,
    pc_minimum_onset,
)
from copyaverage.exact_transition import (
    perturbed_copy,
    perturbed_copy_coordinates,
    perturbed_copy_params,
)


@pytest.mark.parametrize("scale", [2**-0.5, 0.4, 0.8, 2.0])
def test_gaussian_moments_match_quadrature(scale):
    def mean(f):  # E f(z), z ~ N(0, 1), by adaptive quadrature
        return quad(lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                    -math.inf, math.inf, epsabs=1e-15, epsrel=1e-13, limit=200)[0]

    def d1(z):
        return 2 * scale / math.sqrt(math.pi) * math.exp(-(scale * z) ** 2)

    m = gaussian_moments(erf_activation(scale))
    slope = mean(d1)
    assert m["power"] == pytest.approx(mean(lambda z: math.erf(scale * z) ** 2), rel=1e-11)
    assert m["slope"] == pytest.approx(slope, rel=1e-11)
    assert m["V"] == pytest.approx(mean(lambda z: d1(z) ** 2) - slope**2, rel=1e-10)
    assert m["D"] == pytest.approx(m["power"] - slope**2, rel=1e-12)
    assert m["third"] == pytest.approx(
        mean(lambda z: d1(z) * (4 * scale**4 * z * z - 2 * scale**2)), rel=1e-10)


def test_erf_closed_forms():
    m = gaussian_moments("erf")
    assert m["D"] == pytest.approx(1 / 3 - 1 / math.pi, rel=1e-14)
    assert m["V"] == pytest.approx((2 / math.sqrt(3) - 1) / math.pi, rel=1e-14)
    nu = (2 / math.sqrt(3) - 1) / (2 / math.sqrt(3) + math.pi / 3 - 2)
    assert loss_crossing_limit() == pytest.approx(nu, rel=1e-14)
    assert ca_saddle_constant() == pytest.approx(1 / math.sqrt(8 * (2 / math.sqrt(3) - 1)),
                                                 rel=1e-14)
    assert loss_gap_limit(loss_crossing_limit()) == pytest.approx(0, abs=1e-15)


def test_loss_crossing_approaches_its_limit():
    nu = loss_crossing_limit()
    errors = [abs(transition(k).attrs["loss_crossings"][-1] / k - nu) for k in (100, 1000)]
    assert errors[1] < errors[0] / 5 and errors[1] < 2e-3


def test_ca_saddle_onset_agrees_with_the_table():
    for k in (50, 100):
        (onset,) = transition(k).attrs["ca_stability_changes"]
        assert ca_saddle_onset(k) == pytest.approx(onset, abs=1e-7)
    # and its group size approaches the conjectured c sqrt(k) at rate k^(-1/2)
    gaps = [abs((k - ca_saddle_onset(k)) / math.sqrt(k) - ca_saddle_constant())
            for k in (10**4, 10**6)]
    assert gaps[1] < gaps[0] / 5 and gaps[1] < 2e-3


def test_pc_minimum_onset_agrees_with_the_table():
    onset = transition(100).attrs["pc_stability_changes"][-1]
    assert pc_minimum_onset(100) == pytest.approx(onset, abs=1e-5)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"nu = n / k"):
        loss_gap_limit(0.0)
    with pytest.raises(ValueError, match=r"nu = n / k"):
        loss_gap_limit(float("nan"))
    with pytest.raises(ValueError, match="k must be"):
        ca_saddle_onset(10)
    with pytest.raises(ValueError, match="k must be"):
        ca_saddle_onset(float("inf"))
    with pytest.raises(ValueError, match="k must be"):
        pc_minimum_onset(20)
    with pytest.raises(ValueError, match="erf family"):
        loss_crossing_limit("relu")


# ------------------------------------------- reading the family off a network ---
def test_coordinates_undo_permutations_and_sign_flips():
    k, n = 12, 7
    a, W = perturbed_copy(k, n)
    rng = np.random.default_rng(1)
    perm = rng.permutation(k)
    rows = rng.permutation(n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    W2 = np.zeros_like(W)
    W2[:, perm] = W[:, :k]
    W2[:, k] = W[:, k]
    params, deviation = perturbed_copy_coordinates((a * sign)[rows], (W2 * sign[:, None])[rows], k)
    assert np.allclose(params, perturbed_copy_params(k, n), rtol=0, atol=1e-14)
    assert deviation <= 1e-14


def test_coordinates_measure_the_distance_to_the_family():
    k, n = 9, 4
    a, W = perturbed_copy(k, n)
    W = W.copy()
    W[0, k] = 1e-3  # a weight on the coordinate no teacher neuron uses
    _, deviation = perturbed_copy_coordinates(a, W, k)
    assert deviation == pytest.approx(1e-3, rel=1e-6)


def test_coordinates_reject_what_is_not_a_perturbed_copy():
    k = 6
    T = Teacher.orthonormal(k)
    W = np.zeros((2, k + 1))
    W[:, 0] = 1.0  # both students copy teacher neuron 0
    with pytest.raises(ValueError, match="same teacher neuron"):
        perturbed_copy_coordinates(np.ones(2), W, k)
    with pytest.raises(ValueError, match="shape"):
        perturbed_copy_coordinates(np.ones(2), np.zeros((2, k)), k)
    with pytest.raises(ValueError, match="finite"):
        perturbed_copy_coordinates(np.array([1.0, np.nan]), np.eye(2, k + 1), k)
    assert T.k == k


def test_ca_saddle_equation_is_the_block_onset():
    """The closed form for erf(x / sqrt 2) against the 2 x 2 block (bisection)."""
    from copyaverage.asymptotics import ca_saddle_equation, ca_saddle_onset_closed_form

    for k in (20, 50, 100, 10**4):
        n = ca_saddle_onset_closed_form(k)
        assert abs(ca_saddle_equation(k - n + 1, n - 1)) <= 1e-12  # a root indeed
        assert n == pytest.approx(ca_saddle_onset(k), abs=1e-7)
    # 1 / F(m) - 1 = 1 / (8 m^2) + O(m^-4): the constant c
    m = np.array([1e2, 1e3, 1e4])
    excess = ca_saddle_equation(m, 1.0) + (2 / math.sqrt(3) - 1)  # = 1 / F - 1 at p = 1
    assert np.allclose(excess * 8 * m**2, 1, rtol=1e-3)
    with pytest.raises(ValueError, match="m >= 2"):
        ca_saddle_equation(1.0, 5.0)
