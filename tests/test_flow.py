"""Gradient flow: known end points, monotone loss, convergence flags, solvers, bad options."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from copyaverage import Stop, Teacher
from copyaverage.classify import CA_OPTIMUM, classify
from copyaverage.one_neuron import optimal_loss
from copyaverage.derivatives import Objective
from copyaverage.flow import default_tolerance, gradient_flow, initialize
from copyaverage.rkc import RKC, rkc_coefficients


@pytest.fixture(scope="module")
def k3n2():
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=0)
    return T, a0, W0, gradient_flow(a0, W0, T, "erf")


def test_one_neuron_two_teachers_reaches_the_known_optimum():
    """k = 2, n = 1: the end point is the average a = 2, w = (v1 + v2) / sqrt(6)
    (|w|^2 = 1 / (2m - 1) with m = 2), up to the sign symmetry of erf."""
    T = Teacher.orthonormal(2)
    a0, W0 = initialize(1, T, "gaussian", seed=3)
    r = gradient_flow(a0, W0, T, "erf")
    assert r.converged and r.grad_norm <= 1e-12
    s = np.sign(r.a[0])
    np.testing.assert_allclose(s * r.a, [2.0], atol=1e-10)
    np.testing.assert_allclose(s * r.W[0], [1 / math.sqrt(6), 1 / math.sqrt(6), 0.0], atol=1e-10)
    assert r.loss == pytest.approx(optimal_loss(2, "erf"), abs=1e-12)
    assert r.min_eigenvalue > 0  # a strict minimum


def test_k3_n2_reaches_the_ca_optimum(k3n2):
    """The paper's Figure 1 setting: one copy and one average of the other two."""
    T, _, _, r = k3n2
    assert r.converged and r.grad_norm <= default_tolerance("erf") == 1e-12
    c = classify(r.a, r.W, T, "erf", loss=r.loss)
    assert c.label == CA_OPTIMUM
    assert c.group_sizes == (1, 2)
    assert r.loss == pytest.approx(optimal_loss(2, "erf"), abs=1e-12)


def test_loss_never_increases_along_the_trajectory(k3n2):
    _, _, _, r = k3n2
    L = r.trajectory.loss
    assert len(L) > 20 and r.trajectory.t[0] == 0
    assert np.all(np.diff(L) <= 1e-13), np.diff(L).max()
    assert np.all(np.diff(r.trajectory.t) > 0)
    assert r.polish_loss_change <= 1e-14
    assert r.loss <= L[-1] + 1e-14
    # log-spaced times: about 10 per decade
    t = r.trajectory.t[1:]
    assert np.median(np.diff(np.log10(t[t > 1]))) == pytest.approx(0.1, abs=0.03)
    # the recorded parameters reproduce the recorded losses
    ob = Objective(Teacher.orthonormal(3), "erf", 2)
    i = len(L) // 2
    assert ob.loss(r.trajectory.theta[i]) == pytest.approx(L[i], abs=1e-14)


@pytest.mark.parametrize("method", ["rkc", "bdf", "lsoda"])
def test_solvers_reach_the_same_point(method):
    T = Teacher.orthonormal(5)
    a0, W0 = initialize(3, T, "gaussian", seed=1)
    ref = gradient_flow(a0, W0, T, "erf", method="auto", eigenvalues=False)
    r = gradient_flow(a0, W0, T, "erf", method=method, eigenvalues=False)
    assert r.converged and ref.converged
    assert np.linalg.norm(r.theta - ref.theta) < 1e-8
    assert np.all(np.diff(r.trajectory.loss) <= 1e-13)


def test_runs_are_deterministic_through_the_solver_switch():
    """Same initialization, same end point bit for bit, also when RKC hands over to
    the float32-factorized BDF (the switch uses a cost model, not timings)."""
    T = Teacher.orthonormal(20)
    a0, W0 = initialize(10, T, "gaussian", seed=0)  # 220 parameters: RKC first
    r1 = gradient_flow(a0, W0, T, "erf", eigenvalues=False)
    r2 = gradient_flow(a0, W0, T, "erf", eigenvalues=False)
    assert r1.stats["methods"] == ["rkc", "bdf32"] and r1.converged
    assert np.array_equal(r1.theta, r2.theta)


