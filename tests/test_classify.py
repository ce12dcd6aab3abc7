"""End-point classes on constructed students, thresholds at their edges, bad input."""

import math

import numpy as np
import pytest

from copyaverage import Teacher, population_loss
from copyaverage.classify import (CA_OPTIMUM, DEFAULT_THRESHOLDS, OTHER, OTHER_CA, PERTURBED_COPY,
                                  ca_optimum_loss, classify)
from copyaverage.configurations import ca_optimum_point, copy_average_loss, copy_average_point
from copyaverage.derivatives import closed_form_gradient

K = 5
T = Teacher.orthonormal(K)


def _ca_opt(n=3):
    return ca_optimum_point(n, T, "erf")


def test_ca_configurations_are_critical_for_erf_and_classified():
    a, W = _ca_opt(3)
    assert np.linalg.norm(closed_form_gradient(a, W, T, "erf")) < 1e-13  # closed-form one-neuron optima
    c = classify(a, W, T, "erf")
    assert c.label == CA_OPTIMUM and c.group_sizes == (1, 1, 3)
    assert c.groups == [(0,), (1,), (2, 3, 4)]
    assert c.loss == pytest.approx(ca_optimum_loss(3, T, "erf"), rel=1e-12)
    # odd symmetry, permutations of student and of teacher labels do not matter
    s = np.array([1.0, -1.0, -1.0])
    assert classify(s * a, s[:, None] * W, T, "erf").label == CA_OPTIMUM
    perm_s, perm_t = [2, 0, 1], [4, 2, 3, 0, 1]
    assert classify(a[perm_s], W[perm_s][:, perm_t + [5]], T, "erf").label == CA_OPTIMUM


def test_other_ca_by_sizes_and_by_loss():
    a, W = copy_average_point([(0, 1), (2, 3, 4)], T, "erf")
    c = classify(a, W, T, "erf")
    assert c.label == OTHER_CA and c.group_sizes == (2, 3)
    a, W = _ca_opt(3)
    a = a.copy()
    a[2] *= 1.01  # right structure, not the optimal one-neuron solution
    c = classify(a, W, T, "erf")
    assert c.label == OTHER_CA and "loss differs" in c.reason


def test_perturbed_copy_and_other():
    V = T.V
    W = np.array([V[i] + 0.1 * (V[3] + V[4]) for i in range(3)])
    c = classify(np.ones(3), W, T, "erf")
    assert c.label == PERTURBED_COPY
    assert np.allclose(c.copy_cosine, 1 / math.sqrt(1.02))
    # two neurons copying the same teacher neuron
    W2 = np.array([V[0], V[0] + 0.1 * V[1], V[2]])
    assert classify(np.ones(3), W2, T, "erf").label == OTHER
    # a neuron that subtracts its teacher neuron is no copy
    assert classify(np.array([1.0, 1.0, -1.0]), W, T, "erf").label == OTHER
    rng = np.random.default_rng(0)
    assert classify(rng.normal(size=3), rng.normal(size=(3, 6)), T, "erf").label == OTHER


@pytest.mark.parametrize("cos, label", [(0.91, PERTURBED_COPY), (0.89, OTHER)])
def test_copy_cosine_threshold_edge(cos, label):
    V = T.V
    sin = math.sqrt(1 - cos**2)
    W = np.array([cos * V[i] + sin * V[3 + i % 2] for i in range(3)])
    assert DEFAULT_THRESHOLDS["erf"]["copy_cosine"] == 0.9
    assert classify(np.ones(3), W, T, "erf").label == label


@pytest.mark.parametrize("resid, label", [(5e-7, CA_OPTIMUM), (2e-6, OTHER)])
def test_ca_tolerance_edge(resid, label):
    """Tilt the averaging neuron so that 1 - cosine with its group direction = resid."""
    a, W = _ca_opt(3)
    W = W.copy()
    angle = math.acos(1 - resid)
    r = np.linalg.norm(W[2])
    e = W[2] / r
    W[2] = r * (math.cos(angle) * e + math.sin(angle) * T.V[0])  # tilts toward a copied neuron
    c = classify(a, W, T, "erf", loss_rtol=0.5)
    assert c.ca_residual == pytest.approx(resid, rel=0.05)
    assert c.label == label


def test_relu_thresholds_accept_the_nearby_point_and_skip_the_loss():
    a, W = copy_average_point([(0,), (1, 2)], Teacher.orthonormal(3), "relu")
    W = W.copy()
    W[1] -= 0.15 * np.linalg.norm(W[1]) * Teacher.orthonormal(3).V[0]  # as gradient flow does
    c = classify(a, W, Teacher.orthonormal(3), "relu")
    assert c.label == CA_OPTIMUM and 1e-3 < c.ca_residual < 0.1
    assert classify(a, W, Teacher.orthonormal(3), "erf", loss_rtol=0.5).label == OTHER


def test_bad_input():
    a, W = _ca_opt(3)
    with pytest.raises(ValueError, match="unit-orthonormal"):
        classify(a, W, Teacher(2 * np.ones(K), T.V), "erf")
    with pytest.raises(ValueError, match="unit-orthonormal"):
        classify(a, W, Teacher(np.ones(K), 2 * T.V), "erf")
    with pytest.raises(ValueError, match="fewer student"):
        classify(np.ones(K), T.V, T, "erf")
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        classify(a, W, T, "erf", copy_cosine=1.5)
    with pytest.raises(ValueError, match="1 <= n < k"):
        ca_optimum_loss(K, T, "erf")
    # the refused calls left the student as it was: still the CA optimum, whose loss is the
    # sum of its groups' one-neuron losses (a route that does not use the weights)
    assert population_loss(a, W, T, "erf") == pytest.approx(copy_average_loss((1, 1, 3), "erf"),
                                                             rel=1e-13, abs=0)


def test_end_label_names_unconverged_and_wide_runs_and_classifies_the_rest():
    from copyaverage.classify import NOT_CLASSIFIED, NOT_CONVERGED, end_label
    from copyaverage.configurations import ca_optimum_point

    T = Teacher.orthonormal(4)
    a, W = ca_optimum_point(2, T, "erf")
    assert end_label(a, W, T, "erf", converged=False) == NOT_CONVERGED
    assert end_label(a, W, T, "erf", converged=True) == "CA optimum"
    assert end_label(T.a, T.V, T, "erf", converged=True) == NOT_CLASSIFIED
