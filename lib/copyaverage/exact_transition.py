"""The width transition at a unit-orthonormal teacher, computed exactly for any k.

Gradient flow of an erf student with n < k neurons on a unit-orthonormal
teacher (v_j = e_j in d = k + 1 dimensions, a*_j = 1) ends at one of two
critical points:

``CA optimum``
    n - 1 students copy one teacher neuron each, one student averages the other
    k - n + 1 (:func:`copyaverage.configurations.ca_optimum_point`).
``perturbed copy``
    every student i near-copies its own teacher neuron,

        a_i = a,   w_i = alpha v_i + beta sum_{j <= n, j != i} v_j + gamma sum_{j > n} v_j,

    a four-parameter family, params = (a, alpha, beta, gamma).

Symmetry. The loss is invariant under G = S_n x S_{k-n} x Z_2: S_n permutes the
student neurons together with the first n teacher neurons, S_{k-n} permutes
the other k - n teacher neurons, Z_2 flips the sign of the input coordinate
e_{k+1} that no teacher neuron uses. The points fixed by G are exactly the
family above (the Z_2 forces a zero e_{k+1} component). The gradient at a
fixed point is fixed too (G acts by orthogonal maps), so it lies in the family's
tangent space: a critical point of the loss restricted to the family
(:func:`reduced_loss`, four unknowns) is a critical point of the full loss
(Palais' principle of symmetric criticality). The tests check it: the full
gradient at :func:`perturbed_copy` is below 1e-12.

The reduced loss. With ``|w|^2 = N = alpha^2 + (n-1) beta^2 + (k-n) gamma^2``,
w_i.w_l = C = 2 alpha beta + (n-2) beta^2 + (k-n) gamma^2 (i != l) and
g(c; p, q) = (2/pi) arcsin(c / sqrt((1+p)(1+q))),

::

    L = a^2 [n g(N; N, N) + n (n-1) g(C; N, N)]
        - 2 a [n g(alpha; N, 1) + n (n-1) g(beta; N, 1) + n (k-n) g(gamma; N, 1)]
        + k/3,

an analytic function of n and k, which are therefore allowed to be real: the
branch of perturbed copies is a curve in (n, params) and its ends and changes
of stability are real numbers.

The Hessian by blocks. The Hessian H of the full loss (size n (1 + d)) commutes
with G, so it is block diagonal on the isotypic components of the parameter
space. With P the permutation representation of S_n on the p = n copying
students (and the first p teacher coordinates), m = k - n, std the standard
representation and [p-2, 2], [p-2, 1, 1] the two other irreducible parts of
P (x) P, the components, their block size r (the multiplicity of the
irreducible representation) and the multiplicity of each eigenvalue are

    =========================  ==============================  ==================
    component                  directions (r)                   multiplicity
    =========================  ==============================  ==================
    triv                       a, alpha, beta, gamma (4)        1
    std_p                      a_i, W_ii, W_ij by row, by       p - 1
                               column, W_ib by row (5)
    [p-2, 2]                   symmetric W_ij, zero row sums    p (p - 3) / 2
    [p-2, 1, 1]                antisymmetric W_ij, zero sums    (p - 1)(p - 2) / 2
    std_m                      W_ib = f_b, sum f = 0            m - 1
    std_p x std_m              W_ib = u_i f_b                   (p - 1)(m - 1)
    triv, odd                  W_{i,k+1} = 1                    1
    std_p, odd                 W_{i,k+1} = u_i                  p - 1
    =========================  ==============================  ==================

(for p = 2 the row and column directions coincide, r = 4; for p = 1 only the
trivial, std_m and odd parts remain). For the CA optimum the same holds with
p = n - 1 copying students, m = k - n + 1 averaged teacher neurons and the one
averaging student added: r = 7, 6, 1, 1, 2, 1, 2, 1. Each block entry
x_s' H x_t is the second derivative of the loss along perturbations x_s, x_t
chosen in one copy of the irreducible representation with a large stabiliser
(e.g. u = e_1 - 1/p), so the perturbed network has only a few classes of
equivalent neurons and its loss is again a short sum with multiplicities
(``_class_loss``), differentiated twice exactly by propagating 2-jets
(``_Jet``). The eigenvalues of the block (in the metric of the Gram
matrix of the x_s) are eigenvalues of H with the multiplicity in the table.
Cost: O(1) in k and n, vectorized over n. The tests compare every eigenvalue
and its multiplicity with :func:`numpy.linalg.eigvalsh` of the dense
closed-form Hessian.

Numerics. The blocks are graded (at the CA optimum with k = 10^4 their
eigenvalues span 21 orders of magnitude); a Jacobi eigenvalue routine with a
relative stopping rule resolves the tiny ones. At small n and large k the
perturbed copy becomes nearly linear (a ~ 10^4, ``|w| ~ 0.02``) and the reduced
problem ill-conditioned; the reduced loss is then evaluated in long double.
The branch (:func:`perturbed_copy_branch`) is followed by natural
continuation in n from n = k - 1 down to its first fold, located to
round-off for k up to a few hundred; see :class:`BranchEnd` for larger k.

Only the erf family is covered (``"erf"`` is erf(x / sqrt 2); an
``erf_activation(scale)`` works too): the pair interaction must be the arcsin
formula, and odd, so that the sign symmetry and the CA closed form hold. For ReLU,
:func:`perturbed_copy` delegates to :mod:`copyaverage.symmetric` (the same family, found by
the flow within it instead of the closed-form reduced loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import autograd.numpy as anp
import numpy as np
from scipy.interpolate import CubicHermiteSpline
from scipy.optimize import brentq

from .activations import Activation, get_activation

__all__ = [
    "Branch",
    "BranchEnd",
    "Spectrum",
    "ca_optimum_spectrum",
    "perturbed_copy",
    "perturbed_copy_branch",
    "perturbed_copy_coordinates",
    "perturbed_copy_network",
    "perturbed_copy_params",
    "perturbed_copy_spectrum",
    "reduced_loss",
    "transition",
]

_TWO_OVER_PI = 2.0 / math.pi


# ------------------------------------------------------------------ checks ---
def _erf_s2(activation) -> float:
    """2 scale^2 of an erf activation; ValueError for any other kind."""
    act = get_activation(activation)
    if act.kind != "erf":
        raise ValueError(
            f"the width transition is computed for the erf family only (closed-form arcsin "
            f"pair interaction, odd activation); got {act.name!r} of kind {act.kind!r}")
    return 2.0 * act.scale**2


def _check_int_kn(k, n, what="perturbed copy"):
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r} of type "
                             f"{type(value).__name__}")
    k, n = int(k), int(n)
    if k < 2:
        raise ValueError(f"k must be >= 2 (a student narrower than the teacher needs k >= 2), "
                         f"got k = {k}")
    if not 1 <= n < k:
        raise ValueError(f"the {what} needs 1 <= n < k = {k} (an under-parameterized student), "
                         f"got n = {n}")
    return k, n


def _check_real_kn(k, n):
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a real number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not 1 <= n <= k:
        raise ValueError(f"need 1 <= n <= k, got n = {n}, k = {k}")
    return float(k), float(n)


def _check_params(params):
    try:
        x = np.asarray(params, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"params must be four real numbers (a, alpha, beta, gamma): {exc}") \
            from None
    if x.shape != (4,):
        raise ValueError(f"params must be (a, alpha, beta, gamma), shape (4,); got shape "
                         f"{x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"params must be finite, got {x}")
    return x


# ------------------------------------------------------------ reduced loss ---
class _Jet:
    """A quantity and its first and second derivatives in r variables (a 2-jet).

    ``v`` has the batch shape, ``g`` shape (r, *batch), ``h`` shape (r, r, *batch)
    or None for zero (affine quantities: most of them). Sums, products and the
    few functions the erf pair interaction needs follow the chain rule exactly;
    one evaluation of a loss on jets gives its value, gradient and Hessian in
    the chosen directions, with no tape and no loop over directions.
    """

    __slots__ = ("v", "g", "h")
    __array_ufunc__ = None  # numpy arrays defer to our __rmul__, __radd__

    def __init__(self, v, g, h=None):
        self.v, self.g, self.h = v, g, h

    @staticmethod
    def _add_h(h1, h2):
        if h1 is None:
            return h2
        return h1 if h2 is None else h1 + h2

    def hessian(self):
        """h as an array (zeros when None)."""
        if self.h is None:
            return np.zeros(self.g.shape[:1] + self.g.shape, dtype=self.g.dtype)
        return self.h

    def __add__(self, o):
        if isinstance(o, _Jet):
            return _Jet(self.v + o.v, self.g + o.g, self._add_h(self.h, o.h))
        return _Jet(self.v + o, self.g, self.h)

    __radd__ = __add__

    def __neg__(self):
        return _Jet(-self.v, -self.g, None if self.h is None else -self.h)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __mul__(self, o):
        if isinstance(o, _Jet):
            cross = self.g[:, None] * o.g[None, :]
            h = cross + np.swapaxes(cross, 0, 1)
            if o.h is not None:
                h = h + self.v * o.h
            if self.h is not None:
                h = h + o.v * self.h
            return _Jet(self.v * o.v, self.v * o.g + o.v * self.g, h)
        return _Jet(self.v * o, self.g * o, None if self.h is None else self.h * o)

    __rmul__ = __mul__

    def apply(self, f0, f1, f2):
        """f(self) from the values f0, f1 = f', f2 = f'' at self.v."""
        h = f2 * (self.g[:, None] * self.g[None, :])
        if self.h is not None:
            h = h + f1 * self.h
        return _Jet(f0, f1 * self.g, h)


