"""The one-neuron student: closed forms against brute force, reduced against full loss."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import special_ortho_group

from copyaverage import Teacher, erf_activation, gradient, population_loss
from copyaverage.critical import search_critical_points
from copyaverage.one_neuron import (
    _ray_critical,
    best_of_random_starts,
    gelu_ray_loss,
    gelu_relu_limit,
    is_unit_orthonormal,
    one_neuron_critical_points,
    one_neuron_optimum,
    one_neuron_solution,
    optimal_loss,
    optimal_loss_asymptote,
    profiled_loss,
    ray_profile,
    reduced_loss,
    silent_loss,
)

ERF_SCALES = [1 / math.sqrt(2), 1.0, 2.5]


@pytest.mark.parametrize("m, scale", [(2, ERF_SCALES[0]), (5, ERF_SCALES[0]), (3, ERF_SCALES[1]),
                                      (4, ERF_SCALES[2])])
def test_erf_closed_form_is_the_brute_force_minimum(m, scale):
    act = erf_activation(scale)
    T = Teacher.orthonormal(m)
    best = best_of_random_starts(T, act, starts=10, seed=m)
    opt = one_neuron_optimum(m, act)
    assert best.fun == pytest.approx(opt.loss, abs=1e-10)
    a, W = one_neuron_solution(T, act)
    assert population_loss(a, W, T, act) == pytest.approx(opt.loss, abs=1e-14)
    # the minimizer is (a*, w*) or its mirror image
    sign = np.sign(best.x[0])
    np.testing.assert_allclose(sign * best.x, np.concatenate([a, W[0]]), atol=2e-5)
    # the formulas: a* = m, |w*|^2 = 1 / (m (1 + c) - c), c = 2 s^2
    c = 2 * scale**2
    assert opt.a == m and opt.norm == pytest.approx(1 / math.sqrt(m * (1 + c) - c), rel=1e-15)


@pytest.mark.parametrize("m", [2, 5])
def test_relu_closed_form_is_the_brute_force_minimum(m):
    T = Teacher.orthonormal(m)
    best = best_of_random_starts(T, "relu", starts=8, seed=m)
    opt = one_neuron_optimum(m, "relu")
    assert best.fun == pytest.approx(opt.loss, abs=1e-9)
    a, w = best.x[0], best.x[1:]
    r = np.linalg.norm(w)
    # only the product a |w| is determined; the direction is +sum v_j
    assert a * r == pytest.approx(opt.a * opt.norm, rel=1e-6)
    np.testing.assert_allclose(w / r, T.V.sum(0) / math.sqrt(m), atol=1e-6)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus"])
def test_numerical_optimum_is_the_brute_force_minimum(name):
    m = 3
    T = Teacher.orthonormal(m)
    opt = one_neuron_optimum(m, name)
    best = best_of_random_starts(T, name, starts=3, seed=1)
    assert best.fun == pytest.approx(opt.loss, abs=1e-9)
    a, W = one_neuron_solution(T, name)
    assert population_loss(a, W, T, name) == pytest.approx(opt.loss, abs=1e-13)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "gelu", "relu", "erf"])
def test_best_direction_at_fixed_norm_is_the_average(name):
    """Reduced problem at fixed |w|: no direction (in or out of the span) beats +sum v_j."""
    m, r = 3, 0.9
    rng = np.random.default_rng(7)
    uniform = reduced_loss(r, np.ones(m) / math.sqrt(m), name)
    # 150 random directions on the sphere of the span, 50 partly outside it
    X = rng.normal(size=(200, m))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X[150:] *= rng.uniform(0.3, 1.0, size=(50, 1))
    losses = np.array([reduced_loss(r, u, name) for u in X])
    assert losses.min() > uniform
    # a local search from the best sample ends at the average
    x0 = X[np.argmin(losses)]
    res = minimize(lambda x: reduced_loss(r, x / max(1.0, np.linalg.norm(x)), name), x0,
                   method="Nelder-Mead", options=dict(xatol=1e-7, fatol=1e-12, maxiter=600))
    assert res.fun == pytest.approx(uniform, abs=1e-8)
    assert np.allclose(res.x / np.linalg.norm(res.x), np.ones(m) / math.sqrt(m), atol=1e-3)


@pytest.mark.parametrize("name", ["erf", "relu", "tanh", "softplus", "gelu"])
def test_reduced_loss_equals_full_loss(name):
    m = 3
    T = Teacher.orthonormal(m)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.normal(size=m + 1)
        x /= np.linalg.norm(x)
        r, a = rng.uniform(0.3, 1.5), rng.normal()
        w = r * x
        assert reduced_loss(r, x[:m], name, a=a) == pytest.approx(
            population_loss([a], w[None, :], T, name), abs=1e-12)
        # optimal a: the reduced loss is the minimum over a
        assert reduced_loss(r, x[:m], name) <= population_loss([a], w[None, :], T, name) + 1e-14


def test_erf_numeric_route_matches_closed_form():
    """The generic ray scan (used for tanh etc.) applied to erf recovers the closed form."""
    act = erf_activation(1.0)
    for m in (2, 4):
        crit = [p for p in _ray_critical(m, act) if p["kind"] == "max" and p["sign"] > 0]
        assert len(crit) == 1
        opt = one_neuron_optimum(m, act)
        assert crit[0]["r"] == pytest.approx(opt.norm, rel=1e-12)
        assert crit[0]["a"] == pytest.approx(opt.a, rel=1e-12)


@pytest.mark.parametrize("name", ["erf", "relu"])
def test_optimal_loss_formula_and_asymptote(name):
    ms = np.array([2, 5, 20, 100, 1000])
    exact = np.array([one_neuron_optimum(int(m), name).loss for m in ms])
    np.testing.assert_allclose(optimal_loss(ms, name), exact, rtol=1e-13)
    err = np.abs(optimal_loss(ms.astype(float), name) - optimal_loss_asymptote(ms, name))
    # erf: error O(m^-3); ReLU: O(m^-1/2)
    scaled = err * (ms**3.0 if name == "erf" else np.sqrt(ms))
    assert np.all(scaled[1:] < 2 * scaled[0] + 1e-9)
    assert err[-1] < (1e-9 if name == "erf" else 1e-2)


def test_silent_loss_is_the_loss_of_the_zero_student():
    for name in ("erf", "relu", "sigmoid"):
        T = Teacher.orthonormal(4)
        assert silent_loss(4, name) == pytest.approx(
            population_loss([0.0], np.ones((1, T.d)), T, name), abs=1e-13)


def _matches(res, point, relu):
    a, w, pa, pw = res.a[0], res.W[0], point.a[0], point.W[0]
    if relu:  # compare along the ray: direction and a |w|
        return (np.allclose(w / np.linalg.norm(w), pw / np.linalg.norm(pw), atol=1e-7)
                and abs(a * np.linalg.norm(w) - pa * np.linalg.norm(pw)) < 1e-7)
    return abs(a - pa) < 1e-7 and np.allclose(w, pw, atol=1e-7)


@pytest.mark.parametrize("name, m, starts", [("erf", 3, 10), ("relu", 2, 8)])
def test_critical_point_list_is_complete(name, m, starts):
    """Minimizing |grad L|^2 from random starts finds only listed points (or a = 0)."""
    T = Teacher.orthonormal(m)
    listed = one_neuron_critical_points(T, name)
    assert all(p.grad_norm < 1e-13 for p in listed)
    found = search_critical_points(T, name, starts=starts, seed=1)
    nontrivial = [r for r in found if abs(r.a[0]) > 1e-6]
    for r in nontrivial:
        assert any(_matches(r, p, name == "relu") for p in listed), (r.a, r.W)
    assert nontrivial  # the search did reach listed points


def test_critical_point_types():
    T = Teacher.orthonormal(3)
    erf_pts = one_neuron_critical_points(T, "erf")
    assert len(erf_pts) == 2 and all(p.kind == "minimum" for p in erf_pts)
    relu_pts = one_neuron_critical_points(T, "relu")
    assert [p.label.split(" ")[0] for p in relu_pts] == ["average", "anti-average"]
    # the rescaling (a, w) -> (a / t, t w) is a flat direction of every ReLU critical point
    assert all(p.n_zero == 1 for p in relu_pts)
    assert relu_pts[1].kind == "saddle" and relu_pts[1].n_negative == T.d - 1


def test_gelu_has_no_finite_optimum_and_two_routes_agree():
    m = 3
    with pytest.raises(ValueError, match="no optimal one-neuron gelu student"):
        one_neuron_optimum(m, "gelu")
    norms = np.array([0.5, 2.0])
    np.testing.assert_allclose([gelu_ray_loss(m, r) for r in norms],
                               ray_profile(m, "gelu", norms), atol=1e-12)
    far = [gelu_ray_loss(m, r) for r in (10.0, 100.0, 1000.0)]
    limit = gelu_relu_limit(m)
    assert far[0] > far[1] > far[2] > limit > far[2] - 1e-4
    # for m = 1 the copy is optimal: loss 0 at |w| = 1, limit above it
    assert one_neuron_optimum(1, "gelu").loss == pytest.approx(0.0, abs=1e-13)
    assert gelu_relu_limit(1) > 1e-3


def test_rotated_orthonormal_teacher_uses_the_closed_form():
    rot = special_ortho_group.rvs(5, random_state=2)
    T = Teacher(np.ones(3), np.eye(3, 5) @ rot)
    assert is_unit_orthonormal(T)
    a, W = one_neuron_solution(T, "erf")
    assert population_loss(a, W, T, "erf") == pytest.approx(optimal_loss(3, "erf"), abs=1e-14)
    np.testing.assert_allclose(W[0] / np.linalg.norm(W[0]), T.V.sum(0) / math.sqrt(3), atol=1e-14)


def test_generic_teacher_falls_back_on_numerical_minimization():
    rng = np.random.default_rng(4)
    T = Teacher(np.array([1.0, -0.5]), rng.normal(size=(2, 3)))
    assert not is_unit_orthonormal(T)
    a, W = one_neuron_solution(T, "erf")
    assert a.shape == (1,) and W.shape == (1, 3)
    assert np.linalg.norm(gradient(a, W, T, "erf")) < 1e-6
    best = best_of_random_starts(T, "erf", starts=5, seed=9)
    assert population_loss(a, W, T, "erf") <= best.fun + 1e-9


def test_bad_input():
    T = Teacher.orthonormal(3)
    with pytest.raises(ValueError, match="starts must be an integer >= 1"):
        best_of_random_starts(T, "erf", starts=0)
    with pytest.raises(ValueError, match="integer >= 1"):
        one_neuron_optimum(0, "erf")
    with pytest.raises(ValueError, match="integer >= 1"):
        one_neuron_optimum(2.0, "erf")
    with pytest.raises(ValueError, match="unknown activation"):
        one_neuron_optimum(2, "swish")
    with pytest.raises(ValueError, match="unit-orthonormal"):
        one_neuron_critical_points(Teacher(np.array([1.0, 2.0]), np.eye(2, 3)), "erf")
    with pytest.raises(ValueError, match="sum u_j"):
        reduced_loss(1.0, [0.9, 0.9], "erf")
    with pytest.raises(ValueError, match="norm must be positive"):
        reduced_loss(0.0, [0.5, 0.5], "erf")
    with pytest.raises(ValueError, match="m must be >= 1"):
        optimal_loss(0.5, "erf")
    with pytest.raises(ValueError, match="only erf and relu"):
        optimal_loss_asymptote(3, "tanh")
    with pytest.raises(ValueError, match="teacher must be"):
        is_unit_orthonormal(T.V)


def test_profiled_loss_vectorized_matches_reduced_loss():
    T = Teacher.orthonormal(2)
    rng = np.random.default_rng(5)
    W = rng.normal(size=(300, T.d))
    for name in ("erf", "relu"):
        got = profiled_loss(W, T, name, chunk=64)
        want = [reduced_loss(np.linalg.norm(w), w[:2] / np.linalg.norm(w), name) for w in W[:20]]
        np.testing.assert_allclose(got[:20], want, atol=1e-13)
    with pytest.raises(ValueError, match="non-zero"):
        profiled_loss(np.zeros((2, T.d)), T, "erf")


def test_critical_point_label_finds_listed_points_and_relu_rays():
    from copyaverage.one_neuron import critical_point_label

    T = Teacher.orthonormal(3)
    for name in ("erf", "relu"):
        points = one_neuron_critical_points(T, name)
        for p in points:
            assert critical_point_label(p.a, p.W, points, name) == p.label
    relu = one_neuron_critical_points(T, "relu")
    best = relu[0]
    # the same ReLU ray, rescaled: (a, w) -> (a / 2, 2 w)
    assert critical_point_label(best.a / 2, 2 * best.W, relu, "relu") == best.label
    # rescaling is not a symmetry of erf
    erf = one_neuron_critical_points(T, "erf")
    assert critical_point_label(erf[0].a / 2, 2 * erf[0].W, erf, "erf") is None
    assert critical_point_label([0.0], best.W, relu, "relu") == "trivial (a = 0)"
    with pytest.raises(ValueError, match="one-neuron"):
        critical_point_label([1.0, 2.0], np.ones((2, 4)), relu, "relu")
