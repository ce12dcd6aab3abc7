"""Gaussian pair interactions E[sigma(w.x) sigma(v.x)], x ~ N(0, I_d).

The pair (w.x, v.x) is a centred Gaussian with covariance
``[[|w|^2, w.v], [w.v, |v|^2]]``, so the interaction depends only on the two norms
and the overlap (the order parameters). :func:`pair_interaction` returns the
matrix of interactions between the rows of two weight matrices, vectorized over
all pairs, and is differentiable by autograd to any order needed for the
gradient and the Hessian of the loss.

Closed forms::

    erf(s x):  (2/pi) arcsin(2 s^2 w.v / sqrt((1 + 2 s^2 |w|^2)(1 + 2 s^2 |v|^2)))
    ReLU:      |w||v| (sin t + (pi - t) cos t) / (2 pi),  t = angle(w, v)

erf at large norms
    With ``s2 = 2 s^2``, ``p = 1 + s2 |w|^2``, ``q = 1 + s2 |v|^2``, ``c = w.v`` and
    ``D = p q - s2^2 c^2 = p + q - 1 + s2^2 |w|^2 |v_perp|^2 >= 1`` (v_perp the part of v
    orthogonal to w, used for nearly parallel pairs, where ``|w|^2 |v|^2 - c^2`` would
    cancel), the interaction is computed as (2/pi) arctan2(s2 c, sqrt(D)):
    the arcsin of an argument near 1 (``|w|`` large and v along w, e.g. a neuron with
    itself) loses half of the digits (1e-8 at ``|w| = 1e8``) and turns NaN when
    round-off pushes it above 1. Its gradient and
    Hessian-vector products are written by hand, as in
    :mod:`copyaverage.derivatives` (d1 g = A (v - r w), A = (2/pi) s2 / sqrt(D),
    r = s2 c / p): autograd's derivative of arcsin is 1/sqrt(1 - x^2), infinite
    for the same pairs from ``|w| ~ 1e8`` on.

Other activations
    Two-dimensional trapezoid quadrature in the plane of (w, v), with a step
    chosen from the largest norm so that the error stays near round-off. Its
    derivatives come from Price's theorem (d/d(w.v) E[f(z1) g(z2)] =
    E[f'(z1) g'(z2)] and ``d/d|w|^2 E[f(z1) g(z2)] = E[f''(z1) g(z2)] / 2``), which
    stays finite where w and v are parallel; a naive derivative of a
    Cholesky factor would not.

ReLU at copies
    The ReLU interaction is twice but not three times differentiable where w
    and v are parallel (a student neuron copying a teacher neuron). Written
    through arccos its first derivative is inf - inf there. We therefore give
    it hand-derived gradient and Hessian-vector products, written with the
    component of v orthogonal to w so that they are finite and accurate to
    round-off at and near copies. At w = 0 the ReLU interaction is 1-homogeneous
    and has no gradient: asking for one raises ``ValueError``.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive

from .activations import Activation, get_activation

__all__ = ["pair_interaction", "monte_carlo_pair_interaction", "QUADRATURE_MAX_NODES"]

#: Largest number of quadrature nodes per dimension (the cost grows as its square).
QUADRATURE_MAX_NODES = 1201

_TWO_PI = 2.0 * math.pi


def pair_interaction(W1, W2, activation: str | Activation):
    """Matrix of E[sigma(w_i.x) sigma(v_j.x)] for the rows w_i of W1 and v_j of W2.

    Parameters
    ----------
    W1 : array, shape (n1, d)
    W2 : array, shape (n2, d)
    activation : str or Activation

    Returns
    -------
    array, shape (n1, n2)
    """
    act = get_activation(activation)
    if act.kind == "erf":
        return _erf_pair(W1, W2, act.scale)
    if act.kind == "relu":
        return _relu_pair(W1, W2)
    return _quadrature_pair(W1, W2, act)


# ---------------------------------------------------------------- erf ------
def _erf_pair(W1, W2, scale):
    return _erf_pair_s2(W1, W2, 2.0 * scale**2)


def _erf_geometry(W1, W2, s2):
    """c = w.v, P = p (column), Q = q (row) and D = p q - s2^2 c^2 for all pairs.

    D = p + q - 1 + s2^2 (|w|^2 |v|^2 - c^2). The last bracket, computed directly,
    loses its digits where w and v are nearly parallel (e.g. a neuron with itself:
    at |w| = 1e8 nothing of D would be left). Where that rounding error could exceed
    a few units in the last place of D, it is computed instead as
    |w|^2 |v_perp|^2, with v_perp = v - (c / |w|^2) w the part of v orthogonal to w.
    """
    c = W1 @ W2.T
    nw2 = np.einsum("id,id->i", W1, W1)
    nv2 = np.einsum("id,id->i", W2, W2)
    NN = nw2[:, None] * nv2[None, :]
    gram = np.maximum(NN - c * c, 0.0)
    P = (1.0 + s2 * nw2)[:, None]
    Q = (1.0 + s2 * nv2)[None, :]
    D = P + Q - 1.0 + s2 * s2 * gram
    I, J = np.nonzero(s2 * s2 * NN > 4.0 * D)  # rounding error of gram above ~8 ulp of D
    if I.size:
        t = c[I, J] / nw2[I]  # nw2 > 0 here
        perp = W2[J] - t[:, None] * W1[I]
        D[I, J] = P[I, 0] + Q[0, J] - 1.0 + s2 * s2 * nw2[I] * np.einsum("pd,pd->p", perp, perp)
    return c, P, Q, D


@primitive
def _erf_pair_s2(W1, W2, s2):
    c, _, _, D = _erf_geometry(W1, W2, s2)
    return (2.0 / math.pi) * np.arctan2(s2 * c, np.sqrt(D))


@primitive
def _erf_grad_first(G, W1, W2, s2):
    """sum_j G_ij d g(w_i, v_j) / d w_i, shape (n1, d); d1 g = A (v - r w)."""
    c, P, _, D = _erf_geometry(W1, W2, s2)
    GA = G * (2.0 / math.pi) * s2 / np.sqrt(D)
    return GA @ W2 - np.sum(GA * (s2 * c / P), axis=1)[:, None] * W1


def _erf_second(W1, W2, s2):
    """A, r and the coefficients of d11 g and d12 g (see copyaverage.derivatives)."""
    c, P, Q, D = _erf_geometry(W1, W2, s2)
    A = (2.0 / math.pi) * s2 / np.sqrt(D)
    r = s2 * c / P
    E = A / D
    h11 = dict(I=-A * r, ww=E * r * s2 * (Q + 2.0 * D / P), wx=-E * s2 * Q, xx=E * s2 * s2 * c)
    h12 = dict(I=A, ww=-E * s2 * Q, wx=E * s2 * s2 * c, xx=-E * s2 * P)
    return A, r, h11, h12


def _erf_hvp_G(R, G, W1, W2, s2):
    """Cotangent of G in _erf_grad_first: R_i . d1 g(w_i, v_j)."""
    A, r, _, _ = _erf_second(W1, W2, s2)
    RW = np.sum(R * W1, axis=1)
    return A * (R @ W2.T - r * RW[:, None])


def _erf_hvp_W1(R, G, W1, W2, s2):
    """sum_j G_ij d11 g(w_i, v_j) R_i, with d11 g = I h_I + w w' h_ww + (w v' + v w') h_wx
    + v v' h_xx (symmetric)."""
    _, _, h, _ = _erf_second(W1, W2, s2)
    RW = np.sum(R * W1, axis=1)[:, None]
    RX = R @ W2.T
    out = np.sum(G * h["I"], axis=1)[:, None] * R
    out += (np.sum(G * h["ww"], axis=1)[:, None] * RW + np.sum(G * h["wx"] * RX, axis=1)[:, None]) * W1
    out += ((G * h["wx"]) @ W2) * RW + (G * h["xx"] * RX) @ W2
    return out