def _inv_sqrt(z):
    if isinstance(z, _Jet):
        r = 1.0 / np.sqrt(z.v)
        return z.apply(r, -0.5 * r**3, 0.75 * r**5)
    return 1.0 / anp.sqrt(z)


def _arcsin(x):
    if isinstance(x, _Jet):
        one_minus = 1.0 - x.v * x.v
        r = 1.0 / np.sqrt(one_minus)
        return x.apply(np.arcsin(x.v), r, x.v * r**3)
    return anp.arcsin(x)


def _g(c, p, q, s2):
    """The erf pair interaction from w.u = c, |w|^2 = p, |u|^2 = q (arrays, autograd or jets)."""
    return _TWO_OVER_PI * _arcsin(s2 * c * _inv_sqrt((1.0 + s2 * p) * (1.0 + s2 * q)))


def _reduced(x, k, n, s2):
    """Reduced loss; x has shape (4, ...) and broadcasts with k, n (arrays, autograd or jets)."""
    a, al, be, ga = x[0], x[1], x[2], x[3]
    m = k - n
    be2, ga2 = be * be, m * (ga * ga)
    N = al * al + (n - 1.0) * be2 + ga2
    C = 2.0 * al * be + (n - 2.0) * be2 + ga2
    r = _inv_sqrt(1.0 + s2 * N)  # 1 / sqrt(1 + s2 |w|^2)
    rr = r * r
    u = (s2 / math.sqrt(1.0 + s2)) * r  # teacher vectors have |v|^2 = 1
    student = n * (_arcsin(s2 * N * rr) + (n - 1.0) * _arcsin(s2 * C * rr))
    cross = n * (_arcsin(al * u) + (n - 1.0) * _arcsin(be * u) + m * _arcsin(ga * u))
    const = k * math.asin(s2 / (1.0 + s2))
    return _TWO_OVER_PI * (a * a * student - 2.0 * a * cross + const)


def reduced_loss(params, k, n, activation: str | Activation = "erf") -> float:
    """The loss of the perturbed-copy family as a function of its four parameters.

    Parameters
    ----------
    params : array_like, shape (4,)
        (a, alpha, beta, gamma): every student has outgoing weight a and incoming
        vector w_i = alpha v_i + beta sum_{j <= n, j != i} v_j + gamma sum_{j > n} v_j.
    k, n : float
        Teacher and student width, 1 <= n <= k. Real values are allowed: the
        loss is analytic in both; at integers it is the population loss of
        :func:`perturbed_copy_network`.
    activation : str or Activation
        The erf family only (default ``"erf"``, erf(x / sqrt 2)).

    Returns
    -------
    float
    """
    s2 = _erf_s2(activation)
    x = _check_params(params)
    k, n = _check_real_kn(k, n)
    return float(_reduced(x, k, n, s2))


def perturbed_copy_network(params, k: int, n: int):
    """The full student network of the perturbed-copy family.

    Parameters
    ----------
    params : array_like, shape (4,)
        (a, alpha, beta, gamma), see :func:`reduced_loss`.
    k, n : int
        Teacher width and student width, 1 <= n < k; the input dimension is
        d = k + 1 as in ``Teacher.orthonormal(k)``.

    Returns
    -------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, k + 1)
        Row i is alpha e_i + beta (sum_{j < n} e_j - e_i) + gamma sum_{n <= j < k} e_j.
    """
    x = _check_params(params)
    k, n = _check_int_kn(k, n, "perturbed-copy family")
    a, al, be, ga = x
    W = np.zeros((n, k + 1))
    W[:, :n] = be
    W[np.arange(n), np.arange(n)] = al
    W[:, n:k] = ga
    return np.full(n, a), W