def test_small_smooth_problems_start_with_bdf_and_end_where_rkc_ends():
    """At most BDF_FIRST_MAX_PARAMS parameters: BDF from the start (erf), RKC for
    ReLU; the end point is the one RKC reaches (to well below the 1e-7 re-check)."""
    from copyaverage.ode import BDF_FIRST_MAX_PARAMS

    T = Teacher.orthonormal(12)
    a0, W0 = initialize(11, T, "gaussian", seed=3)
    assert a0.size * (W0.shape[1] + 1) <= BDF_FIRST_MAX_PARAMS
    auto = gradient_flow(a0, W0, T, "erf", eigenvalues=False)
    rkc = gradient_flow(a0, W0, T, "erf", method="rkc", eigenvalues=False)
    assert auto.stats["methods"] == ["bdf"] and auto.converged and rkc.converged
    assert np.max(np.abs(auto.theta - rkc.theta)) < 1e-8
    relu = gradient_flow(*initialize(3, Teacher.orthonormal(4), "gaussian", seed=0),
                         Teacher.orthonormal(4), "relu", eigenvalues=False)
    assert relu.stats["methods"][0] == "rkc"


def test_glorot_and_reproducible_initialization():
    T = Teacher.orthonormal(50)
    a0, W0 = initialize(49, T, "glorot", seed=7)
    a1, W1 = initialize(49, T, "glorot", seed=7)
    assert np.array_equal(a0, a1) and np.array_equal(W0, W1)
    assert not np.array_equal(W0, initialize(49, T, "glorot", seed=8)[1])
    assert W0.std() == pytest.approx(math.sqrt(2 / (51 + 49)), rel=0.05)  # fan_in d, fan_out n
    a, _ = initialize(400, Teacher.orthonormal(500), "glorot", seed=0)
    assert a.std() == pytest.approx(math.sqrt(2 / (400 + 1)), rel=0.1)  # fan_in n, fan_out 1
    _, W = initialize(40, T, "gaussian", seed=0)
    assert W.std() == pytest.approx(0.1, rel=0.05)


def test_a_run_that_cannot_reach_the_tolerance_says_so():
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=0)
    r = gradient_flow(a0, W0, T, "erf", t_max=5.0, eigenvalues=False)
    assert not r.converged and r.status == "not converged"
    assert r.grad_norm > r.tol and "tol" in r.message
    assert r.stop == Stop.T_MAX and r.t_end == 5.0
    r = gradient_flow(a0, W0, T, "erf", max_time=0.01, eigenvalues=False)
    assert r.stop == Stop.TIME_LIMIT and r.status == "not converged"
    # a tolerance below round-off: the run gets to round-off, and says it is not converged
    r = gradient_flow(a0, W0, T, "erf", tol=1e-30, eigenvalues=False)
    assert not r.converged and r.status == "not converged" and r.stop != Stop.CONVERGED
    assert r.grad_norm <= 1e-13 and "1.0e-30" in r.message


def test_relu_flow_converges_with_its_tolerance():
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=1)
    r = gradient_flow(a0, W0, T, "relu")
    assert r.tol == default_tolerance("relu") == 1e-10
    assert r.converged and r.grad_norm <= 1e-10
    assert np.all(np.diff(r.trajectory.loss) <= 1e-13)
    # the rescaling symmetry (a_i, w_i) -> (a_i / c, c w_i) gives n zero modes
    assert np.sum(np.abs(r.hessian_eigenvalues) < 1e-8) >= 2
    # gradient flow conserves a_i^2 - |w_i|^2 for the 1-homogeneous ReLU: along the
    # trajectory up to the ODE error, at the end exactly (restored along the symmetry)
    balance0 = a0**2 - np.sum(W0**2, axis=1)
    th = r.trajectory.theta
    balance = th[:, :2] ** 2 - np.sum(th[:, 2:].reshape(len(th), 2, 4) ** 2, axis=2)
    assert np.abs(balance - balance0).max() < 1e-3
    np.testing.assert_allclose(r.a**2 - np.sum(r.W**2, axis=1), balance0, atol=1e-12)