def _erf_hvp_W2(R, G, W1, W2, s2):
    """sum_i G_ij d12 g(w_i, v_j) R_i (d12 g = d/dv d1 g, symmetric, same four terms)."""
    _, _, _, h = _erf_second(W1, W2, s2)
    RW = np.sum(R * W1, axis=1)[:, None]
    RX = R @ W2.T
    out = (G * h["I"]).T @ R + (G * (h["ww"] * RW + h["wx"] * RX)).T @ W1
    out += np.sum(G * (h["wx"] * RW + h["xx"] * RX), axis=0)[:, None] * W2
    return out


defvjp(
    _erf_pair_s2,
    lambda ans, W1, W2, s2: lambda G: _erf_grad_first(G, W1, W2, s2),
    lambda ans, W1, W2, s2: lambda G: _erf_grad_first(G.T, W2, W1, s2),
)
defvjp(
    _erf_grad_first,
    lambda ans, G, W1, W2, s2: lambda R: _erf_hvp_G(R, G, W1, W2, s2),
    lambda ans, G, W1, W2, s2: lambda R: _erf_hvp_W1(R, G, W1, W2, s2),
    lambda ans, G, W1, W2, s2: lambda R: _erf_hvp_W2(R, G, W1, W2, s2),
)


# --------------------------------------------------------------- ReLU ------
def _relu_geometry(W1, W2):
    """Norms, unit vectors, cosines u, sines and angles for all pairs.

    The sine is the norm of the component of v_hat orthogonal to w_hat,
    accurate to round-off even for nearly parallel vectors.
    """
    n1 = np.linalg.norm(W1, axis=1)
    n2 = np.linalg.norm(W2, axis=1)
    U1 = W1 / np.where(n1 > 0, n1, 1.0)[:, None]
    U2 = W2 / np.where(n2 > 0, n2, 1.0)[:, None]
    u = np.clip(U1 @ U2.T, -1.0, 1.0)
    T = U2[None, :, :] - u[:, :, None] * U1[:, None, :]  # v_hat - u w_hat
    sin = np.linalg.norm(T, axis=2)
    theta = np.arctan2(sin, u)
    return n1, n2, U1, U2, u, T, sin, theta


