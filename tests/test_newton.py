"""The one Newton implementation (copyaverage.newton): polish towards minima, and the
search for critical points of any type, on quadratics with known answers and on the loss."""

import numpy as np
import pytest

from copyaverage import Teacher
from copyaverage.configurations import ca_optimum_point, copy_average_point
from copyaverage.critical import analyze_point, newton_critical_point
from copyaverage.derivatives import Objective
from copyaverage.loss import pack
from copyaverage.newton import (PolishEnd, cholesky, find_critical, polish, quadratic_regime,
                                shift_for)


class Quadratic:
    """L(x) = 0.5 (x - c)' A (x - c) + 0.1 |x - c|^4 (a cubic gradient term keeps Newton honest);
    raises ValueError where x[0] < forbid (like a ReLU neuron at w = 0)."""

    def __init__(self, A, c, forbid=-np.inf, hessian_scale=1.0):
        self.A, self.c, self.forbid, self.const = np.asarray(A, float), np.asarray(c, float), forbid, 0.0
        self.calls, self.scale = 0, hessian_scale

    def loss_and_gradient(self, x):
        self.calls += 1
        if x[0] < self.forbid:
            self.rejected = True
            raise ValueError("no gradient here")
        e = x - self.c
        r2 = e @ e
        return 0.5 * e @ self.A @ e + 0.1 * r2**2, self.A @ e + 0.4 * r2 * e

    def hessian(self, x):
        e = x - self.c
        return self.scale * (self.A + 0.4 * (e @ e) * np.eye(len(x)) + 0.8 * np.outer(e, e))


def test_polish_converges_quadratically_to_the_minimum():
    q = Quadratic(np.diag([1.0, 10.0, 100.0]), [1.0, 2.0, 3.0])
    p = polish(q, np.array([1.3, 1.8, 3.1]), 1e-13, max_iter=50, max_distance=10.0,
               deadline=np.inf)
    assert p.end is PolishEnd.CONVERGED and p.keep
    np.testing.assert_allclose(p.theta, q.c, atol=1e-13)
    assert np.all(np.diff(p.losses) <= 1e-16) and p.iterations <= 8


def test_polish_guards():
    q = Quadratic(np.diag([1.0, 10.0]), [1.0, 2.0])
    start = np.array([2.0, 2.5])
    p = polish(q, start, 1e-13, max_iter=50, max_distance=1e-3, deadline=np.inf)
    assert p.end is PolishEnd.TOO_FAR and not p.keep
    p = polish(q, start, 1e-13, max_iter=50, max_distance=10.0, deadline=-1.0)
    assert p.end is PolishEnd.TIME_LIMIT and p.iterations == 0
    saddle = Quadratic(np.diag([1.0, -1.0]), [0.0, 0.0])
    p = polish(saddle, np.array([0.1, 0.01]), 1e-13, max_iter=50, max_distance=10.0,
               deadline=np.inf)
    assert p.end is PolishEnd.NOT_POSITIVE_DEFINITE and not p.keep


def test_trial_points_without_a_gradient_are_rejected_not_fatal():
    """A Hessian that underestimates the curvature 3-fold makes the full step overshoot
    into the region without a gradient (x0 < 0.04); the line search must back off."""
    for search in ("polish", "find_critical"):
        q = Quadratic(np.diag([1.0, 1.0]), [0.05, 0.0], forbid=0.04, hessian_scale=0.3)
        q.rejected = False
        start = np.array([0.06, 0.0])
        if search == "polish":
            p = polish(q, start, 1e-13, max_iter=200, max_distance=10.0, deadline=np.inf)
            assert p.keep, p.end  # converged or at its round-off floor (the model is poor)
            x = p.theta
        else:
            r = find_critical(q, start, 1e-13, max_iter=200)
            assert r.converged
            x = r.theta
        assert q.rejected and np.allclose(x, q.c, atol=1e-9)