def perturbed_copy_coordinates(a, W, k: int):
    """Read (a, alpha, beta, gamma) off a network that is a perturbed copy up to symmetry.

    The inverse of :func:`perturbed_copy_network` for end points of gradient
    flow: neuron i is first made to add its output (``(a_i, w_i) -> -(a_i, w_i)``
    when a_i < 0, a symmetry of odd activations), then matched to the teacher
    neuron j(i) of its largest weight; the teacher coordinates are reordered so
    that the copied ones come first in the students' order.

    Parameters
    ----------
    a : array_like, shape (n,)
    W : array_like, shape (n, k + 1)
        Incoming weights in the coordinates of ``Teacher.orthonormal(k)``.
    k : int

    Returns
    -------
    params : ndarray, shape (4,)
        The means of a_i, of the own weights w_i,j(i), of the weights on the other
        copied teacher neurons and of the weights on the uncopied ones.
    deviation : float
        The largest distance of any entry of (a, W), so reordered, from the family
        with these params (the last input coordinate, used by no teacher neuron,
        counts with target 0): zero for an exact member.

    Raises
    ------
    ValueError
        For shapes that do not fit k, non-finite weights, or two neurons matched to
        the same teacher neuron (then the network is not a perturbed copy).
    """
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    if a.ndim != 1 or W.shape != (a.size, k + 1) or not 1 <= a.size < k:
        raise ValueError(f"need a of shape (n,) and W of shape (n, k + 1) = (n, {k + 1}) with "
                         f"1 <= n < k; got {a.shape} and {W.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
        raise ValueError("the weights must be finite")
    n = a.size
    sign = np.where(a < 0, -1.0, 1.0)
    a, W = a * sign, W * sign[:, None]
    own = np.argmax(W[:, :k], axis=1)
    if np.unique(own).size != n:
        raise ValueError(f"two student neurons copy the same teacher neuron ({sorted(own)}): "
                         f"not a perturbed copy")
    rest = np.setdiff1d(np.arange(k), own)
    V = W[:, np.concatenate([own, rest, [k]])]
    off = ~np.eye(n, dtype=bool)
    params = np.array([a.mean(), np.diag(V).mean(),
                       V[:, :n][off].mean() if n > 1 else 0.0,
                       V[:, n:k].mean() if k > n else 0.0])
    a_fit, W_fit = perturbed_copy_network(params, k, n)
    deviation = max(float(np.max(np.abs(a - a_fit))), float(np.max(np.abs(V - W_fit))))
    return params, deviation


# ------------------------------------------------- batched Newton (reduced) ---
def _reduced_jet(x, k, n, s2):
    """Reduced loss with its derivatives in (a, alpha, beta, gamma, n).

    x has shape (4, B); n shape (B,) or scalar. Returns (value (B,),
    gradient (4, B), Hessian (B, 4, 4), d gradient / dn (4, B)), float64.

    Evaluated in extended precision (numpy.longdouble, 64-bit mantissa on
    x86) when some a > 4: at large k and small n the outgoing weight a grows to
    thousands and the gradient is a small difference of terms ~ a^2; the extra
    bits keep its round-off below what the ill-conditioned Newton steps would
    amplify.
    """
    # long double only where it is needed (a large); plain doubles are twice as fast
    ld = np.longdouble if np.max(np.abs(np.asarray(x, dtype=float)[0])) > 4.0 else np.float64
    x = np.asarray(x, dtype=ld)
    B = x.shape[1]
    n = np.broadcast_to(np.asarray(n, dtype=ld), (B,))
    k = np.broadcast_to(np.asarray(k, dtype=ld), (B,))
    eye = np.eye(5, dtype=ld)
    jets = [_Jet(v, eye[:, i, None] * np.ones(B, dtype=ld)) for i, v in enumerate(list(x) + [n])]
    L = _reduced(jets[:4], k, jets[4], ld(s2))
    f = np.float64
    h = L.hessian()
    return (L.v.astype(f), L.g[:4].astype(f), np.moveaxis(h[:4, :4], -1, 0).astype(f),
            h[:4, 4].astype(f))


def _newton(x, k, n, s2, max_iter=40, count=False):
    """Newton on the reduced gradient for a batch: x (4, B) -> (x, converged (B,)[, steps (B,)]).

    The relative step |dx| / max(1, |x|) measures progress. An entry stops when
    its step falls below 1e-14, or, once below 1e-6, stops shrinking by half
    (round-off: the reduced Hessian can be ill-conditioned, the near-symmetry
    (a, w) -> (a / t, t w) of a nearly linear erf). Converged: the last step
    below 1e-7 (in practice ~1e-11 and less) and every entry finite.
    """
    x = np.array(x, dtype=float)
    B = x.shape[1]
    done = np.zeros(B, dtype=bool)
    last = np.full(B, np.inf)
    its = np.zeros(B, dtype=int)
    for _ in range(max_iter):
        act = ~done
        if not act.any():
            break
        kk = k[act] if np.ndim(k) else k
        nn = n[act] if np.ndim(n) else n
        xa = x[:, act]
        with np.errstate(all="ignore"):
            _, g, H, _ = _reduced_jet(xa, kk, nn, s2)
            D = 1.0 / np.sqrt(np.abs(np.diagonal(H, axis1=1, axis2=2)))  # (B, 4)
            try:
                z = np.linalg.solve(H * D[:, :, None] * D[:, None, :], (g.T * D)[..., None])
                dx = (z[..., 0] * D).T
            except np.linalg.LinAlgError:
                dx = np.full_like(xa, np.nan)
        size = np.linalg.norm(dx, axis=0) / np.maximum(1.0, np.linalg.norm(xa, axis=0))
        idx = np.flatnonzero(act)
        stalled = (size < 1e-6) & (size > 0.5 * last[idx])
        # a stalled step is round-off: do not take it
        x[:, act] = np.where(stalled, xa, xa - dx)
        its[idx] += 1
        bad = ~np.isfinite(size)
        last[idx] = np.where(stalled, last[idx], size)
        done[idx[stalled | bad | (size < 1e-14)]] = True
    ok = np.isfinite(last) & (last < 1e-7) & np.all(np.isfinite(x), axis=0)
    return (x, ok, its) if count else (x, ok)


# --------------------------------------------------- the Hessian by blocks ---
@dataclass(frozen=True)
class _Layout:
    """Classes of equivalent student neurons and of equivalent input coordinates.

    Student class c has ``sizes[c]`` neurons; if ``attach[c]`` is a coordinate
    class D (of the same size), the neurons of c and the coordinates of D are
    paired one to one (student i owns coordinate i). ``teacher[D]`` tells
    whether the coordinates of D carry teacher neurons (v_j = e_j, a*_j = 1).
    """

    sizes: tuple
    attach: tuple
    tsizes: tuple
    teacher: tuple


def _class_loss(lay: _Layout, a, own, X, s2):
    """Population loss of a network given by classes, as a short sum with multiplicities.

    Student i of class c has outgoing weight ``a[c]`` and incoming vector with
    entry ``X[c][D]`` on every coordinate of class D, except its own coordinate
    (when c is attached to D), where the entry is ``own[c]``. Sizes and values
    may be arrays (a batch) and 2-jets.
    """
    S, nD = len(lay.sizes), len(lay.tsizes)
    t = lay.tsizes
    N = []
    for c in range(S):
        tot = 0.0
        for D in range(nD):
            tot = tot + t[D] * X[c][D] * X[c][D]
        D = lay.attach[c]
        if D is not None:
            tot = tot + own[c] * own[c] - X[c][D] * X[c][D]
        N.append(tot)
    loss = 0.0
    for c in range(S):
        nc, Dc = lay.sizes[c], lay.attach[c]
        loss = loss + a[c] * a[c] * nc * _g(N[c], N[c], N[c], s2)
        if not (isinstance(nc, (int, float)) and nc <= 1):
            dot = 0.0
            for D in range(nD):
                dot = dot + t[D] * X[c][D] * X[c][D]
            if Dc is not None:
                dot = dot + 2.0 * X[c][Dc] * (own[c] - X[c][Dc])
            loss = loss + a[c] * a[c] * nc * (nc - 1.0) * _g(dot, N[c], N[c], s2)
        for c2 in range(c + 1, S):
            D2 = lay.attach[c2]
            dot = 0.0
            for D in range(nD):
                dot = dot + t[D] * X[c][D] * X[c2][D]
            if Dc is not None:
                dot = dot + (own[c] - X[c][Dc]) * X[c2][Dc]
            if D2 is not None:
                dot = dot + X[c][D2] * (own[c2] - X[c2][D2])
            loss = loss + 2.0 * a[c] * a[c2] * nc * lay.sizes[c2] * _g(dot, N[c], N[c2], s2)
        cross = 0.0
        for D in range(nD):
            if not lay.teacher[D]:
                continue
            if D == Dc:
                cross = cross + (t[D] - 1.0) * _g(X[c][D], N[c], 1.0, s2) + _g(own[c], N[c], 1.0, s2)
            else:
                cross = cross + t[D] * _g(X[c][D], N[c], 1.0, s2)
        loss = loss - 2.0 * a[c] * nc * cross
    n_teacher = sum(t[D] for D in range(nD) if lay.teacher[D])
    return loss + n_teacher * _g(1.0, 1.0, 1.0, s2)


@dataclass
class _Base:
    """A G-fixed network: p copying students (attached to p coordinates), m other
    teacher coordinates, one spare coordinate, and optionally one averaging student.

    Copying students: outgoing a_s, own entry own, other copied coordinates
    ``other``, the m coordinates ``on_b``. Averaging student (if ``avg``):
    outgoing a_h, ``h_a`` on the p coordinates, ``h_b`` on the m coordinates.
    All fields are arrays of one shape (the batch).
    """

    p: np.ndarray
    m: np.ndarray
    a_s: np.ndarray
    own: np.ndarray
    other: np.ndarray
    on_b: np.ndarray
    avg: bool = False
    a_h: np.ndarray | None = None
    h_a: np.ndarray | None = None
    h_b: np.ndarray | None = None


def _refine(base: _Base, s_split, b_split):
    """Layout and base values with the copying students split into pieces ``s_split``
    (sizes, summing to p) and the m coordinates into pieces ``b_split``.

    Returns (layout, a, own, X) with the student classes S pieces (then the
    averaging student) and the coordinate classes A pieces, B pieces, spare.
    """
    ns, nb = len(s_split), len(b_split)
    sizes = tuple(s_split) + ((1,) if base.avg else ())
    attach = tuple(range(ns)) + ((None,) if base.avg else ())
    tsizes = tuple(s_split) + tuple(b_split) + (1,)
    teacher = (True,) * (ns + nb) + (False,)
    zero = np.zeros_like(base.p)
    a = [base.a_s] * ns
    own = [base.own] * ns
    X = [[base.other] * ns + [base.on_b] * nb + [zero] for _ in range(ns)]
    if base.avg:
        a.append(base.a_h)
        own.append(None)
        X.append([base.h_a] * ns + [base.h_b] * nb + [zero])
    return _Layout(sizes, attach, tsizes, teacher), a, own, X


def _multiplicity_of(lay: _Layout, c, D):
    """How many coordinates of class D carry the entry X[c][D] for one student of c."""
    return lay.tsizes[D] - 1.0 if lay.attach[c] == D else lay.tsizes[D]


def _block_matrices(base: _Base, s_split, b_split, dirs, s2, ld=np.longdouble):
    """Hessian and Gram matrices of the loss along the directions ``dirs``.

    Each direction is a dict {("a", c): coef, ("own", c): coef, ("X", c, D): coef}
    on the refined layout. Returns H, Gram of shape (B, r, r) (B = batch size).
    """
    lay, a0, own0, X0 = _refine(base, s_split, b_split)
    r = len(dirs)
    shape = np.shape(base.p)
    zeros = np.zeros((r,) + shape, dtype=ld)

    def jet(value):
        return _Jet(np.asarray(value, dtype=ld) * np.ones(shape, dtype=ld), zeros.copy())

    a, own, X = list(a0), list(own0), [list(row) for row in X0]
    for s, d in enumerate(dirs):
        for key, coef in d.items():
            if key[0] == "a":
                ref, i = a, key[1]
            elif key[0] == "own":
                ref, i = own, key[1]
            else:
                ref, i = X[key[1]], key[2]
            if not isinstance(ref[i], _Jet):
                ref[i] = jet(ref[i])
            ref[i].g[s] = ref[i].g[s] + coef
    H = _class_loss(lay, a, own, X, ld(s2)).hessian()
    Gram = np.zeros((r, r) + shape, dtype=ld)
    for s, ds in enumerate(dirs):
        for t_, dt in enumerate(dirs):
            tot = np.zeros(shape, dtype=ld)
            for key, coef in ds.items():
                if key not in dt:
                    continue
                c = key[1]
                mult = _multiplicity_of(lay, c, key[2]) if key[0] == "X" else 1.0
                tot = tot + lay.sizes[c] * mult * coef * dt[key]
            Gram[s, t_] = tot
    H = np.moveaxis(H, (0, 1), (-2, -1))
    Gram = np.moveaxis(Gram, (0, 1), (-2, -1))
    return 0.5 * (H + np.swapaxes(H, -1, -2)), Gram


def _components(base: _Base):
    """The isotypic components at a G-fixed network: (name, s_split, b_split,
    directions, multiplicity) for those present (multiplicity > 0).

    ``base.p`` and ``base.m`` must be arrays of one value repeated (one case).
    """
    p = np.asarray(base.p, dtype=float)
    m = np.asarray(base.m, dtype=float)
    p0, m0 = float(p.flat[0]), float(m.flat[0])
    avg = base.avg
    out = []
    H = 1  # index of the averaging student when the copies are not split

    # trivial, even
    dirs = [{("a", 0): 1.0}, {("own", 0): 1.0}, {("X", 0, 0): 1.0}, {("X", 0, 1): 1.0}]
    if avg:
        dirs += [{("a", H): 1.0}, {("X", H, 0): 1.0}, {("X", H, 1): 1.0}]
    keep = [d for d in dirs if not _structurally_zero(d, p0, m0, (p0,), (m0,))]
    out.append(("triv", (p,), (m,), keep, np.ones_like(p)))
    if p0 >= 2:
        u1, uR = 1.0 - 1.0 / p, -1.0 / p
        split = (1, p - 1)
        dirs = [{("a", 0): u1, ("a", 1): uR},
                {("own", 0): u1, ("own", 1): uR},
                {("X", 0, 1): u1, ("X", 1, 0): uR, ("X", 1, 1): uR}]
        if p0 >= 3:  # at p = 2 the column direction is minus the row direction
            dirs.append({("X", 0, 1): uR, ("X", 1, 0): u1, ("X", 1, 1): uR})
        dirs.append({("X", 0, 2): u1, ("X", 1, 2): uR})
        if avg:
            dirs.append({("X", 2, 0): u1, ("X", 2, 1): uR})
        out.append(("std_p", split, (m,), dirs, p - 1.0))
        out.append(("std_p odd", split, (m,), [{("X", 0, 3): u1, ("X", 1, 3): uR}], p - 1.0))
    if p0 >= 4:
        x, y, z = p - 2.0, -np.ones_like(p), 2.0 / (p - 3.0)
        out.append(("[p-2,2]", (2, p - 2), (m,),
                    [{("X", 0, 0): x, ("X", 0, 1): y, ("X", 1, 0): y, ("X", 1, 1): z}],
                    p * (p - 3.0) / 2.0))
    if p0 >= 3:
        x, y = p - 2.0, -np.ones_like(p)
        out.append(("[p-2,1,1]", (1, 1, p - 2), (m,),
                    [{("X", 0, 1): x, ("X", 0, 2): y, ("X", 1, 0): -x, ("X", 1, 2): -y,
                      ("X", 2, 0): -y, ("X", 2, 1): y}],
                    (p - 1.0) * (p - 2.0) / 2.0))
    if m0 >= 2:
        f1, fR = 1.0 - 1.0 / m, -1.0 / m
        nsp = 1
        dirs = [{("X", 0, nsp): f1, ("X", 0, nsp + 1): fR}]
        if avg:
            dirs.append({("X", H, nsp): f1, ("X", H, nsp + 1): fR})
        dirs = [d for d in dirs if not _structurally_zero(d, p0, m0, (p0,), (1, m0 - 1))]
        out.append(("std_m", (p,), (1, m - 1), dirs, m - 1.0))
        if p0 >= 2:
            u1, uR = 1.0 - 1.0 / p, -1.0 / p
            out.append(("std_p x std_m", (1, p - 1), (1, m - 1),
                        [{("X", 0, 2): u1 * f1, ("X", 0, 3): u1 * fR,
                          ("X", 1, 2): uR * f1, ("X", 1, 3): uR * fR}],
                        (p - 1.0) * (m - 1.0)))
    dirs = [{("X", 0, 2): 1.0}]
    if avg:
        dirs.append({("X", H, 2): 1.0})
    dirs = [d for d in dirs if not _structurally_zero(d, p0, m0, (p0,), (m0,))]
    out.append(("triv odd", (p,), (m,), dirs, np.ones_like(p)))
    return out


def _structurally_zero(d, p0, m0, s_split, b_split):
    """True when a direction of the unsplit layout touches no parameter at all
    (no copying students, or only the 'other' entries of a single copy, ...)."""
    ns, nb = len(s_split), len(b_split)
    tsizes = tuple(s_split) + tuple(b_split) + (1,)
    for key in d:
        c = key[1]
        if c < ns and s_split[c] == 0:
            continue
        if key[0] == "X":
            D = key[2]
            mult = tsizes[D] - 1 if (c < ns and D == c) else tsizes[D]
            if mult == 0:
                continue
        return False
    return True


def _cholesky_ld(G):
    """Cholesky factor L (lower) of a batch of small SPD matrices (B, r, r), any dtype."""
    r = G.shape[-1]
    L = np.zeros_like(G)
    for j in range(r):
        d = G[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=-1)
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, r):
            L[:, i, j] = (G[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=-1)) / L[:, j, j]
    return L


