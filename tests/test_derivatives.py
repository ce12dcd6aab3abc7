"""Closed-form gradient and Hessian (derivatives.py) against autograd (loss.py)."""

import math

import numpy as np
import pytest

from copyaverage import (Teacher, erf_activation, gradient, hessian, pack, population_loss,
                         unpack)
from copyaverage.derivatives import (Objective, closed_form_gradient, closed_form_hessian,
                                     has_closed_form)

CLOSED = ["erf", "erf_plain", "relu"]


def _generic(k=4, n=3, seed=0, scale=0.8):
    """A generic teacher (not orthonormal) and student, so no symmetry hides an error."""
    rng = np.random.default_rng(seed)
    T = Teacher(rng.normal(size=k), rng.normal(size=(k, k + 1)) / math.sqrt(k))
    return T, rng.normal(size=n), scale * rng.normal(size=(n, k + 1))


def _special(T):
    """Copies, an anti-copy, an average, a tiny and a large neuron (orthonormal teacher)."""
    V = T.V
    a = np.array([1.0, 0.6, -0.4, 0.3, 2.0])
    W = np.array([V[0], 0.5 * (V[1] + V[2]), -1.3 * V[2], 1e-3 * (V[0] - V[3]), 3.0 * V[3]])
    W[1] += 1e-9 * V[3]  # almost, not exactly, an average
    return a, W


@pytest.mark.parametrize("name", CLOSED)
@pytest.mark.parametrize("seed", [0, 1])
def test_generic_points_match_autograd(name, seed):
    T, a, W = _generic(seed=seed)
    ob = Objective(T, name, a.size)
    theta = pack(a, W)
    L, g = ob.loss_and_gradient(theta)
    assert L == pytest.approx(population_loss(a, W, T, name), abs=1e-12)
    assert ob.loss(theta) == pytest.approx(L, abs=1e-13)
    np.testing.assert_allclose(g, gradient(a, W, T, name), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ob.hessian(theta), hessian(a, W, T, name), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", CLOSED)
def test_copies_averages_and_extreme_norms_match_autograd(name):
    T = Teacher.orthonormal(4)
    a, W = _special(T)
    np.testing.assert_allclose(closed_form_gradient(a, W, T, name), gradient(a, W, T, name),
                               rtol=0, atol=1e-10)
    H = closed_form_hessian(a, W, T, name)
    assert np.all(np.isfinite(H))
    np.testing.assert_allclose(H, hessian(a, W, T, name), rtol=0, atol=1e-10)
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-13)


def test_other_erf_scale():
    act = erf_activation(0.37)
    T, a, W = _generic(seed=3)
    np.testing.assert_allclose(closed_form_hessian(a, W, T, act), hessian(a, W, T, act),
                               rtol=0, atol=1e-10)


def test_hessian_is_the_derivative_of_the_gradient():
    """Third route: central differences of the closed-form gradient."""
    T, a, W = _generic(k=3, n=2, seed=7)
    ob = Objective(T, "erf", 2)
    theta = pack(a, W)
    eps = 1e-6
    H_fd = np.array([(ob.gradient(theta + eps * e) - ob.gradient(theta - eps * e)) / (2 * eps)
                     for e in np.eye(theta.size)])
    np.testing.assert_allclose(ob.hessian(theta), H_fd, atol=1e-8)


def test_fallback_for_quadrature_activations():
    """tanh has no closed form: Objective falls back on autograd. Checked against central
    differences of the loss (copyaverage.gradient would be the fallback itself)."""
    T, a, W = _generic(k=2, n=1, seed=4)
    assert not has_closed_form("tanh") and has_closed_form("relu")
    ob = Objective(T, "tanh", 1)
    theta = pack(a, W)
    loss = lambda th: population_loss(*unpack(th, 1, T.d), T, "tanh")  # noqa: E731
    eps = 1e-6
    fd = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps)
                   for e in np.eye(theta.size)])
    L, g = ob.loss_and_gradient(theta)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)
    assert L == pytest.approx(loss(theta), abs=1e-15)
    assert np.abs(g).max() > 1e-3  # not a critical point: the comparison has something to compare


def test_bad_input():
    T = Teacher.orthonormal(2)
    with pytest.raises(ValueError, match="n must be"):
        Objective(T, "erf", 0)
    with pytest.raises(ValueError, match="Teacher"):
        Objective("T", "erf", 1)
    ob = Objective(T, "relu", 1)
    with pytest.raises(ValueError, match="theta must have shape"):
        ob.gradient(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        ob.gradient(np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="zero student vector"):
        ob.hessian(np.array([1.0, 0.0, 0.0, 0.0]))


def test_objective_refuses_complex_and_too_large_parameters():
    """The engine's objective used to drop imaginary parts silently and had no weight limit."""
    from copyaverage.derivatives import Objective
    from copyaverage.teacher import MAX_WEIGHT

    T = Teacher.orthonormal(3)
    ob = Objective(T, "erf", 1)
    theta = np.concatenate([[1.0], T.V[0]])
    assert np.isfinite(ob.loss(theta))
    with pytest.raises(ValueError, match="complex"):
        ob.loss_and_gradient(theta + 0j)
    with pytest.raises(ValueError, match="MAX_WEIGHT"):
        ob.gradient(theta * 2 * MAX_WEIGHT)
