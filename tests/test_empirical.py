"""The empirical loss on N Gaussian inputs: derivatives against finite differences, the
population limit within the Monte Carlo error, full-batch flows, SGD and Adam."""

import numpy as np
import pytest

import copyaverage as ca
from copyaverage.derivatives import Objective
from copyaverage.empirical import (EmpiricalObjective, empirical_gradient, empirical_hessian,
                                   empirical_loss, sample_inputs)
from copyaverage.sgd import DIVERGED, FINISHED, train
from copyaverage.sweep import RunSpec, run

ACTS = ["erf", "relu", "tanh"]


@pytest.fixture(scope="module")
def student():
    T = ca.Teacher.orthonormal(4)
    a, W = ca.initialize(3, T, "glorot", seed=1)
    return T, a, W


def _fd(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


@pytest.mark.parametrize("act", ACTS)
def test_gradient_and_hessian_match_finite_differences(student, act):
    T, a, W = student
    ob = EmpiricalObjective(T, act, 3, sample_inputs(300, T.d, seed=2))
    theta = ca.pack(a, W)
    g = ob.gradient(theta)
    H = ob.hessian(theta)
    assert np.max(np.abs(g - _fd(ob.loss, theta))) < 1e-8
    assert np.max(np.abs(H - _fd(ob.gradient, theta))) < 1e-7
    assert np.allclose(H, H.T, atol=0, rtol=0)


def test_chunked_sums_equal_one_pass(student, monkeypatch):
    """The sums run over chunks of the sample; the chunk size must not change them."""
    T, a, W = student
    X = sample_inputs(1000, T.d, seed=0)
    theta = ca.pack(a, W)
    whole = EmpiricalObjective(T, "erf", 3, X)
    monkeypatch.setattr("copyaverage.empirical._CHUNK_FLOATS", 7 * whole.size)
    pieces = EmpiricalObjective(T, "erf", 3, X)
    assert pieces.chunk == 7
    assert np.isclose(pieces.loss(theta), whole.loss(theta), rtol=1e-13)
    assert np.allclose(pieces.gradient(theta), whole.gradient(theta), rtol=1e-12, atol=1e-15)
    assert np.allclose(pieces.hessian(theta), whole.hessian(theta), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("act", ACTS)
def test_loss_and_gradient_tend_to_the_population_ones(student, act):
    """At N = 200,000 the empirical loss and gradient differ from the exact population ones
    by at most 5 standard errors (estimated from the per-input terms)."""
    T, a, W = student
    X = sample_inputs(200_000, T.d, seed=5)
    ob = EmpiricalObjective(T, act, 3, X)
    r = ob.residuals(ca.pack(a, W))
    N = r.size
    se_loss = np.std(r**2) / np.sqrt(N)
    assert abs(ob.loss(ca.pack(a, W)) - ca.population_loss(a, W, T, act)) < 5 * se_loss
    S = np.asarray(ca.get_activation(act)(X @ W.T))
    per_input_da = 2 * r[:, None] * S  # (N, n): the a-part of the per-input gradient
    se_g = per_input_da.std(axis=0) / np.sqrt(N)
    g_emp = ob.gradient(ca.pack(a, W))[:3]
    g_pop = ca.gradient(a, W, T, act)[:3]
    assert np.all(np.abs(g_emp - g_pop) < 5 * se_g)


def test_hessian_tends_to_the_population_hessian():
    """erf: the mean of 8 independent empirical Hessians (N = 40,000 each) is within 5
    standard errors of the exact Hessian in every entry. ReLU: the same holds except in the
    w_i-w_i blocks, where the population Hessian has the kink term a_i E[r delta(w_i.x) x x']
    that a sample never meets (they differ by many standard errors)."""
    T = ca.Teacher.orthonormal(3)
    a, W = ca.initialize(2, T, "glorot", seed=4)
    n, d = 2, T.d
    for act in ("erf", "relu"):
        Hs = np.array([empirical_hessian(a, W, T, act, sample_inputs(40_000, d, seed=s))
                       for s in range(8)])
        mean, se = Hs.mean(axis=0), Hs.std(axis=0, ddof=1) / np.sqrt(len(Hs))
        z = np.abs(mean - ca.hessian(a, W, T, act)) / (se + 1e-12)
        diag_w = np.zeros_like(z, dtype=bool)
        for i in range(n):
            block = slice(n + i * d, n + (i + 1) * d)
            diag_w[block, block] = True
        if act == "erf":
            assert z.max() < 5
        else:
            assert z[~diag_w].max() < 5
            assert z[diag_w].max() > 20


def test_public_functions_agree_with_the_objective(student):
    T, a, W = student
    X = sample_inputs(50, T.d, seed=1)
    ob = EmpiricalObjective(T, "erf", 3, X)
    theta = ca.pack(a, W)
    assert empirical_loss(a, W, T, "erf", X) == ob.loss(theta)
    assert np.array_equal(empirical_gradient(a, W, T, "erf", X), ob.gradient(theta))
    # the loss is the mean squared error, computed here directly
    f = np.asarray(ca.get_activation("erf")(X @ W.T)) @ a
    fstar = np.asarray(ca.get_activation("erf")(X @ T.V.T)) @ T.a
    assert np.isclose(ob.loss(theta), np.mean((f - fstar) ** 2), rtol=1e-14)
    assert np.isclose(ob.const, np.mean(fstar**2), rtol=1e-14)


def test_samples_are_nested_and_independent_of_the_initialization():
    X = sample_inputs(100, 5, seed=3)
    assert np.array_equal(sample_inputs(40, 5, seed=3), X[:40])
    assert not np.array_equal(sample_inputs(100, 5, seed=4), X)
    T = ca.Teacher.orthonormal(4)
    _, W0 = ca.initialize(20, T, "gaussian", seed=3, std=1.0)
    # the initialization with the same seed draws other numbers
    assert not np.any(np.isin(W0.ravel(), sample_inputs(20, 5, seed=3).ravel()))


@pytest.mark.parametrize("X, match", [
    (np.zeros((0, 5)), r"shape \(N, d\)"),
    (np.zeros((10, 4)), r"shape \(N, d\)"),
    (np.zeros(5), r"shape \(N, d\)"),
    (np.full((3, 5), np.nan), "NaN"),
    (np.zeros((3, 5), dtype=complex), "real"),
    ([["a"] * 5], "real"),
])
def test_bad_samples_are_named(student, X, match):
    T, a, W = student
    with pytest.raises(ValueError, match=match):
        empirical_loss(a, W, T, "erf", X)


@pytest.mark.parametrize("args, match", [((0, 5), "N"), ((10, 0), "d"), ((10, 5, -1), "seed"),
                                         ((2.5, 5), "N")])
def test_bad_sample_sizes_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        sample_inputs(*args)


# ------------------------------------------------------------- the full-batch flow --
def test_full_batch_flow_ends_at_a_critical_point_of_the_empirical_loss():
    T = ca.Teacher.orthonormal(4)
    a0, W0 = ca.initialize(3, T, "gaussian", seed=0)
    X = sample_inputs(2000, T.d, seed=0)
    r = ca.gradient_flow(a0, W0, T, "erf", data=X)
    assert r.converged and r.options["samples"] == 2000
    ob = EmpiricalObjective(T, "erf", 3, X)
    theta = ca.pack(r.a, r.W)
    assert np.isclose(r.loss, ob.loss(theta), rtol=1e-12)
    assert np.linalg.norm(ob.gradient(theta)) <= r.tol
    assert np.min(np.linalg.eigvalsh(ob.hessian(theta))) > 0  # a minimum of L_N
    # ... not of the population loss, whose gradient there is far from zero
    assert np.linalg.norm(ca.gradient(r.a, r.W, T, "erf")) > 1e-4


def test_full_batch_end_point_approaches_the_population_one():
    """k = 4, n = 2, one start: the function-space distance E[(f_N - f_pop)^2] between the
    end points falls with N (computed exactly: the population end point serves as the
    teacher). (At n = 3 the same start ends at a CA optimum that copies other teacher
    neurons for some samples, even at N = 10^5: the distance need not fall there.)"""
    T = ca.Teacher.orthonormal(4)
    a0, W0 = ca.initialize(2, T, "gaussian", seed=0)
    pop = ca.gradient_flow(a0, W0, T, "erf")
    as_teacher = ca.Teacher(pop.a, pop.W)
    dist = []
    for N in (1_000, 10_000, 100_000):
        r = ca.gradient_flow(a0, W0, T, "erf", data=sample_inputs(N, T.d, seed=1))
        assert r.converged
        dist.append(ca.population_loss(r.a, r.W, as_teacher, "erf"))
    assert dist[0] > dist[1] > dist[2]
    assert dist[2] < 1e-4


def test_run_spec_with_samples():
    spec = RunSpec("erf", 4, 3, seed=0, samples=500, data_seed=2)
    assert spec.params()["samples"] == 500 and spec.params()["data_seed"] == 2
    assert "samples" not in RunSpec("erf", 4, 3, seed=0).params()
    r = run(spec)
    a0, W0 = spec.start()
    direct = ca.gradient_flow(a0, W0, spec.teacher(), "erf",
                              data=sample_inputs(500, 5, seed=2), record_parameters=False)
    assert np.array_equal(r.a, direct.a) and r.options["samples"] == 500
    with pytest.raises(ValueError, match="samples"):
        RunSpec("erf", 4, 3, seed=0, samples=0)


# ------------------------------------------------------------------- SGD and Adam --
def test_first_sgd_step_is_the_batch_gradient_step(student):
    T, a, W = student
    r = train(a, W, T, "erf", lr=0.1, steps=1, batch=7, samples=7, data_seed=3,
              record_parameters=True)
    X = sample_inputs(7, T.d, seed=3)  # the whole sample is the one batch (order irrelevant)
    expected = ca.pack(a, W) - 0.1 * empirical_gradient(a, W, T, "erf", X)
    assert np.allclose(r.parameters[-1], expected, rtol=1e-13, atol=1e-15)


def test_first_adam_step_moves_every_parameter_by_lr(student):
    """Bias-corrected Adam's first step is lr * g / (|g| + eps): lr in every coordinate."""
    T, a, W = student
    r = train(a, W, T, "erf", lr=1e-3, steps=1, batch=16, optimizer="adam", eps=1e-14,
              record_parameters=True)
    step = np.abs(r.parameters[-1] - ca.pack(a, W))
    assert np.allclose(step, 1e-3, rtol=1e-6)


def test_online_sgd_tracks_gradient_flow_as_the_rate_shrinks():
    """k = 4, n = 3: the population loss along online SGD (batch 256) at flow time
    t = lr * steps approaches the flow's as lr -> 0: the largest deviation over t <= 300,
    averaged over two data seeds, shrinks more than threefold from lr = 0.1 to 0.01 (Euler's
    error is O(lr), the noise O(sqrt(lr / B)))."""
    T = ca.Teacher.orthonormal(4)
    a0, W0 = ca.initialize(3, T, "gaussian", seed=0)
    flow = ca.gradient_flow(a0, W0, T, "erf", trajectory_per_decade=20)
    log_t, ref_loss = np.log(flow.trajectory.t[1:]), flow.trajectory.loss[1:]
    errors = []
    for lr in (0.1, 0.01):
        dev = []
        for data_seed in (1, 2):
            r = train(a0, W0, T, "erf", lr=lr, steps=int(300 / lr), batch=256,
                      data_seed=data_seed)
            ref = np.interp(np.log(r.flow_time[1:]), log_t, ref_loss)
            dev.append(np.max(np.abs(r.population_loss[1:] - ref)))
        errors.append(np.mean(dev))
    assert errors[1] < errors[0] / 3
    assert errors[1] < 0.05 * flow.trajectory.loss[0]


def test_divergence_is_reported_without_nan(student):
    T, a, W = student
    r = train(a, W, T, "erf", lr=50.0, steps=100, batch=1)
    assert r.status == DIVERGED and r.steps < 100
    assert np.all(np.isfinite(r.a)) and np.all(np.isfinite(r.population_loss))
    ok = train(a, W, T, "erf", lr=0.01, steps=10, batch=4)
    assert ok.status == FINISHED and ok.steps == 10 and ok.record_steps[-1] == 10


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(steps=-1), "steps"),
    (dict(batch=0), "batch"), (dict(batch=20, samples=10), "at most samples"),
    (dict(samples=0), "samples"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), "betas"), (dict(eps=0), "eps"),
])
def test_bad_training_options_are_named(student, kwargs, match):
    T, a, W = student
    options = dict(lr=0.1, steps=5) | kwargs
    with pytest.raises(ValueError, match=match):
        train(a, W, T, "erf", **options)