def _forward_ld(L, B):
    """L^{-1} B for lower-triangular L (b, r, r) and B (b, r, c), any dtype."""
    r = L.shape[-1]
    X = np.zeros_like(B)
    for i in range(r):
        X[:, i] = (B[:, i] - np.einsum("bj,bjc->bc", L[:, i, :i], X[:, :i])) / L[:, i, i, None]
    return X


def _eigvalsh_ld(M, sweeps=30):
    """Eigenvalues (ascending) of a batch of small symmetric matrices (B, r, r) by
    cyclic Jacobi rotations, in the dtype of M (numpy.linalg has no long double).

    A rotation is skipped once |M_pq| <= eps sqrt(|M_pp M_qq|): this relative
    criterion gives eigenvalues to high relative accuracy for graded matrices
    (Demmel and Veselic 1992), which the CA blocks are (eigenvalues from ~1e-10
    to ~1e11 at k = 1000).
    """
    M = M.copy()
    r = M.shape[-1]
    eps = np.finfo(M.dtype).eps
    for _ in range(sweeps):
        rotated = False
        for p in range(r - 1):
            for q in range(p + 1, r):
                apq = M[:, p, q]
                nz = np.abs(apq) > eps * np.sqrt(np.abs(M[:, p, p] * M[:, q, q]))
                if not np.any(nz):
                    continue
                rotated = True
                safe = np.where(nz, apq, 1)
                theta = np.where(nz, (M[:, q, q] - M[:, p, p]) / (2 * safe), 0)
                t = np.where(nz, np.sign(theta + (theta == 0)) /
                             (np.abs(theta) + np.sqrt(theta * theta + 1)), 0)
                c = 1 / np.sqrt(t * t + 1)
                sn = t * c
                Mp, Mq = M[:, :, p].copy(), M[:, :, q].copy()
                M[:, :, p] = c[:, None] * Mp - sn[:, None] * Mq
                M[:, :, q] = sn[:, None] * Mp + c[:, None] * Mq
                Mp, Mq = M[:, p, :].copy(), M[:, q, :].copy()
                M[:, p, :] = c[:, None] * Mp - sn[:, None] * Mq
                M[:, q, :] = sn[:, None] * Mp + c[:, None] * Mq
        if not rotated:
            break
    return np.sort(np.diagonal(M, axis1=1, axis2=2), axis=-1)