def test_relu_dying_neuron_is_reported_not_hidden():
    """With this seed one ReLU neuron's w reaches 0 (where the loss is not
    differentiable) in finite time; the run must stop quickly and say so."""
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=0)
    r = gradient_flow(a0, W0, T, "relu", eigenvalues=False)
    assert r.status == "failed" and not r.converged
    assert r.stop == Stop.DYING_NEURON and "reached w = 0" in r.message
    assert r.timings["total"] < 5


def test_relu_neurons_dying_together_are_detected_quickly():
    """Issue 15, defect 1: with n = 1 (or all neurons alike) the dying test was relative
    to the largest |w_j|, so it never fired and the run crawled to the time limit."""
    T = Teacher.orthonormal(3)
    r = gradient_flow(*initialize(1, T, "gaussian", 17), T, "relu", max_time=30,
                      eigenvalues=False)
    assert r.status == "failed" and r.stop == Stop.DYING_NEURON
    assert r.timings["total"] < 10


def test_a_start_at_a_critical_point_ends_at_once():
    """Issue 15, defect 2: a = 0, W = 0 is critical (|g| = 0); the run used to perform a
    Hessian check at every step until the time limit."""
    T = Teacher.orthonormal(3)
    r = gradient_flow(np.zeros(2), np.zeros((2, 4)), T, "erf", max_time=20)
    assert r.converged and r.stop == Stop.CONVERGED and r.grad_norm == 0.0
    assert r.t_end == 0.0 and r.timings["total"] < 5 and r.stats["ode_steps"] == 0
    assert r.hessian_eigenvalues.size == 10 and r.min_eigenvalue < -1  # a saddle, and says so


@pytest.mark.parametrize("case", ["identical erf neurons", "W = 0, a != 0", "relu w = -v",
                                  "tiny weights"])
def test_degenerate_starts_are_not_failures(case):
    """Issue 15, defect 3: symmetric or degenerate starts ended "failed: parameters contain
    NaN" although the input was finite and the point reached critical. A non-finite trial
    point inside a step must be a rejected step. tol = 1e-30 keeps every run flowing to
    t_max, through the BDF phase (where the singular float32 factors were)."""
    T = Teacher.orthonormal(3)
    a1, W1 = initialize(1, T, "gaussian", 0)
    a0, W0, act = {
        "identical erf neurons": (np.repeat(a1, 2), np.tile(W1, (2, 1)), "erf"),
        "W = 0, a != 0": (np.ones(2), np.zeros((2, 4)), "erf"),
        "relu w = -v": (np.ones(2), -np.eye(4)[:2], "relu"),
        "tiny weights": (np.full(2, 1e-300), np.full((2, 4), 1e-300), "erf"),
    }[case]
    r = gradient_flow(a0, W0, T, act, tol=1e-30, max_time=60)
    assert r.status == "not converged" or r.converged, r.message
    assert r.stop not in (Stop.SOLVER_FAILED, Stop.DYING_NEURON), r.message
    assert np.all(np.isfinite(r.theta)) and r.grad_norm < 1e-12
    # the same run with the usual tolerance ends converged at that critical point
    r = gradient_flow(a0, W0, T, act, max_time=60)
    assert r.converged and r.stop == Stop.CONVERGED, r.message


