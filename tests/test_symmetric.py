"""Symmetric critical points: relaxed copy-average points and perturbed copies."""

import numpy as np
import pytest

import copyaverage as ca
from copyaverage.configurations import ca_optimum_groups, ca_optimum_point
from copyaverage.exact_transition import perturbed_copy
from copyaverage.loss import pack, population_loss
from copyaverage.sweep import StartSpec, run
from copyaverage.symmetric import (
    SAME_FUNCTION,
    SymmetricFlowError,
    match_symmetric,
    perturbed_copy_basis,
    relaxed_basis,
    relaxed_copy_average,
    symmetric_flow,
    symmetric_perturbed_copy,
    symmetric_points,
)


def _distance(p, a, W, activation):
    """E[(f_p - f_(a, W))^2], with p as the teacher."""
    return population_loss(a, W, ca.Teacher(p.a, p.W), activation)


@pytest.mark.parametrize("k, n", [(5, 3), (6, 1), (4, 4)])
def test_bases_are_orthonormal_and_hold_their_start(k, n):
    T = ca.Teacher.orthonormal(k)
    groups = ca_optimum_groups(k, n)
    B = relaxed_basis(groups, T)
    assert B.shape == (n * (1 + T.d), {(6, 1): 2, (4, 4): 3, (5, 3): 7}[(k, n)])
    np.testing.assert_allclose(B.T @ B, np.eye(B.shape[1]), atol=1e-14)
    theta = pack(*ca_optimum_point(n, T, "relu"))
    assert np.linalg.norm(B @ (B.T @ theta) - theta) < 1e-13
    if n < k:
        C = perturbed_copy_basis(n, T)
        np.testing.assert_allclose(C.T @ C, np.eye(C.shape[1]), atol=1e-14)
        assert C.shape[1] == (4 if n > 1 else 3)


def test_erf_relaxed_point_is_the_copy_average_point():
    """erf CA points are critical: the flow within the subspace does not move."""
    T = ca.Teacher.orthonormal(6)
    p = relaxed_copy_average(ca_optimum_groups(6, 3), T, "erf")
    a0, W0 = ca_optimum_point(3, T, "erf")
    assert p.label == "relaxed CA 4+1+1"
    assert p.grad_norm < 1e-13
    assert np.abs(p.W - W0).max() < 1e-12 and np.abs(p.a - a0).max() < 1e-12


@pytest.mark.parametrize("k, n", [(4, 2), (6, 4), (7, 3)])
def test_relu_relaxed_point_is_where_the_flow_from_the_ca_point_ends(k, n):
    """Where the relaxed CA optimum is a minimum (up to the rescaling directions), the
    book's engine, started at the CA configuration, ends at the same point."""
    T = ca.Teacher.orthonormal(k)
    p = relaxed_copy_average(ca_optimum_groups(k, n), T, "relu")
    assert p.grad_norm < 1e-13
    assert p.n_negative == 0 and p.n_zero == n  # one rescaling direction per neuron
    r = run(StartSpec("relu", *ca_optimum_point(n, T, "relu"), T, label="CA optimum"))
    assert r.converged
    assert abs(r.loss - p.loss) < 1e-10 * p.loss
    assert _distance(p, r.a, r.W, "relu") < 1e-10
    # and the relaxation moved it: ReLU CA configurations are not critical
    assert _distance(p, *ca_optimum_point(n, T, "relu"), "relu") > 1e-6


def test_relu_relaxed_point_can_be_a_saddle():
    """At k = 4, n = 3 the relaxed CA optimum has a negative Hessian eigenvalue: a flow
    that leaves the symmetric subspace (through round-off) need not end there."""
    p = relaxed_copy_average(ca_optimum_groups(4, 3), ca.Teacher.orthonormal(4), "relu")
    assert p.grad_norm < 1e-13 and p.n_negative >= 1 and p.kind == "saddle"


@pytest.mark.parametrize("k, n", [(8, 7), (10, 8)])
def test_erf_symmetric_perturbed_copy_is_the_exact_one(k, n):
    T = ca.Teacher.orthonormal(k)
    p = symmetric_perturbed_copy(n, T, "erf")
    a, W = perturbed_copy(k, n)
    assert p.kind == "minimum"
    assert np.abs(p.W - W).max() < 1e-12 and np.abs(p.a - a).max() < 1e-12


def test_relu_perturbed_copy_is_critical():
    p = symmetric_perturbed_copy(4, ca.Teacher.orthonormal(6), "relu")
    assert p.grad_norm < 1e-13 and p.label == "perturbed copy"
    a, W = ca.perturbed_copy(6, 4, "relu")  # the public name gives the same point
    assert np.abs(W - p.W).max() < 1e-14 and np.abs(a - p.a).max() < 1e-14
    # every student stays closest to its own teacher neuron
    assert (np.argmax(p.W[:, :6], axis=1) == np.arange(4)).all()


