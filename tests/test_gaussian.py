"""Pair interactions: closed forms vs Monte Carlo vs independent quadrature."""

import math

import numpy as np
import pytest
from autograd.scipy.special import erf
from scipy import integrate

from copyaverage import (erf_activation, get_activation, monte_carlo_pair_interaction,
                         pair_interaction)
from copyaverage.activations import Activation
from copyaverage.gaussian import _quadrature_pair

MC_SAMPLES = 1_000_000


def _pairs(seed=0):
    """Generic, parallel, anti-parallel, orthogonal and small/large-norm pairs in d = 4."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=4)
    v = rng.normal(size=4)
    e1, e2 = np.eye(4)[:2]
    return [
        (w, v),
        (w, 2.5 * w),  # parallel: a copy
        (w, -0.7 * w),  # anti-parallel
        (e1, e2),  # orthogonal
        (0.05 * w, 3.0 * v),
        (e1, np.cos(1e-6) * e1 + np.sin(1e-6) * e2),  # almost parallel
    ]


@pytest.mark.parametrize("name", ["erf", "erf_plain", "relu", "tanh", "gelu"])
def test_pair_interaction_matches_monte_carlo(name):
    act = get_activation(name)
    for i, (w, v) in enumerate(_pairs()):
        exact = pair_interaction(w[None], v[None], act)[0, 0]
        mean, se = monte_carlo_pair_interaction(w, v, act, samples=MC_SAMPLES, seed=i)
        assert abs(exact - mean) < 5 * se + 1e-12, (name, i, exact, mean, se)


def _relu_polar(w, v):
    """E[relu(w.x) relu(v.x)] = (1/pi) int_0^{2pi} relu(w.e) relu(v.e) dphi in span(w, v).

    The radial integral int_0^inf r^3 exp(-r^2/2) dr / (2 pi) = 1/pi is done by hand.
    """
    b1 = w / np.linalg.norm(w)
    r = v - (v @ b1) * b1
    b2 = r / np.linalg.norm(r) if np.linalg.norm(r) > 1e-14 else np.eye(len(w))[np.argmin(abs(b1))]
    b2 = b2 - (b2 @ b1) * b1
    b2 /= np.linalg.norm(b2)
    W = np.array([w @ b1, w @ b2])
    V = np.array([v @ b1, v @ b2])

    def f(phi):
        e = np.array([math.cos(phi), math.sin(phi)])
        return max(W @ e, 0.0) * max(V @ e, 0.0)

    kinks = sorted({(math.atan2(x[1], x[0]) + s) % (2 * math.pi) for x in (W, V)
                    for s in (math.pi / 2, -math.pi / 2)})
    val, _ = integrate.quad(f, 0.0, 2 * math.pi, points=kinks, epsabs=1e-14, epsrel=1e-13, limit=200)
    return val / math.pi


def test_relu_closed_form_matches_polar_quadrature():
    for w, v in _pairs(1):
        exact = pair_interaction(w[None], v[None], "relu")[0, 0]
        assert exact == pytest.approx(_relu_polar(w, v), abs=1e-11)


@pytest.mark.parametrize("scale", [1 / math.sqrt(2), 1.0, 0.3, 2.0])
def test_erf_closed_form_matches_quadrature(scale):
    act_q = Activation("erf-quad", lambda x: erf(scale * x), True, "quadrature", strip=1.0)
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(5, 4))
    W2 = np.vstack([rng.normal(size=(3, 4)), W1[:1], -2 * W1[1:2]])
    closed = pair_interaction(W1, W2, erf_activation(scale))
    np.testing.assert_allclose(_quadrature_pair(W1, W2, act_q), closed, atol=1e-12)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "gelu"])
def test_quadrature_accurate_to_1e_8_against_scipy(name):
    """Our trapezoid rule against scipy's adaptive 2-D quadrature for norms up to 3."""
    act = get_activation(name)
    cases = [(1.0, 0.5, 0.3), (3.0, 1.0, -0.8), (2.0, 2.0, 0.999999), (0.2, 3.0, 1.0)]
    for nw, nv, u in cases:
        w = np.array([nw, 0.0])
        v = nv * np.array([u, math.sqrt(max(1 - u * u, 0.0))])
        ours = pair_interaction(w[None], v[None], act)[0, 0]

        def f(x2, x1):
            z = np.array([x1, x2])
            return float(act(w @ z) * act(v @ z)) * math.exp(-0.5 * (x1 * x1 + x2 * x2)) / (2 * math.pi)

        ref, err = integrate.dblquad(f, -10, 10, -10, 10, epsabs=1e-12, epsrel=1e-12)
        assert abs(ours - ref) < 1e-8 + 10 * err, (name, nw, nv, u, ours, ref)


def test_quadrature_refuses_weights_beyond_its_range():
    with pytest.raises(ValueError, match="quadrature nodes"):
        pair_interaction(np.array([[400.0, 0.0]]), np.array([[0.0, 1.0]]), "tanh")


def test_erf_name_means_scaled_erf():
    act = get_activation("erf")
    assert act(1.0) == pytest.approx(math.erf(1 / math.sqrt(2)))
    assert get_activation("erf_plain")(1.0) == pytest.approx(math.erf(1.0))
    # The closed form for the paper's erf: (2/pi) arcsin(w.v / sqrt((1+|w|^2)(1+|v|^2))).
    w, v = np.array([[0.3, 1.2]]), np.array([[-0.5, 0.7]])
    expected = 2 / math.pi * math.asin((w @ v.T)[0, 0] / math.sqrt((1 + (w**2).sum()) * (1 + (v**2).sum())))
    assert pair_interaction(w, v, "erf")[0, 0] == pytest.approx(expected, abs=1e-15)


def test_unknown_activation_lists_known_names():
    with pytest.raises(ValueError, match="known activations: erf, erf_plain, gelu, relu"):
        get_activation("swish")
    with pytest.raises(ValueError, match="positive finite"):
        erf_activation(-1.0)
    with pytest.raises(ValueError, match="positive finite"):
        erf_activation(float("nan"))


# ------------------------------------------------------------ issue 15, item 7 --
@pytest.mark.parametrize("name", ["erf", "erf_plain"])
@pytest.mark.parametrize("norm", [1.0, 1e4, 1e8, 1e9, 1e12, 1e16, 1e20, 1e50])
def test_erf_self_interaction_exact_at_large_norms(name, norm):
    """g(w, w) = (2/pi) arcsin(s2 r^2 / (1 + s2 r^2)) = 1 - (4/pi) arcsin(1 / sqrt(2 (1 + s2 r^2))),
    the second form free of cancellation. arcsin of an argument near 1 lost half the digits
    (error ~1e-8 at |w| = 1e8) and gave NaN once round-off put it above 1."""
    act = get_activation(name)
    s2 = 2 * act.scale**2
    w = np.random.default_rng(1).normal(size=(1, 5))
    w *= norm / np.linalg.norm(w)
    r2 = float(np.sum(w**2))
    exact = 1.0 - (4 / math.pi) * math.asin(1 / math.sqrt(2 * (1 + s2 * r2)))
    assert pair_interaction(w, w, act)[0, 0] == pytest.approx(exact, rel=1e-15, abs=0)
    assert pair_interaction(w, -w, act)[0, 0] == pytest.approx(-exact, rel=1e-15, abs=0)