@primitive
def _relu_pair(W1, W2):
    n1, n2, _, _, _, _, sin, theta = _relu_geometry(W1, W2)
    c = W1 @ W2.T
    return (np.outer(n1, n2) * sin + (math.pi - theta) * c) / _TWO_PI


def _require_nonzero(norms, which):
    if np.any(norms == 0):
        raise ValueError(
            f"the ReLU pair interaction has no gradient at a zero {which} vector "
            "(it is 1-homogeneous there); move the zero row off the origin"
        )


@primitive
def _relu_grad_first(G, W1, W2):
    """sum_j G_ij d h(w_i, v_j) / d w_i, shape (n1, d).

    d h / d w = ((pi - t) v + |v| sin(t) w_hat) / (2 pi).
    """
    n1, n2, U1, _, _, _, sin, theta = _relu_geometry(W1, W2)
    _require_nonzero(n1, "first-argument")
    out = ((math.pi - theta) * G) @ W2
    out += np.sum(G * sin * n2[None, :], axis=1)[:, None] * U1
    return out / _TWO_PI


def _safe_ratio(num, den):
    return np.where(den > 1e-300, num / np.where(den > 1e-300, den, 1.0), 0.0)


def _relu_hvp_G(R, G, W1, W2):
    """Cotangent of G in _relu_grad_first: R_i . dh(w_i, v_j)/dw_i."""
    n1, n2, U1, _, _, _, sin, theta = _relu_geometry(W1, W2)
    RU = np.sum(R * U1, axis=1)
    return ((math.pi - theta) * (R @ W2.T) + sin * n2[None, :] * RU[:, None]) / _TWO_PI