def test_bad_input():
    T = ca.Teacher.orthonormal(4)
    rotated = ca.Teacher(np.array([1.0, 2.0]), np.eye(2, 3))
    with pytest.raises(ValueError, match="unit-orthonormal"):
        relaxed_copy_average([(0,), (1,)], rotated, "relu")
    with pytest.raises(ValueError, match="must cover every teacher neuron"):
        relaxed_copy_average([(0,), (1,)], T, "relu")
    with pytest.raises(ValueError, match="1 <= n < k"):
        symmetric_perturbed_copy(4, T, "relu")
    with pytest.raises(ValueError, match="copyaverage.Teacher"):
        relaxed_basis([(0, 1, 2, 3)], "teacher")
    B = relaxed_basis([(0, 1), (2, 3)], T)
    with pytest.raises(ValueError, match="not in the subspace"):
        symmetric_flow(B, np.arange(B.shape[0], dtype=float), T, "relu")
    with pytest.raises(ValueError, match="shape"):
        symmetric_flow(B, np.zeros(3), T, "relu")


def test_a_dying_neuron_is_reported():
    """A student whose only neuron has w = 0 has no ReLU gradient: a clear error."""
    T = ca.Teacher.orthonormal(3)
    B = relaxed_basis([(0, 1, 2)], T)
    with pytest.raises(SymmetricFlowError, match="no gradient at a zero"):
        symmetric_flow(B, pack(np.ones(1), np.zeros((1, T.d))), T, "relu")


def test_match_finds_a_point_up_to_permutations_and_nothing_else():
    k, n = 5, 3
    T = ca.Teacher.orthonormal(k)
    points = symmetric_points(k, n, "relu")
    assert set(points) == {"relaxed CA 3+1+1", "relaxed CA 2+2+1", "perturbed copy"}
    assert set(symmetric_points(k, n, "relu", "optimum")) == {"relaxed CA 3+1+1",
                                                               "perturbed copy"}
    with pytest.raises(ValueError, match="types must be"):
        symmetric_points(k, n, "relu", "some")
    rng = np.random.default_rng(0)
    for label, p in points.items():
        teacher_perm = rng.permutation(k)
        student_perm = rng.permutation(n)
        W = p.W.copy()
        W[:, teacher_perm] = p.W[:, :k]
        a, W = p.a[student_perm], W[student_perm]
        assert match_symmetric(a, W, T, "relu", points)["label"] == label
        moved = match_symmetric(a, W + 1e-3 * rng.normal(size=W.shape), T, "relu", points)
        assert moved["label"] is None and moved["distance"] > SAME_FUNCTION


def test_symmetric_classes_of_a_small_grid():
    """ReLU k = 5, n = 3, five seeds: every converged end point gets a class; the relaxed
    CA optimum itself, given as a result, is classified as one."""
    from types import SimpleNamespace

    from copyaverage.symmetric import SYMMETRIC_CLASSES, symmetric_classes
    from copyaverage.sweep import RunSpec

    specs = [RunSpec("relu", 5, 3, seed) for seed in range(5)]
    results = [run(s) for s in specs]
    classes = symmetric_classes(specs, results, "relu")
    assert all((c in SYMMETRIC_CLASSES) == r.converged for c, r in zip(classes, results))
    p = relaxed_copy_average(ca_optimum_groups(5, 3), ca.Teacher.orthonormal(5), "relu")
    fake = SimpleNamespace(a=p.a, W=p.W, converged=True)
    idle = SimpleNamespace(converged=False)
    assert symmetric_classes(specs[:2], [fake, idle], "relu") == ["relaxed CA optimum", None]


def test_relu_transition_for_a_small_teacher():
    """k = 6: the relaxed CA optimum and the ReLU perturbed copy for n = 1..5, the same
    points as symmetric_points gives, and boundaries that agree with the table."""
    t = ca.transition(6, "relu")
    assert list(t.n) == [1, 2, 3, 4, 5]
    p = symmetric_points(6, 4, "relu", "optimum")
    row = t[t.n == 4].iloc[0]
    assert row.ca_loss == p["relaxed CA 3+1+1+1"].loss
    assert row.pc_loss == p["perturbed copy"].loss
    assert row.ca_negative == p["relaxed CA 3+1+1+1"].n_negative
    assert ((t.lower == "perturbed copy") == (t.pc_loss < t.ca_loss)).all()
    start = t.attrs["pc_minimum_from"]
    assert start is not None and (t[t.n >= start].pc_negative == 0).all()
    # (6, 5): the relaxed CA optimum is a saddle (the chapter's table)
    assert t[t.n == 5].ca_negative.item() >= 1 and t.attrs["ca_saddle_from"] <= 5
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        ca.transition(1.5, "relu")


def test_points_without_signature_are_the_same_points():
    full = symmetric_points(6, 4, "relu")
    bare = symmetric_points(6, 4, "relu", signature=False)
    assert full.keys() == bare.keys()
    for label, p in full.items():
        q = bare[label]
        assert np.array_equal(p.a, q.a) and np.array_equal(p.W, q.W)
        assert q.loss == p.loss and q.grad_norm == p.grad_norm
        assert p.n_negative is not None and p.eigenvalues.size == p.a.size * 8
        assert q.n_negative is None and q.kind == "not computed" and q.eigenvalues.size == 0


def test_classes_in_worker_processes_are_the_same():
    from copyaverage.symmetric import symmetric_classes
    from copyaverage.sweep import RunSpec

    specs = [RunSpec("relu", 4, n, seed) for n in (2, 3) for seed in (0, 1)]
    results = [run(s) for s in specs]
    one = symmetric_classes(specs, results, "relu")
    assert all(c is not None for c in one)
    assert symmetric_classes(specs, results, "relu", n_jobs=2) == one
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 1"):
        symmetric_classes(specs, results, "relu", n_jobs=0)