def test_find_critical_lands_on_a_saddle_that_a_minimizer_leaves():
    saddle = Quadratic(np.diag([2.0, -1.0, 0.5]), [0.3, -0.2, 0.1])
    r = find_critical(saddle, np.array([0.35, -0.1, 0.2]), 1e-14)
    assert r.converged and r.iterations <= 10
    np.testing.assert_allclose(r.theta, saddle.c, atol=1e-13)
    assert r.grad_norms[0] > r.grad_norms[-1] and np.all(np.diff(r.grad_norms) < 0)
    assert r.distance == pytest.approx(np.linalg.norm(np.array([0.05, 0.1, 0.1])), rel=1e-9)


def test_quadratic_regime_near_a_minimum_of_the_loss_and_not_far_from_it():
    T = Teacher.orthonormal(3)
    a, W = ca_optimum_point(2, T, "erf")
    ob = Objective(T, "erf", 2)
    theta = pack(a, W)
    rng = np.random.default_rng(0)
    near = theta + 1e-4 * rng.standard_normal(theta.size)
    H = ob.hessian(near)
    fac = cholesky(H, shift_for(H))
    assert fac is not None and quadratic_regime(ob, near, fac)
    p = polish(ob, near, 1e-12, max_iter=30, max_distance=1.0, deadline=np.inf, fac0=fac)
    assert p.end is PolishEnd.CONVERGED and np.linalg.norm(p.theta - theta) < 1e-10


def test_find_critical_returns_to_an_erf_saddle_and_agrees_with_newton_critical_point():
    """The CA point (0,1 | 2,3) of a k = 4 teacher with n = 2 is critical (paper, Thm 3.1)
    and a saddle; the search returns to it from a perturbation, a minimizer's polish
    refuses to start there."""
    T = Teacher.orthonormal(4)
    a, W = copy_average_point([[0, 1], [2, 3]], T, "erf")
    cp = analyze_point(a, W, T, "erf")
    assert cp.grad_norm < 1e-14 and cp.n_negative > 0  # precondition: a saddle
    ob = Objective(T, "erf", 2)
    theta = pack(a, W)
    start = theta + 1e-5 * np.random.default_rng(1).standard_normal(theta.size)
    r = find_critical(ob, start, 1e-13)
    assert r.converged and np.linalg.norm(r.theta - theta) < 1e-9
    H = ob.hessian(start)
    assert cholesky(H, shift_for(H)) is None
    nr = newton_critical_point(start[:2], start[2:].reshape(2, 5), T, "erf", tol=1e-13)
    assert nr.converged and np.linalg.norm(pack(nr.a, nr.W) - theta) < 1e-9


def test_trust_region_minimum_leaves_the_saddle_that_newton_returns_to():
    """From next to the CA saddle (0,1 | 2,3) (k = 4, n = 2) the trust-region method goes
    downhill to a minimum with lower loss, while Newton's method returns to the saddle."""
    from copyaverage.critical import trust_region_minimum

    T = Teacher.orthonormal(4)
    a, W = copy_average_point([[0, 1], [2, 3]], T, "erf")
    saddle = analyze_point(a, W, T, "erf")
    rng = np.random.default_rng(1)
    a0, W0 = a + 1e-5 * rng.standard_normal(2), W + 1e-5 * rng.standard_normal(W.shape)
    end = analyze_point(*trust_region_minimum(a0, W0, T, "erf"), T, "erf")
    assert end.grad_norm < 1e-9 and end.n_negative == 0
    assert end.loss < saddle.loss - 1e-3


def test_smallest_cosine_of_turned_rows_and_bad_input():
    from copyaverage.critical import smallest_cosine

    W_ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    W = np.array([[3.0, 0.0], [1.0, 1.0]])  # the second row turned by 45 degrees
    assert smallest_cosine(W, W_ref) == pytest.approx(np.sqrt(0.5), rel=1e-14)
    assert smallest_cosine(W_ref, W_ref) == pytest.approx(1.0, rel=1e-14)
    with pytest.raises(ValueError, match="same shape"):
        smallest_cosine(W, W_ref[:1])
    with pytest.raises(ValueError, match="nonzero"):
        smallest_cosine(np.zeros((2, 2)), W_ref)