def _relu_hvp_W1(R, G, W1, W2):
    """sum_j G_ij H_ww(w_i, v_j) R_i with
    H_ww = |v| / (2 pi |w|) [sin(t) (I - w_hat w_hat^T) + t_vec t_vec^T / sin(t)],
    t_vec = v_hat - u w_hat.
    """
    n1, n2, U1, U2, u, T, sin, _ = _relu_geometry(W1, W2)
    _require_nonzero(n1, "first-argument")
    A = G * n2[None, :] / (_TWO_PI * n1[:, None])
    RU = np.sum(R * U1, axis=1)
    out = np.sum(A * sin, axis=1)[:, None] * (R - RU[:, None] * U1)
    TR = np.einsum("ijd,id->ij", T, R)
    B = A * _safe_ratio(TR, sin)
    out += B @ U2 - np.sum(B * u, axis=1)[:, None] * U1
    return out


def _relu_hvp_W2(R, G, W1, W2):
    """sum_i G_ij H_wv(w_i, v_j)^T R_i with
    2 pi H_wv = (pi - t) I + sin(t) w_hat v_hat^T + t_vec (w_hat - u v_hat)^T / sin(t).
    """
    n1, n2, U1, U2, u, T, sin, theta = _relu_geometry(W1, W2)
    _require_nonzero(n2, "second-argument")
    RU = np.sum(R * U1, axis=1)
    out = ((math.pi - theta) * G).T @ R
    out += np.sum(G * sin * RU[:, None], axis=0)[:, None] * U2
    C = G * _safe_ratio(np.einsum("ijd,id->ij", T, R), sin)
    out += C.T @ U1 - np.sum(C * u, axis=0)[:, None] * U2
    return out / _TWO_PI


defvjp(
    _relu_pair,
    lambda ans, W1, W2: lambda G: _relu_grad_first(G, W1, W2),
    lambda ans, W1, W2: lambda G: _relu_grad_first(G.T, W2, W1),
)
defvjp(
    _relu_grad_first,
    lambda ans, G, W1, W2: lambda R: _relu_hvp_G(R, G, W1, W2),
    lambda ans, G, W1, W2: lambda R: _relu_hvp_W1(R, G, W1, W2),
    lambda ans, G, W1, W2: lambda R: _relu_hvp_W2(R, G, W1, W2),
)


# --------------------------------------------------------- quadrature ------
#: Half-width of the integration box in standard-normal units (phi(9) ~ 1e-18).
_BOX = 9.0
#: Target exponent: the trapezoid error decays like exp(-2 pi delta / h).
_TRAPEZOID_EXPONENT = 40.0


def _trapezoid_grid(h):
    """Tensor trapezoid rule for the standard 2-D Gaussian on [-9, 9]^2.

    For an integrand analytic in a strip of half-width delta around the real
    axis the trapezoid rule converges like exp(-2 pi delta / h) (Trefethen and
    Weideman, SIAM Review 2014), much faster than Gauss-Hermite for the steep
    activations (tanh with a large norm) that we meet.
    """
    m = int(math.ceil(_BOX / h))
    x = np.arange(-m, m + 1) * (_BOX / m)
    w = np.exp(-0.5 * x**2) * (_BOX / m) / math.sqrt(2.0 * math.pi)
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    return X1.ravel(), X2.ravel(), np.outer(w, w).ravel()


_GRIDS: dict[int, tuple] = {}


def _grid_for(max_norm, act):
    """The grid whose step resolves sigma(w . x) for |w| <= max_norm."""
    delta = act.strip / max(max_norm, 1e-3)
    h = min(0.3, 2.0 * math.pi * delta / _TRAPEZOID_EXPONENT)
    m = int(math.ceil(_BOX / h))
    if m > QUADRATURE_MAX_NODES // 2:
        raise ValueError(
            f"the {act.name} pair interaction needs {2 * m + 1} quadrature nodes per "
            f"dimension for |w| = {max_norm:.3g}, more than the limit "
            f"{QUADRATURE_MAX_NODES}; weights this large are outside its accurate range"
        )
    if m not in _GRIDS:
        _GRIDS[m] = _trapezoid_grid(_BOX / m)
    return _GRIDS[m]