def _block_spectra(base: _Base, s2, extended=True):
    """Eigenvalues of every block: list of (name, eigenvalues (B, r), multiplicity (B,)).

    The blocks are graded: at the CA optimum with k = 10^4 one trivial-block
    eigenvalue is ~1e-21 of the largest (the averaging neuron is nearly
    linear, (a, w) -> (a / t, t w) is nearly a symmetry, while moving all its
    weights on the copied coordinates costs ~m^2 p^2). The Jacobi routine
    :func:`_eigvalsh_ld` resolves it to ~1e-7 relative even in double
    precision (LAPACK's eigvalsh only to ~1e-16 of the largest). With
    ``extended`` everything is done in long double (the tests' second route).
    """
    ld = np.longdouble if extended else np.float64
    base = _Base(**{f: (np.asarray(v, dtype=ld) if isinstance(v, np.ndarray) else v)
                    for f, v in vars(base).items()})
    out = []
    for name, s_split, b_split, dirs, mult in _components(base):
        if not dirs:
            continue
        H, Gram = _block_matrices(base, s_split, b_split, dirs, s2, ld)
        if extended:
            Lc = _cholesky_ld(Gram)
            Y = _forward_ld(Lc, H)
            M = _forward_ld(Lc, np.swapaxes(Y, -1, -2))
            ev = _eigvalsh_ld(0.5 * (M + np.swapaxes(M, -1, -2)))
        else:
            Lc = np.linalg.cholesky(Gram)
            Y = np.linalg.solve(Lc, H)
            M = np.linalg.solve(Lc, np.swapaxes(Y, -1, -2))
            ev = _eigvalsh_ld(0.5 * (M + np.swapaxes(M, -1, -2)))
        out.append((name, ev.astype(float), np.broadcast_to(np.asarray(mult, dtype=float),
                                                             np.shape(base.p))))
    return out


# ------------------------------------------------------------- spectra ---
@dataclass(frozen=True)
class Spectrum:
    """The Hessian spectrum of a G-fixed network, block by block.

    Attributes
    ----------
    eigenvalues : ndarray, shape (q,)
        The distinct block eigenvalues, ascending (q <= ~25 for any k).
    multiplicities : ndarray of int, shape (q,)
        How often each appears in the full Hessian; they sum to n (k + 2).
    components : tuple of str, length q
        The isotypic component each eigenvalue comes from (see the module docstring).
    """

    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    components: tuple

    def expanded(self) -> np.ndarray:
        """All n (k + 2) eigenvalues of the Hessian, ascending, shape (sum of multiplicities,)."""
        return np.repeat(self.eigenvalues, self.multiplicities)

    @property
    def size(self) -> int:
        """n (k + 2), the number of parameters."""
        return int(self.multiplicities.sum())

    @property
    def smallest(self) -> float:
        """The smallest eigenvalue."""
        return float(self.eigenvalues[0])

    def count(self, rtol: float = 1e-10) -> tuple[int, int, int]:
        """(negative, zero, positive) eigenvalue counts with multiplicity; zero means
        ``|lambda| <= rtol * max(1, max |lambda|)`` (as in
        :func:`copyaverage.critical.hessian_signature`, whose default rtol 1e-8 is
        meant for dense eigenvalues). The block eigenvalues are more accurate than
        that: at large k the CA optimum has a genuine positive eigenvalue ~1e-21 of
        the largest (k = 10^4), which this count calls zero; ``eigenvalues`` keeps it."""
        tol = rtol * max(1.0, float(np.max(np.abs(self.eigenvalues))))
        ev, mu = self.eigenvalues, self.multiplicities
        return (int(mu[ev < -tol].sum()), int(mu[np.abs(ev) <= tol].sum()),
                int(mu[ev > tol].sum()))


def _spectrum_from_blocks(blocks, i=0) -> Spectrum:
    ev, mu, names = [], [], []
    for name, e, mult in blocks:
        mult_i = int(round(float(np.asarray(mult).flat[i])))
        if mult_i <= 0:
            continue
        for val in e[i]:
            ev.append(float(val))
            mu.append(mult_i)
            names.append(name)
    order = np.argsort(ev, kind="stable")
    return Spectrum(np.asarray(ev)[order], np.asarray(mu, dtype=int)[order],
                    tuple(names[j] for j in order))


def _ca_base(k, n, s2) -> _Base:
    """The CA optimum as a G-fixed network (p = n - 1 copies, m = k - n + 1 averaged)."""
    n = np.atleast_1d(np.asarray(n, dtype=float))
    k = np.broadcast_to(np.asarray(k, dtype=float), n.shape)
    p, m = n - 1.0, k - n + 1.0
    one, zero = np.ones_like(n), np.zeros_like(n)
    w2 = 1.0 / (m * (1.0 + s2) - s2)  # |w*|^2 of the average of m teacher neurons
    return _Base(p=p, m=m, a_s=one, own=one, other=zero, on_b=zero, avg=True,
                 a_h=m, h_a=zero, h_b=np.sqrt(w2 / m))


def _pc_base(k, n, x) -> _Base:
    n = np.atleast_1d(np.asarray(n, dtype=float))
    k = np.broadcast_to(np.asarray(k, dtype=float), n.shape)
    x = np.asarray(x, dtype=float).reshape(4, -1)
    return _Base(p=n, m=k - n, a_s=x[0], own=x[1], other=x[2], on_b=x[3])


def _subset(base: _Base, idx) -> _Base:
    return _Base(**{f: (v[idx] if isinstance(v, np.ndarray) else v) for f, v in vars(base).items()})


def _group_blocks(base_all: _Base, s2, extended=True):
    """Block spectra for a batch of G-fixed networks, grouped by the cases that
    change the block layout (p < 4, m < 2). Yields (indices, blocks)."""
    p, m = base_all.p, base_all.m
    key = np.minimum(np.floor(p), 4) * 10 + np.minimum(np.floor(m), 2)
    for kv in np.unique(key):
        idx = np.flatnonzero(key == kv)
        yield idx, _block_spectra(_subset(base_all, idx), s2, extended)


def _component_low(base: _Base, s2, name) -> float:
    """Smallest eigenvalue of one isotypic component (by name) for a single network."""
    for nm, s_split, b_split, dirs, _ in _components(base):
        if nm == name and dirs:
            H, Gram = _block_matrices(base, s_split, b_split, dirs, s2, np.float64)
            Lc = np.linalg.cholesky(Gram)
            M = np.linalg.solve(Lc, np.swapaxes(np.linalg.solve(Lc, H), -1, -2))
            return float(_eigvalsh_ld(0.5 * (M + np.swapaxes(M, -1, -2)))[0, 0])
    raise ValueError(f"no component {name!r} here")


def _single_spectrum(base: _Base, s2) -> Spectrum:
    (_, blocks), = list(_group_blocks(base, s2, extended=False))
    return _spectrum_from_blocks(blocks)


def _spectrum_summary(base_all: _Base, s2, rtol=1e-10):
    """Per network: smallest eigenvalue, its component, and the numbers of negative
    and zero eigenvalues counted with multiplicity (zero: |lambda| <= rtol max |lambda|).

    Double precision suffices: the Jacobi eigenvalue routine gets the tiny
    eigenvalues of the graded blocks to high relative accuracy (the tests
    compare with long double).
    """
    q = np.size(base_all.p)
    smallest = np.full(q, np.inf)
    where = np.empty(q, dtype=object)
    neg = np.zeros(q, dtype=np.int64)
    zero = np.zeros(q, dtype=np.int64)

    def run(rows, extended):
        sub = _subset(base_all, rows)
        smallest[rows], neg[rows], zero[rows] = np.inf, 0, 0
        for idx, blocks in _group_blocks(sub, s2, extended):
            at = rows[idx]
            scale = np.max([np.max(np.abs(ev), axis=1) for _, ev, _ in blocks], axis=0)
            tol = rtol * np.maximum(1.0, scale)
            for name, ev, mult in blocks:
                mult = np.rint(np.asarray(mult, dtype=float)).astype(np.int64)
                low = ev[:, 0]
                better = low < smallest[at]
                smallest[at] = np.where(better, low, smallest[at])
                where[at[better]] = name
                neg[at] += mult * np.sum(ev < -tol[:, None], axis=1)
                zero[at] += mult * np.sum(np.abs(ev) <= tol[:, None], axis=1)

    run(np.arange(q), False)
    return smallest, where, neg, zero


def ca_optimum_spectrum(k: int, n: int, activation: str | Activation = "erf") -> Spectrum:
    """The Hessian spectrum of the CA optimum, with multiplicities, for any k.

    The CA optimum (n - 1 copies, one average of the other k - n + 1 teacher
    neurons) is fixed by S_{n-1} x S_{k-n+1} x Z_2; its Hessian splits into
    blocks of size at most 7 (module docstring).

    Parameters
    ----------
    k, n : int
        Teacher width k >= 2 and student width 1 <= n < k (d = k + 1).
    activation : str or Activation
        The erf family (default ``"erf"``).

    Returns
    -------
    Spectrum
        ``expanded()`` has n (k + 2) entries, the eigenvalues of
        ``Objective(Teacher.orthonormal(k), activation, n).hessian(theta)`` at
        ``ca_optimum_point(n, Teacher.orthonormal(k), activation)``.
    """
    s2 = _erf_s2(activation)
    k, n = _check_int_kn(k, n, "CA optimum")
    return _single_spectrum(_ca_base(k, n, s2), s2)