def test_bad_options_raise_clear_errors():
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=0)
    with pytest.raises(ValueError, match="unknown method"):
        gradient_flow(a0, W0, T, "erf", method="euler")
    with pytest.raises(ValueError, match="tol must be positive"):
        gradient_flow(a0, W0, T, "erf", tol=-1e-12)
    with pytest.raises(ValueError, match="rtol must be positive"):
        gradient_flow(a0, W0, T, "erf", rtol=0)
    with pytest.raises(ValueError, match="max_newton_iterations"):
        gradient_flow(a0, W0, T, "erf", max_newton_iterations=0)
    with pytest.raises(ValueError, match="NaN"):
        gradient_flow(a0, np.full_like(W0, np.nan), T, "erf")
    with pytest.raises(ValueError, match="input dimension 3"):
        gradient_flow(a0, W0[:, :3], T, "erf")
    with pytest.raises(ValueError, match="shape"):
        gradient_flow(a0[:1], W0, T, "erf")
    with pytest.raises(ValueError, match="n >= 1"):
        gradient_flow(np.ones(0), np.ones((0, 4)), T, "erf")
    with pytest.raises(ValueError, match="known activations"):
        gradient_flow(a0, W0, T, "swish")
    with pytest.raises(ValueError, match="unknown initialization scheme"):
        initialize(2, T, "he", seed=0)
    with pytest.raises(ValueError, match="n must be"):
        initialize(0, T, "glorot", seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        initialize(2, T, "glorot", seed=-1)
    with pytest.raises(ValueError, match="std"):
        initialize(2, T, "gaussian", seed=0, std=-0.1)
    with pytest.raises(ValueError, match="Teacher"):
        initialize(2, "T", "gaussian", seed=0)


# ------------------------------------------------------------------ RKC ---
def test_rkc_stability_interval_grows_like_s_squared():
    for s in (10, 50, 200):
        assert rkc_coefficients(s)["beta"] == pytest.approx(0.653 * s * s, rel=0.02)
    for s in (2, 3, 50):
        assert rkc_coefficients(s)["c"][-1] == pytest.approx(1.0, abs=1e-9)
        assert rkc_coefficients(s)["beta"] > 0.49 * s * s
    with pytest.raises(ValueError):
        rkc_coefficients(1)


def test_rkc_solves_a_stiff_linear_problem_with_events():
    lam = np.array([1.0, 30.0, 1e4, 1e6])
    sol = solve_ivp(lambda t, y: -lam * y, (0, 3), np.ones(4), method=RKC, rtol=1e-6, atol=1e-9,
                    events=lambda t, y: y[0] - 0.5)
    assert sol.status == 0
    np.testing.assert_allclose(sol.y[:, -1], np.exp(-lam * 3), atol=1e-5)
    assert sol.t_events[0][0] == pytest.approx(math.log(2), abs=1e-5)
    # explicit Euler would need > 3e6 steps (h < 2e-6) for stability alone
    assert sol.t.size < 3000


def test_fresh_jacobian_re_evaluates_after_halvings_and_reaches_the_same_end_point():
    """k = 30, n = 15, Glorot seed 0 reaches the stiff phase (float32 BDF) and halves steps
    there: with fresh_jacobian the extra Jacobians show in njev, and the end point is the
    same minimum as without."""
    from copyaverage.sweep import RunSpec

    spec = RunSpec("erf", 30, 15, 0, "glorot")
    a0, W0 = spec.start()
    plain = gradient_flow(a0, W0, spec.teacher(), "erf")
    fresh = gradient_flow(a0, W0, spec.teacher(), "erf", fresh_jacobian=True)
    assert plain.stats["methods"] == fresh.stats["methods"] == ["rkc", "bdf32"]
    assert fresh.stats["njev"] > plain.stats["njev"]
    assert plain.converged and fresh.converged
    assert np.abs(np.concatenate([plain.a, plain.W.ravel()])
                  - np.concatenate([fresh.a, fresh.W.ravel()])).max() < 1e-7
    assert fresh.options["fresh_jacobian"] is True and "fresh_jacobian" not in plain.options
    with pytest.raises(ValueError, match="fresh_jacobian must be True or False"):
        gradient_flow(a0, W0, spec.teacher(), "erf", fresh_jacobian="yes")