def _moment_values(p, q, c, i, j, act):
    """E[sigma^(i)(z1) sigma^(j)(z2)] for cov [[p, c], [c, q]], elementwise.

    z = S xi with S the symmetric square root of the covariance, in closed
    form for 2x2 matrices: S = (M + sqrt(det M) I) / sqrt(tr M + 2 sqrt(det M)).
    It is exact for singular covariances too (parallel w and v).
    """
    shape = c.shape
    p, q, c = (np.ravel(np.broadcast_to(t, shape)) for t in (p, q, c))
    if p.size == 0:
        return np.zeros(shape)
    x1, x2, wts = _grid_for(math.sqrt(max(p.max(), q.max())), act)
    det = np.maximum(p * q - c * c, 0.0)
    s = np.sqrt(det)
    t = np.sqrt(p + q + 2.0 * s)
    tt = np.where(t > 0, t, 1.0)
    a11, a12, a22 = (p + s) / tt, c / tt, (q + s) / tt
    f, g = act.derivative(i), act.derivative(j)
    out = np.empty(p.shape)
    chunk = max(1, 4_000_000 // x1.size)
    # Derivatives of saturating activations overflow harmlessly to 0 far out
    # in the tails (e.g. 1 / cosh(z)^2); a non-finite result is still caught.
    with np.errstate(over="ignore", under="ignore"):
        for lo in range(0, p.size, chunk):
            sl = slice(lo, lo + chunk)
            z1 = a11[sl, None] * x1 + a12[sl, None] * x2
            z2 = a12[sl, None] * x1 + a22[sl, None] * x2
            out[sl] = (np.asarray(f(z1)) * np.asarray(g(z2))) @ wts
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"quadrature of the {act.name} pair interaction (derivative orders {i}, {j}) "
            "gave non-finite values; the weights are too large for this activation"
        )
    return out.reshape(shape)


@primitive
def _moment(p, q, c, i, j, act):
    return _moment_values(p, q, c, i, j, act)


defvjp(
    _moment,
    lambda ans, p, q, c, i, j, act: lambda G: 0.5 * G * _moment(p, q, c, i + 2, j, act),
    lambda ans, p, q, c, i, j, act: lambda G: 0.5 * G * _moment(p, q, c, i, j + 2, act),
    lambda ans, p, q, c, i, j, act: lambda G: G * _moment(p, q, c, i + 1, j + 1, act),
)


def _quadrature_pair(W1, W2, act):
    c = anp.dot(W1, W2.T)
    zeros = 0.0 * c
    p = anp.sum(W1**2, axis=1)[:, None] + zeros
    q = anp.sum(W2**2, axis=1)[None, :] + zeros
    return _moment(p, q, c, 0, 0, act)


def monte_carlo_pair_interaction(w, v, activation: str | Activation,
                                 samples: int = 1_000_000, seed: int = 0):
    """Monte Carlo estimate of E[sigma(w.x) sigma(v.x)] for two vectors w, v (d,).

    Returns
    -------
    (mean, standard_error) : tuple of float
    """
    act = get_activation(activation)
    w = np.asarray(w, dtype=float)
    v = np.asarray(v, dtype=float)
    if w.ndim != 1 or w.shape != v.shape:
        raise ValueError(f"w and v must be vectors of one length, got shapes {w.shape}, {v.shape}")
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, w.size))
    prod = np.asarray(act(X @ w)) * np.asarray(act(X @ v))
    return float(prod.mean()), float(prod.std(ddof=1) / math.sqrt(samples))