# ------------------------------------------------ the branch of perturbed copies ---
@dataclass(frozen=True)
class BranchEnd:
    """Where the branch of perturbed copies, followed from n = k - 1 down, ends.

    Attributes
    ----------
    n : float
        The real student width at the end.
    kind : str
        ``"fold"``: the branch turns back (a saddle-node; the reduced Hessian is
        singular there) and no perturbed copy exists for n < ``n``
        (k >= 22: the fold is at 2.174 for k = 22, 2.0344 for k = 50, 2.0081
        for k = 100, ~80 / k^2 above 2 beyond);
        ``"ca_optimum"``: the branch reaches n = 1 (k <= 21), where beta has no
        coordinate left and the point is the one-neuron average of all k
        teacher neurons, the CA optimum at n = 1;
        ``"unresolved"``: the continuation stopped (steps below 1e-9 n) but
        the fold could not be pinned down; ``n`` is then the last point
        reached. For k in the hundreds the branch ends within ~1e-4 of n = 2
        with a ~ 1e4 and ``|w| ~ 0.02``: the students are almost linear, the
        (a, w) -> (a / t, t w) near-symmetry makes the reduced problem
        ill-conditioned (scaled condition number ~1e9), and round-off moves
        the fold by ~1e-5; at k = 10^4 the continuation stops near n = 7.
    params : ndarray, shape (4,)
        (a, alpha, beta, gamma) at the end (at n = 1: the average, beta = 0).
    """

    n: float
    kind: str
    params: np.ndarray


@dataclass(frozen=True)
class Branch:
    """The branch of perturbed copies at teacher width k, as a curve in real n.

    Attributes
    ----------
    k : int
    n : ndarray, shape (q,)
        Continuation nodes, ascending, from the end to k - 1.
    params : ndarray, shape (q, 4)
        (a, alpha, beta, gamma) at the nodes (critical points of :func:`reduced_loss`).
    slope : ndarray, shape (q, 4)
        d params / d n at the nodes.
    end : BranchEnd
    """

    k: int
    n: np.ndarray
    params: np.ndarray
    slope: np.ndarray
    end: BranchEnd
    s2: float = 1.0

    def guess(self, n) -> np.ndarray:
        """Cubic Hermite interpolation of the params at real n, shape (4, len(n))."""
        n = np.atleast_1d(np.asarray(n, dtype=float))
        if self.n.size == 1:
            return np.repeat(self.params.T, n.size, axis=1)
        spline = CubicHermiteSpline(self.n, self.params, self.slope, axis=0, extrapolate=True)
        return spline(n).T


def _scales(y, k):
    """Typical sizes of (a, alpha, beta, gamma, n) at y = (x, n): the norm in which
    the continuation measures steps and chooses its parameter."""
    a, al, be, ga, n = (float(v) for v in y)
    r = math.sqrt(al * al + (n - 1.0) * be * be + (k - n) * ga * ga)  # |w|
    return np.array([max(abs(a), 1e-3), r, r / math.sqrt(max(n - 1.0, 1e-2)),
                     r / math.sqrt(max(k - n, 1e-2)), max(n, 1.0)])


def _system(y, k, s2):
    """Reduced gradient g (4,) and its Jacobian J (4, 5) in (a, alpha, beta, gamma, n)."""
    _, g, H, dgdn = _reduced_jet(np.asarray(y[:4]).reshape(4, 1), k, y[4], s2)
    return g[:, 0], np.concatenate([H[0], dgdn], axis=1)


def _solve_fixed(y, j, k, s2, max_iter=30, jacobian=False):
    """Newton's method on the reduced gradient with y[j] held fixed (j = 4: n fixed).

    Columns are scaled by :func:`_scales` and rows equilibrated, so the steps are
    measured relative to the size of each unknown. Stops after a scaled step
    below 1e-9 (quadratic convergence leaves an error ~1e-18), or when a step
    below 1e-6 no longer halves (round-off). Returns (y, converged, iterations)
    and, with ``jacobian``, the last Jacobian (4, 5); converged means a last
    scaled step below 1e-8.
    """
    free = [i for i in range(5) if i != j]
    y = np.array(y, dtype=float)
    last, its, J = np.inf, 0, None

    def out(ok):
        return (y, ok, its, J) if jacobian else (y, ok, its)

    for its in range(1, max_iter + 1):
        with np.errstate(all="ignore"):  # a wild trial step may leave arcsin's domain
            g, J = _system(y, k, s2)
        S = _scales(y, k)[free]
        A = J[:, free] * S
        R = 1.0 / np.max(np.abs(A), axis=1)
        with np.errstate(all="ignore"):
            try:
                z = np.linalg.solve(A * R[:, None], g * R)
            except np.linalg.LinAlgError:
                return out(False)
        size = float(np.linalg.norm(z))
        if not math.isfinite(size):
            return out(False)
        if size < 1e-6 and size > 0.5 * last:
            break
        y[free] -= S * z
        last = size
        if size < 1e-9:
            break
        if y[4] < 1.0 or y[4] > k:
            return out(False)
    return out(last < 1e-8)


def _start(k, s2):
    """The perturbed copy at n = k - 1, by a trust-region minimization of the reduced loss."""
    from scipy.optimize import minimize

    n = k - 1.0

    def fun(x):
        v, g, H, _ = _reduced_jet(np.asarray(x).reshape(4, 1), k, n, s2)
        return float(v[0]), g[:, 0], H[0]

    res = minimize(lambda x: fun(x)[0], np.array([1.0, 1.0, 0.0, 0.0]),
                   jac=lambda x: fun(x)[1], hess=lambda x: fun(x)[2],
                   method="trust-exact", options=dict(gtol=1e-10, maxiter=500))
    y, ok, _ = _solve_fixed(np.append(res.x, n), 4, k, s2)
    if not ok:
        raise RuntimeError(f"no perturbed copy found at k = {k}, n = k - 1 "
                           f"(trust-region minimization: {res.message})")
    return y


def _ca_average(k, s2):
    """(a, alpha, beta, gamma) of the one-neuron average of all k teacher neurons."""
    w2 = 1.0 / (k * (1.0 + s2) - s2)
    c = math.sqrt(w2 / k)
    return np.array([float(k), c, 0.0, c])


def _smallest_eigenvalue(y, k, s2, J=None):
    """Smallest eigenvalue of the Jacobi-scaled reduced Hessian D H D at y (zero at a fold)."""
    H = (_system(y, k, s2)[1] if J is None else J)[:, :4]
    D = 1.0 / np.sqrt(np.abs(np.diag(H)))
    return float(np.linalg.eigvalsh(H * D[:, None] * D[None, :])[0])


def _slope(y, k, s2, J=None):
    """d(a, alpha, beta, gamma)/dn along the branch at y = (x, n), shape (4,)."""
    J = _system(y, k, s2)[1] if J is None else J
    H, dgdn = J[:, :4], J[:, 4]
    D = 1.0 / np.sqrt(np.abs(np.diag(H)))
    return -D * np.linalg.solve(H * D[:, None] * D[None, :], D * dgdn)


def _locate_fold(y, k, s2):
    """The fold just below the last branch point y that natural continuation reached.

    Near the fold n is not a parameter any more; the unknown that moves fastest
    along the branch is. Hold it fixed, march it on past the fold until n
    turns back up, and minimize n over it (bounded Brent). Returns the branch
    point (x, n) at the fold, or None.
    """
    from scipy.optimize import minimize_scalar

    S = _scales(y, k)
    t = np.append(-_slope(y, k, s2), -1.0) / S  # direction of decreasing n, scaled
    j = int(np.argmax(np.abs(t[:4])))
    sign = math.copysign(1.0, t[j])
    best = {"y": y}

    def n_at(v, guess):
        g = guess.copy()
        g[j] = v
        y1, ok, _ = _solve_fixed(g, j, k, s2)
        if not ok or np.linalg.norm((y1 - g)[:4] / S[:4]) > 1e-2:  # lost the branch
            return math.inf, guess
        if y1[4] < best["y"][4]:
            best["y"] = y1
        return float(y1[4]), y1

    step = 1e-4 * S[j]
    v0, n0, g0 = y[j], y[4], y
    v1, (n1, g1) = v0 + sign * step, n_at(v0 + sign * step, y)
    for _ in range(25):
        v2 = v1 + sign * step
        n2, g2 = n_at(v2, g1 + (g1 - g0))
        if not math.isfinite(n2):
            step *= 0.5
            continue
        if n2 > n1:  # passed the minimum of n: it lies in (v0, v2)
            lo, hi = sorted((v0, v2))
            minimize_scalar(lambda v: n_at(v, g1)[0], bounds=(lo, hi), method="bounded",
                            options=dict(xatol=1e-13 * max(abs(lo), abs(hi)), maxiter=40))
            return best["y"]
        v0, n0, g0, v1, n1, g1 = v1, n1, g1, v2, n2, g2
        step *= 2.0
    return None


