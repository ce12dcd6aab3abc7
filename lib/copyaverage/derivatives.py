"""Closed-form, vectorized gradient and Hessian of the population loss.

:func:`copyaverage.gradient <copyaverage.loss.gradient>` and
:func:`copyaverage.hessian <copyaverage.loss.hessian>` differentiate the
loss with autograd; they are the reference. This module writes the same
derivatives by hand, for the activations with a closed-form pair interaction
(erf of any scale, ReLU), as a few dense numpy operations over all pairs of
neurons with no Python loop over pairs. For a student with n = 49 neurons in
d = 51 dimensions (2548 parameters) the full Hessian costs tens of
milliseconds instead of minutes. The tests check both routes against each
other to 1e-10.

Notation
--------
Put the student and teacher neurons in one list, ``U = [W; V]`` with
coefficients ``c = [a; -a*]`` (m = n + k rows). Then::

    L = sum_{p,q} c_p c_q g(u_p, u_q),

and, writing d1 g and d11 g, d12 g for the derivatives of the pair interaction
g(w, x) with respect to its first argument (and second)::

    dL/da_i        = 2 sum_q c_q g(w_i, u_q)
    dL/dw_i        = 2 a_i sum_q c_q d1 g(w_i, u_q)
    d2L/da_i da_l  = 2 g(w_i, w_l)
    d2L/da_l dw_i  = 2 delta_il sum_q c_q d1 g(w_i, u_q) + 2 a_i d1 g(w_i, w_l)
    d2L/dw_i dw_l  = 2 delta_il a_i sum_q c_q d11 g(w_i, u_q) + 2 a_i a_l d12 g(w_i, w_l).

Every d1 g is a combination of the two vectors of the pair, and every d11 g,
d12 g is a multiple of the identity plus outer products of those vectors, so
all sums reduce to matrix products with the pair coefficients.

erf(s x), with ``s2 = 2 s^2``, ``p = 1 + s2 |w|^2``, ``q = 1 + s2 |x|^2``, ``c = w.x``,
``D = p q - s2^2 c^2 = p + q - 1 + s2^2 (|w|^2 |x|^2 - c^2)`` (always >= 1),
``A = (2/pi) s2 / sqrt(D)``, ``E = A / D``, ``r = s2 c / p``::

    g     = (2/pi) arcsin(s2 c / sqrt(p q))
    d1 g  = A (x - r w)
    d11 g = -A r I + E [r s2 (q + 2 D / p) w w' - s2 q (w x' + x w') + s2^2 c x x']
    d12 g =  A I   + E [-s2 q w w' + s2^2 c (w x' + x w') - s2 p x x']

ReLU, with unit vectors w^, x^, cosine u, sine ``s = |x^ - u w^|`` and angle t,
e = (x^ - u w^) / s and f = (w^ - u x^) / s (unit vectors, taken as 0 when
s = 0: the terms they enter vanish like s), written with the orthogonal
components so that they stay accurate at and near copies (s -> 0)::

    2 pi d1 g  = (pi - t) x + |x| s w^
    2 pi d11 g = (|x| s / |w|) (I - w^ w^' + e e')
    2 pi d12 g = (pi - t) I + s (w^ x^' + e f')

At w = 0 the ReLU loss has no gradient; asking for one raises ``ValueError``.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import Activation, get_activation
from .gaussian import pair_interaction
from .loss import check_student, gradient as _autograd_gradient, hessian as _autograd_hessian
from .loss import pack, unpack
from .teacher import MAX_WEIGHT, Teacher

__all__ = [
    "Objective",
    "closed_form_gradient",
    "closed_form_hessian",
    "has_closed_form",
]

_TWO_OVER_PI = 2.0 / math.pi
_TWO_PI = 2.0 * math.pi


def has_closed_form(activation: str | Activation) -> bool:
    """True when this module has hand-derived derivatives for the activation."""
    return get_activation(activation).kind in ("erf", "relu")


# ------------------------------------------------------------------ erf ----
def _erf_pairs(W, U, s2, order):
    """Pair coefficients between the rows of W (n, d) and U (m, d) for erf."""
    c = W @ U.T
    nw2 = np.einsum("id,id->i", W, W)
    nu2 = np.einsum("id,id->i", U, U)
    p = 1.0 + s2 * nw2
    q = 1.0 + s2 * nu2
    P = p[:, None]
    Q = q[None, :]
    G = _TWO_OVER_PI * np.arcsin(np.clip(s2 * c / np.sqrt(P * Q), -1.0, 1.0))
    out = {"G": G}
    if order == 0:
        return out
    D = P + Q - 1.0 + s2 * s2 * np.maximum(nw2[:, None] * nu2[None, :] - c * c, 0.0)
    A = _TWO_OVER_PI * s2 / np.sqrt(D)
    r = s2 * c / P
    out.update(g_w=-A * r, g_x=A)  # d1 g = g_w w + g_x x
    if order == 1:
        return out
    E = A / D
    out.update(
        h11_I=-A * r,
        h11_ww=E * r * s2 * (Q + 2.0 * D / P),
        h11_wx=-E * s2 * Q,  # coefficient of w x' and of x w'
        h11_xx=E * s2 * s2 * c,
        h12_I=A,
        h12_ww=-E * s2 * Q,
        h12_wx=E * s2 * s2 * c,  # coefficient of w x' and of x w'
        h12_xx=-E * s2 * P,
    )
    return out


# ----------------------------------------------------------------- ReLU ----
def _relu_pairs(W, U, order, need_vectors=False):
    """Pair quantities between the rows of W (n, d) and U (m, d) for ReLU."""
    nw = np.sqrt(np.einsum("id,id->i", W, W))
    nu = np.sqrt(np.einsum("id,id->i", U, U))
    if order > 0 and np.any(nw == 0):
        raise ValueError(
            "the ReLU loss has no gradient at a zero student vector w_i "
            "(the pair interaction is 1-homogeneous there); move the zero row off the origin"
        )
    Wh = W / np.where(nw > 0, nw, 1.0)[:, None]
    Uh = U / np.where(nu > 0, nu, 1.0)[:, None]
    u = np.clip(Wh @ Uh.T, -1.0, 1.0)
    T = Uh[None, :, :] - u[:, :, None] * Wh[:, None, :]  # x^ - u w^, (n, m, d)
    s = np.sqrt(np.einsum("imd,imd->im", T, T))
    t = np.arctan2(s, u)
    c = W @ U.T
    NN = nw[:, None] * nu[None, :]
    G = (NN * s + (math.pi - t) * c) / _TWO_PI
    out = {"G": G}
    if order == 0:
        return out
    ratio = nu[None, :] / nw[:, None]
    out.update(g_w=ratio * s / _TWO_PI, g_x=(math.pi - t) / _TWO_PI)
    if order == 1:
        return out
    safe = s > 1e-300
    inv_s = np.where(safe, 1.0 / np.where(safe, s, 1.0), 0.0)
    e = T * inv_s[:, :, None]  # unit, orthogonal to w^ (0 at exact copies)
    out.update(Wh=Wh, Uh=Uh, u=u, s=s, t=t, e=e, h11_scale=ratio * s / _TWO_PI)
    if need_vectors:
        Fv = Wh[:, None, :] - u[:, :, None] * Uh[None, :, :]  # w^ - u x^ = s f
        out["Fv"] = Fv
    return out


# ------------------------------------------------------------- objective ---
class Objective:
    """The population loss of an n-neuron student as a function of theta.

    theta = pack(a, W) = (a_1..a_n, w_1, ..., w_n), as in :mod:`copyaverage.loss`.
    The teacher's constant term and the combined neuron list are computed once.

    Parameters
    ----------
    teacher : Teacher
    activation : str or Activation
    n : int
        Number of student neurons, n >= 1.

    Notes
    -----
    For activations without a closed form (tanh, sigmoid, softplus, GELU) the
    methods fall back on the autograd routes
    :func:`copyaverage.gradient <copyaverage.loss.gradient>` and
    :func:`copyaverage.hessian <copyaverage.loss.hessian>` (correct, much slower).
    """

    def __init__(self, teacher: Teacher, activation: str | Activation, n: int):
        if not isinstance(teacher, Teacher):
            raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.teacher = teacher
        self.act = get_activation(activation)
        self.n = int(n)
        self.d = teacher.d
        self.size = self.n * (1 + self.d)
        self.closed_form = has_closed_form(self.act)
        G_tt = pair_interaction(teacher.V, teacher.V, self.act)
        self.const = float(teacher.a @ np.asarray(G_tt) @ teacher.a)
        if self.act.kind == "erf":
            self._s2 = 2.0 * self.act.scale**2

    # -- helpers ------------------------------------------------------------
    def split(self, theta):
        """(a, W) views of theta; raises ValueError for a wrong shape, complex entries,
        NaN/inf, or entries beyond :data:`copyaverage.teacher.MAX_WEIGHT`."""
        if np.iscomplexobj(theta):
            raise ValueError("parameters must be real, got a complex array")
        theta = np.asarray(theta, dtype=float)
        a, W = unpack(theta, self.n, self.d)
        if not np.all(np.isfinite(theta)):
            raise ValueError("parameters contain NaN or infinite values")
        if theta.size and np.max(np.abs(theta)) > MAX_WEIGHT:
            raise ValueError(f"parameters must be at most MAX_WEIGHT = {MAX_WEIGHT:.0e} in "
                             "absolute value (the pair interactions overflow beyond)")
        return a, W

    def _pairs(self, W, order, need_vectors=False):
        U = np.concatenate([W, self.teacher.V])
        if self.act.kind == "erf":
            return U, _erf_pairs(W, U, self._s2, order)
        return U, _relu_pairs(W, U, order, need_vectors)

    def _coef(self, a):
        return np.concatenate([a, -self.teacher.a])

    # -- value and derivatives ----------------------------------------------
    def loss(self, theta) -> float:
        """L(theta), a float."""
        a, W = self.split(theta)
        if not self.closed_form:
            from .loss import population_loss
            return population_loss(a, W, self.teacher, self.act)
        n = self.n
        _, P = self._pairs(W, 0)
        G = P["G"]
        b = self.teacher.a
        return float(a @ G[:, :n] @ a - 2.0 * a @ G[:, n:] @ b + self.const)

    def loss_and_gradient(self, theta):
        """(L, grad L) at theta; the gradient has the shape of theta."""
        a, W = self.split(theta)
        if not self.closed_form:
            return self.loss(theta), _autograd_gradient(a, W, self.teacher, self.act)
        n = self.n
        U, P = self._pairs(W, 1)
        c = self._coef(a)
        G = P["G"]
        Gc = G @ c
        # a'Gc = a'G_ss a - a'G_st a*, so L = a'Gc - a'G_st a* + const
        L = float(a @ Gc - a @ G[:, n:] @ self.teacher.a + self.const)
        grad_a = 2.0 * Gc
        S1 = (P["g_w"] @ c)[:, None] * W + (P["g_x"] * c[None, :]) @ U
        grad_W = 2.0 * a[:, None] * S1
        return L, np.concatenate([grad_a, grad_W.ravel()])

    def gradient(self, theta) -> np.ndarray:
        """grad L at theta, shape (n (1 + d),)."""
        return self.loss_and_gradient(theta)[1]

    def hessian(self, theta) -> np.ndarray:
        """The full Hessian at theta, shape (n (1 + d), n (1 + d)).

        Symmetric to round-off (the two triangles are computed by different
        sums; no extra pass is spent on symmetrizing 50 MB at n = 49).
        """
        a, W = self.split(theta)
        if not self.closed_form:
            return _autograd_hessian(a, W, self.teacher, self.act)
        if self.act.kind == "erf":
            return self._hessian_erf(a, W)
        return self._hessian_relu(a, W)

    def _blocks_a(self, a, W, U, P, c):
        """The a-a block (n, n) and the a-W block as (n_l, n_i, d)."""
        n = self.n
        G = P["G"]
        S1 = (P["g_w"] @ c)[:, None] * W + (P["g_x"] * c[None, :]) @ U
        gw, gx = P["g_w"][:, :n], P["g_x"][:, :n]
        # 2 a_i d1 g(w_i, w_l) = 2 a_i (gw_il w_i + gx_il w_l), stored at [l, i, :]
        d1 = gw[:, :, None] * W[:, None, :] + gx[:, :, None] * W[None, :, :]  # [i, l, :]
        HaW = 2.0 * a[None, :, None] * d1.transpose(1, 0, 2)
        idx = np.arange(n)
        HaW[idx, idx, :] += 2.0 * S1
        return 2.0 * G[:, :n], HaW

    def _new_hessian(self, a, W, U, P, c):
        """Allocate H, fill the a-a and a-W blocks; return H and a (n, d, n, d) view
        of its W-W block."""
        n, d = self.n, self.d
        Haa, HaW = self._blocks_a(a, W, U, P, c)
        H = np.empty((self.size, self.size))
        H[:n, :n] = Haa
        H[:n, n:] = HaW.reshape(n, n * d)
        H[n:, :n] = H[:n, n:].T
        HWW = H[n:, n:].reshape(n, d, n, d)
        if not np.shares_memory(HWW, H):  # pragma: no cover - numpy always gives a view
            raise RuntimeError("internal error: W-W block is not a view")
        return H, HWW

    def _add_identity(self, H, M):
        """H[w_i,a ; w_l,a] += M[i, l] for every component a (strided views)."""
        n, d = self.n, self.d
        for comp in range(d):  # d strided slices, no loop over pairs
            H[n + comp::d, n + comp::d] += M

    def _hessian_erf(self, a, W):
        n, d = self.n, self.d
        U, P = self._pairs(W, 2)
        c = self._coef(a)
        H, HWW = self._new_hessian(a, W, U, P, c)
        # off-diagonal: 2 a_i a_l d12 g(w_i, w_l) = (identity part)
        #   + w_i (m_ww w_i + m_wx w_l)' + w_l (m_wx w_i + m_xx w_l)'
        aa = 2.0 * np.outer(a, a)
        m_ww = aa * P["h12_ww"][:, :n]
        m_wx = aa * P["h12_wx"][:, :n]
        m_xx = aa * P["h12_xx"][:, :n]
        R1 = m_ww[:, :, None] * W[:, None, :] + m_wx[:, :, None] * W[None, :, :]
        R2 = m_wx[:, :, None] * W[:, None, :] + m_xx[:, :, None] * W[None, :, :]
        np.multiply(W[:, :, None, None], R1[:, None, :, :], out=HWW)
        HWW += W.T[None, :, :, None] * R2[:, None, :, :]
        self._add_identity(H, aa * P["h12_I"][:, :n])
        # diagonal blocks: 2 a_i sum_q c_q d11 g(w_i, u_q)
        y = (P["h11_wx"] * c) @ U  # (n, d)
        Dg = np.einsum("iq,qa,qb->iab", P["h11_xx"] * c, U, U, optimize=True)
        Dg += (P["h11_ww"] @ c)[:, None, None] * W[:, :, None] * W[:, None, :]
        Dg += W[:, :, None] * y[:, None, :] + y[:, :, None] * W[:, None, :]
        Dg += (P["h11_I"] @ c)[:, None, None] * np.eye(d)
        idx = np.arange(n)
        HWW[idx, :, idx, :] += (2.0 * a)[:, None, None] * Dg
        return H

    def _hessian_relu(self, a, W):
        n, d = self.n, self.d
        U, P = self._pairs(W, 2, need_vectors=True)
        c = self._coef(a)
        H, HWW = self._new_hessian(a, W, U, P, c)
        aa = 2.0 * np.outer(a, a) / _TWO_PI
        Wh, s, t, e, Fv = P["Wh"], P["s"], P["t"], P["e"], P["Fv"]
        # 2 pi d12 g(w_i, w_l) = (pi - t) I + s w^_i w^_l' + e_il (s f_il)'
        np.multiply(Wh[:, :, None, None],
                    ((aa * s[:, :n])[:, :, None] * Wh[None, :, :])[:, None, :, :], out=HWW)
        HWW += (aa[:, :, None] * e[:, :n]).transpose(0, 2, 1)[:, :, :, None] * Fv[:, None, :n, :]
        self._add_identity(H, aa * (math.pi - t[:, :n]))
        # diagonal: 2 a_i sum_q c_q (|x| s / (2 pi |w|)) (I - w^ w^' + e e')
        k11 = P["h11_scale"] * c  # (n, m)
        sk = k11.sum(axis=1)
        Dg = np.einsum("iq,iqa,iqb->iab", k11, e, e, optimize=True)
        Dg += sk[:, None, None] * (np.eye(d)[None] - Wh[:, :, None] * Wh[:, None, :])
        idx = np.arange(n)
        HWW[idx, :, idx, :] += (2.0 * a)[:, None, None] * Dg
        return H


def closed_form_gradient(a, W, teacher: Teacher, activation: str | Activation) -> np.ndarray:
    """Gradient of the population loss wrt theta = pack(a, W), by the closed forms.

    Same result as :func:`copyaverage.gradient <copyaverage.loss.gradient>` (to round-off),
    much faster.

    Returns
    -------
    ndarray, shape (n (1 + d),)
    """
    a, W = check_student(a, W, teacher)
    return Objective(teacher, activation, a.size).gradient(pack(a, W))


def closed_form_hessian(a, W, teacher: Teacher, activation: str | Activation) -> np.ndarray:
    """Hessian of the population loss wrt theta = pack(a, W), by the closed forms.

    Same result as :func:`copyaverage.hessian <copyaverage.loss.hessian>` (to round-off),
    much faster.

    Returns
    -------
    ndarray, shape (n (1 + d), n (1 + d)), symmetric
    """
    a, W = check_student(a, W, teacher)
    return Objective(teacher, activation, a.size).hessian(pack(a, W))