@lru_cache(maxsize=16)
def _branch(k: int, s2: float) -> Branch:
    """Follow the critical points of the reduced loss from n = k - 1 down in real n.

    Natural continuation in n (tangent predictor, scaled Newton corrector at
    fixed n, step control on the predictor error): it cannot step past a fold,
    so it stops at the first one, which :func:`_locate_fold` then pins down.
    """
    kf = float(k)
    y = _start(kf, s2)
    n_floor = 1.0 + 1e-3
    pts, slopes = [y], [_slope(y, kf, s2)]
    ev = _smallest_eigenvalue(y, kf, s2)
    h = 0.25
    end = None
    for _ in range(100000):
        landing = y[4] - h <= n_floor
        if landing:
            h = y[4] - n_floor
        S = _scales(y, kf)
        yp = np.append(y[:4] - h * slopes[-1], y[4] - h)
        y1, ok, _, J1 = _solve_fixed(yp, 4, kf, s2, jacobian=True)
        pred = np.linalg.norm((yp - y)[:4] / S[:4])
        ratio = np.linalg.norm((y1 - yp)[:4] / S[:4]) / max(pred, 1e-300)
        ok = ok and ratio <= 0.2 and pred <= 0.2
        if ok:  # a step across a fold (onto another branch) flips the sign of det H
            ev1 = _smallest_eigenvalue(y1, kf, s2, J1)
            ok = ev1 * ev > 0
        if ok:
            y, ev = y1, ev1
            pts.append(y)
            slopes.append(_slope(y, kf, s2, J1))
            if landing:
                end = BranchEnd(1.0, "ca_optimum", _ca_average(kf, s2))
                break
            h *= min(2.0, max(0.5, 0.1 / max(ratio, 1e-12)))
            h = min(h, 0.2 * y[4], 0.3 * h / max(pred, 1e-300))
            continue
        h *= 0.5
        if h < 1e-9 * y[4]:
            yf = _locate_fold(y, kf, s2)
            end = (BranchEnd(float(y[4]), "unresolved", y[:4].copy()) if yf is None
                   else BranchEnd(float(yf[4]), "fold", yf[:4].copy()))
            break
    if end is None:
        end = BranchEnd(float(y[4]), "unresolved", y[:4].copy())
    P = np.array(pts)
    order = np.argsort(P[:, 4])
    return Branch(k=k, n=P[order, 4], params=P[order, :4], slope=np.array(slopes)[order],
                  end=end, s2=s2)


def perturbed_copy_branch(k: int, activation: str | Activation = "erf") -> Branch:
    """The branch of perturbed copies at teacher width k, followed in real n.

    Starts at n = k - 1 (a trust-region minimization of :func:`reduced_loss`
    from the teacher's copy a = alpha = 1, beta = gamma = 0), then follows the
    critical points of the reduced loss down in real n (tangent predictor,
    Newton corrector, step halving) until the branch ends: at a fold (located
    to round-off by Newton's method on gradient = 0, det Hessian = 0) or at
    n = 1, where it reaches the CA optimum. Cached per (k, activation).

    Parameters
    ----------
    k : int, k >= 2
    activation : str or Activation
        The erf family.

    Returns
    -------
    Branch
    """
    s2 = _erf_s2(activation)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    return _branch(int(k), s2)


def _solve_on_branch(br: Branch, n_values):
    """Critical points of the reduced loss at (real) n on the branch: (x (4, q), ok (q,))."""
    n_values = np.atleast_1d(np.asarray(n_values, dtype=float))
    x, ok = _newton(br.guess(n_values), float(br.k), n_values, br.s2)
    for i in np.flatnonzero(~ok):  # rare: correct from the guess with the scaled Newton
        y, good, _ = _solve_fixed(np.append(br.guess(n_values[i])[:, 0], n_values[i]), 4,
                                  float(br.k), br.s2)
        x[:, i], ok[i] = y[:4], good
    return x, ok


def perturbed_copy_params(k: int, n: int, activation: str | Activation = "erf") -> np.ndarray:
    """(a, alpha, beta, gamma) of the perturbed copy at teacher width k, student width n.

    A critical point of :func:`reduced_loss` on the branch of
    :func:`perturbed_copy_branch`, polished by Newton's method to round-off.

    Parameters
    ----------
    k, n : int
        1 <= n < k.
    activation : str or Activation
        The erf family.

    Returns
    -------
    ndarray, shape (4,)

    Raises
    ------
    ValueError
        For n outside 1 <= n < k, or below the end of the branch (a fold), where
        no perturbed copy exists; the message says where the branch ends. At
        n = 1 (when the branch reaches it) the perturbed copy is the CA optimum,
        the average of all k teacher neurons (beta is then meaningless, set to 0).
    """
    s2 = _erf_s2(activation)
    k, n = _check_int_kn(k, n)
    br = _branch(k, s2)
    if n < br.end.n or (n == 1 and br.end.kind != "ca_optimum"):
        raise ValueError(
            f"no perturbed copy at k = {k}, n = {n}: the branch followed down from n = k - 1 "
            f"ends in a fold at n = {br.end.n:.6f} (it exists for {math.ceil(br.end.n)} <= n < k)")
    if n == 1:
        return br.end.params.copy()
    x, ok = _solve_on_branch(br, [n])
    if not ok[0]:
        raise RuntimeError(f"Newton's method did not converge on the branch at k = {k}, n = {n}")
    return x[:, 0]


def perturbed_copy(k: int, n: int, activation: str | Activation = "erf"):
    """The perturbed copy as a full network: a critical point of the population loss.

    Parameters
    ----------
    k, n : int
        Teacher width (d = k + 1, ``Teacher.orthonormal(k)``) and student width, 1 <= n < k.
    activation : str or Activation
        The erf family (default ``"erf"``), or ``"relu"``: then the critical point that
        gradient flow within the family reaches from n exact copies
        (:func:`copyaverage.symmetric.symmetric_perturbed_copy`), which may be a saddle.

    Returns
    -------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, k + 1)
        :func:`perturbed_copy_network` of :func:`perturbed_copy_params`.

    Raises
    ------
    ValueError
        As :func:`perturbed_copy_params` (bad k, n, or no perturbed copy at this n).
    """
    if get_activation(activation).kind == "relu":
        from .symmetric import symmetric_perturbed_copy
        from .teacher import Teacher

        k, n = _check_int_kn(k, n)
        point = symmetric_perturbed_copy(n, Teacher.orthonormal(k), activation)
        return point.a, point.W
    return perturbed_copy_network(perturbed_copy_params(k, n, activation), k, n)


def perturbed_copy_spectrum(k: int, n: int, activation: str | Activation = "erf") -> Spectrum:
    """The Hessian spectrum of the perturbed copy, with multiplicities, for any k.

    Blocks of size at most 5, one per isotypic component of S_n x S_{k-n} x Z_2
    (module docstring).

    Parameters
    ----------
    k, n : int
        1 <= n < k, with a perturbed copy at (k, n) (see :func:`perturbed_copy_params`).
    activation : str or Activation

    Returns
    -------
    Spectrum
        ``expanded()`` has the n (k + 2) eigenvalues of the dense Hessian at
        :func:`perturbed_copy` (k, n).
    """
    s2 = _erf_s2(activation)
    x = perturbed_copy_params(k, n, activation)
    return _single_spectrum(_pc_base(k, n, x), s2)


# ------------------------------------------------------------ the transition ---
def _ca_loss(k, n, s2):
    """Loss of the CA optimum, analytic in real n: L*(k - n + 1) (the copies cost nothing)."""
    m = k - np.asarray(n, dtype=float) + 1.0
    q = s2 / (1.0 + s2)
    return _TWO_OVER_PI * (m * math.asin(q) - m * m * np.arcsin(q / m))


def _pc_loss(x, k, n, s2):
    ld = np.longdouble
    return np.asarray(_reduced(np.asarray(x, dtype=ld), ld(k), np.asarray(n, dtype=ld), ld(s2)),
                      dtype=float)


def _crossings(f, n_int, values, labels=None):
    """Real roots of f between consecutive integers where ``values`` (f at n_int)
    change sign; with ``labels``, f(n, label) is called with the label of the
    negative end (the component whose eigenvalue changes sign)."""
    roots = []
    ok = np.isfinite(values)
    for i in range(len(n_int) - 1):
        if not (ok[i] and ok[i + 1]) or values[i] == 0 or values[i] * values[i + 1] > 0:
            continue
        g = f
        if labels is not None:
            label = labels[i] if values[i] < 0 else labels[i + 1]
            g = lambda n, label=label: f(n, label)  # noqa: E731
        try:
            roots.append(float(brentq(g, n_int[i], n_int[i + 1], xtol=1e-10, rtol=1e-12)))
        except (ValueError, RuntimeError):
            roots.append(float(0.5 * (n_int[i] + n_int[i + 1])))
    return roots


def transition(k: int, activation: str | Activation = "erf") -> "pd.DataFrame":
    """CA optimum and perturbed copy for every student width n from 1 to k - 1.

    Everything comes from closed forms and the block spectra: no dense Hessian,
    so k = 10^4 takes seconds.

    Parameters
    ----------
    k : int, k >= 3
        Teacher width (unit-orthonormal teacher, d = k + 1).
    activation : str or Activation
        The erf family (default ``"erf"``), or ``"relu"``: then
        :func:`copyaverage.symmetric.symmetric_transition` (the relaxed CA optimum and
        the ReLU perturbed copy, dense Hessians, integer n only; its own columns).

    Returns
    -------
    pandas.DataFrame
        One row per n, columns ``n``, ``ca_loss``, ``pc_loss`` (NaN where there
        is no perturbed copy), ``ca_min_eigenvalue``, ``pc_min_eigenvalue``
        (smallest Hessian eigenvalue), ``ca_min_component``,
        ``pc_min_component`` (the isotypic component it comes from),
        ``ca_negative``, ``pc_negative``, ``ca_zero``, ``pc_zero`` (numbers of
        negative and of zero eigenvalues with multiplicity, zero meaning
        ``|lambda| <= 1e-10 max |lambda|``, the resolution of a dense eigensolver;
        the min_eigenvalue columns keep the sign of such eigenvalues, resolved
        by the block route; -1 where there is no perturbed copy), ``pc_a``, ``pc_alpha``, ``pc_beta``, ``pc_gamma``
        (the perturbed copy's parameters) and ``lower`` (``"perturbed copy"``
        or ``"CA optimum"``). ``DataFrame.attrs`` holds the boundaries as real
        numbers (the reduced loss, the CA loss and every block are analytic in
        n, so each boundary is a root found by Brent's method between the
        integers where it changes sign):

        ``branch_end``, ``branch_end_kind``
            where the perturbed-copy branch ends (:class:`BranchEnd`); it exists
            for real n in [branch_end, k).
        ``unconverged``
            integer n above the branch end where Newton's method did not
            converge (their perturbed-copy columns are NaN; in practice n = 3 or
            so at k ~ 1000, see :class:`BranchEnd`).
        ``loss_crossings``
            list of n where the two losses are equal.
        ``pc_stability_changes``, ``ca_stability_changes``
            lists of n where the smallest Hessian eigenvalue changes sign.
        ``pc_minimum_from``
            smallest integer n such that the perturbed copy has no negative
            Hessian eigenvalue for every n' >= n (a minimum; eigenvalues within
            1e-10 of the largest in size count as zero, see ``pc_zero``).
        ``ca_minimum_up_to``
            largest integer n such that the CA optimum has no negative
            eigenvalue for every n' <= n (at large k and small n its smallest
            eigenvalue is positive but ~1e-10 of the largest: ``ca_zero``).
        ``pc_lower_from``
            smallest integer n from which on the perturbed copy has the lower loss.
    """
    if get_activation(activation).kind == "relu":
        from .symmetric import symmetric_transition

        return symmetric_transition(k, activation)
    s2 = _erf_s2(activation)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3:
        raise ValueError(f"k must be an integer >= 3 (so that 1 <= n < k has room for two "
                         f"kinds of solution), got {k!r}")
    k = int(k)
    kf = float(k)
    br = _branch(k, s2)
    ns = np.arange(1, k, dtype=float)

    ca_loss = _ca_loss(kf, ns, s2)
    ca_min, ca_where, ca_neg, ca_zero = _spectrum_summary(_ca_base(kf, ns, s2), s2)

    exists = ns >= br.end.n
    if br.end.kind != "ca_optimum":
        exists &= ns > 1
    X = np.full((4, ns.size), np.nan)
    inner = exists & (ns > 1)
    X[:, inner], ok = _solve_on_branch(br, ns[inner])
    unconverged = ns[inner][~ok]
    X[:, np.isin(ns, unconverged)] = np.nan
    exists &= ~np.isin(ns, unconverged)
    if exists[0]:  # n = 1 on a branch that reaches the CA optimum
        X[:, 0] = br.end.params
    pc_loss = np.full(ns.size, np.nan)
    pc_min = np.full(ns.size, np.nan)
    pc_where = np.full(ns.size, None, dtype=object)
    pc_neg = np.full(ns.size, -1, dtype=np.int64)
    pc_zero = np.full(ns.size, -1, dtype=np.int64)
    pc_loss[exists] = _pc_loss(X[:, exists], kf, ns[exists], s2)
    if exists[0]:
        pc_loss[0] = ca_loss[0]
    e = exists
    pc_min[e], pc_where[e], pc_neg[e], pc_zero[e] = _spectrum_summary(
        _pc_base(kf, ns[e], X[:, e]), s2)

    import pandas as pd  # here, so that importing copyaverage does not load pandas

    table = pd.DataFrame(dict(
        n=ns.astype(int), ca_loss=ca_loss, pc_loss=pc_loss,
        ca_min_eigenvalue=ca_min, pc_min_eigenvalue=pc_min,
        ca_min_component=ca_where, pc_min_component=pc_where,
        ca_negative=ca_neg, pc_negative=pc_neg, ca_zero=ca_zero, pc_zero=pc_zero,
        pc_a=X[0], pc_alpha=X[1], pc_beta=X[2], pc_gamma=X[3]))
    table["lower"] = np.where(pc_loss < ca_loss, "perturbed copy", "CA optimum")

    # boundaries in real n
    def pc_x(n):
        x, good = _solve_on_branch(br, [n])
        return x[:, 0] if good[0] else np.full(4, np.nan)

    def loss_gap(n):
        return float(_pc_loss(pc_x(n), kf, n, s2) - _ca_loss(kf, n, s2))

    def pc_low(n, name):
        return _component_low(_pc_base(kf, n, pc_x(n)), s2, name)

    def ca_low(n, name):
        return _component_low(_ca_base(kf, n, s2), s2, name)

    big = ns >= 4  # real-n blocks are those of the generic case p >= 4, m >= 2
    gap = pc_loss - ca_loss
    table.attrs.update(
        k=k, activation=get_activation(activation).name,
        branch_end=br.end.n, branch_end_kind=br.end.kind,
        unconverged=[int(v) for v in unconverged],
        loss_crossings=_crossings(loss_gap, ns[e & big], gap[e & big]),
        pc_stability_changes=_crossings(pc_low, ns[e & big & (ns <= k - 2)],
                                        pc_min[e & big & (ns <= k - 2)],
                                        pc_where[e & big & (ns <= k - 2)]),
        ca_stability_changes=_crossings(ca_low, ns[big & (ns <= k - 1)], ca_min[big & (ns <= k - 1)],
                                        ca_where[big & (ns <= k - 1)]),
    )
    strict_pc = e & (pc_neg == 0)
    bad_pc = np.flatnonzero(~strict_pc)
    table.attrs["pc_minimum_from"] = int(ns[bad_pc[-1]] + 1) if bad_pc.size else 1
    strict_ca = ca_neg == 0
    bad_ca = np.flatnonzero(~strict_ca)
    table.attrs["ca_minimum_up_to"] = int(ns[bad_ca[0]] - 1) if bad_ca.size else k - 1
    not_lower = np.flatnonzero(~(pc_loss < ca_loss))
    table.attrs["pc_lower_from"] = int(ns[not_lower[-1]] + 1) if not_lower.size else 1
    return table
