"""The one-neuron student: closed forms for erf and ReLU, a 1-D problem for the rest.

A student with one neuron, f(x) = a sigma(w.x), learns a *unit-orthonormal*
teacher with m neurons, f*(x) = sum_j sigma(v_j.x), v_j orthonormal. The loss
depends on w only through the order parameters ``r = |w|`` and the cosines
u_j = w.v_j / r (with sum_j u_j^2 <= 1), and it is quadratic in a:

    L(a, w) = a^2 g(w, w) - 2 a sum_j g(w, v_j) + L0,   L0 = E[f*(x)^2],

so the best a for a given w is a(w) = sum_j g(w, v_j) / g(w, w) and

    L(a(w), w) = L0 - (sum_j g(w, v_j))^2 / g(w, w).                     (P)

Closed forms (derived in the book chapter "The one-neuron student").

erf(s x), with c = 2 s^2 (c = 1 for the paper's erf(x / sqrt 2))::

    a* = m,  |w*|^2 = 1 / (m (1 + c) - c),  w* = |w*| sum_j v_j / sqrt(m),
    L*(m) = (2/pi) [m arcsin(c/(1+c)) - m^2 arcsin(c/(m (1+c)))],
    L*(m) = (2/pi) [m (arcsin q - q) - q^3 / (6 m)] + O(m^-3),  q = c/(1+c).
    The non-trivial critical points (a != 0) are exactly (a*, w*) and its mirror
    image (-a*, -w*), both global minima.

ReLU (1-homogeneous: (a, w) -> (a / t, t w) leaves f unchanged, only ``a |w|`` matters)::

    w* along sum_j v_j,  a* |w*| = P(m),
    P(m) = [sqrt(m (m-1)) + sqrt(m) (pi/2 + arcsin(1/sqrt m))] / pi,
    L*(m) = m/2 + m (m-1) / (2 pi) - P(m)^2 / 2
          = (pi-1)/(2 pi^2) m^2 - m^(3/2)/(2 pi) + (3/8 - 1/(2 pi) - 1/(2 pi^2)) m
            - m^(1/2)/(4 pi) - 1/(6 pi^2) + O(m^(-1/2)).
    We return the balanced representative a* = |w*| = sqrt(P(m)), the one that
    gradient flow from a small initialization keeps (a^2 - |w|^2 is conserved).
    The other non-trivial critical ray points along -sum_j v_j with
    a |w| = [sqrt(m (m-1)) - sqrt(m) arccos(1/sqrt m)] / pi (a saddle, m >= 2).

Other activations (tanh, sigmoid, softplus, GELU): the same reduced problem (P)
restricted to the directions +-sum_j v_j, which are critical directions by
symmetry, is solved numerically in r (a scan of the derivative of (P) on a
logarithmic grid, refined by Brent's method to round-off). The tests check that
no other direction does better, by brute-force minimization of the full loss.
For some activations the loss keeps decreasing as r grows (GELU for m >= 2:
the student tends to a ReLU and no minimizer exists at finite norm); then
:func:`one_neuron_solution` raises ``ValueError`` and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import autograd.numpy as anp
import numpy as np
from autograd import grad as _grad
from scipy.integrate import quad
from scipy.optimize import brentq, minimize
from scipy.special import ndtr

from .activations import Activation, get_activation
from .critical import CriticalPoint, analyze_point
from .gaussian import pair_interaction
from .loss import unpack
from .teacher import Teacher

__all__ = [
    "OneNeuronOptimum",
    "anti_average_product_relu",
    "best_of_random_starts",
    "critical_point_label",
    "gelu_ray_loss",
    "gelu_relu_limit",
    "is_unit_orthonormal",
    "one_neuron_critical_points",
    "one_neuron_optimum",
    "one_neuron_solution",
    "optimal_loss",
    "optimal_loss_asymptote",
    "profiled_loss",
    "reduced_loss",
    "ray_profile",
    "silent_loss",
]

#: Norm range scanned for activations without a closed form.
R_MIN, R_MAX = 1e-2, 8.0


# ------------------------------------------------------------------ checks ---
def is_unit_orthonormal(teacher: Teacher, atol: float = 1e-12) -> bool:
    """True when the teacher's v_j are orthonormal and every a*_j equals 1."""
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    G = teacher.V @ teacher.V.T
    return bool(np.allclose(G, np.eye(teacher.k), rtol=0, atol=atol)
                and np.allclose(teacher.a, 1.0, rtol=0, atol=atol))


def _check_m(m) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m (number of teacher neurons) must be an integer >= 1, got {m!r}")
    return int(m)


def _c(act: Activation) -> float:
    return 2.0 * act.scale**2


# ------------------------------------------------------------ closed forms ---
def _erf_loss(m, c):
    q = c / (1.0 + c)
    return (2.0 / math.pi) * (m * math.asin(q) - m * m * math.asin(q / m))


def _relu_product(m):
    """a |w| at the ReLU optimum: (m / pi) kappa(1/sqrt m), kappa(u) = sqrt(1-u^2) + (pi - arccos u) u."""
    return (math.sqrt(m * (m - 1)) + math.sqrt(m) * (0.5 * math.pi + math.asin(1 / math.sqrt(m)))) / math.pi


def anti_average_product_relu(m: int) -> float:
    """``a |w|`` at the ReLU critical ray along -sum_j v_j: (m / pi) kappa(-1/sqrt m)."""
    m = _check_m(m)
    return (math.sqrt(m * (m - 1)) - math.sqrt(m) * math.acos(1 / math.sqrt(m))) / math.pi


def silent_loss(m: int, activation: str | Activation) -> float:
    """L0 = E[f*(x)^2] for the unit-orthonormal teacher with m neurons (loss of a = 0)."""
    m = _check_m(m)
    act = get_activation(activation)
    if act.kind == "erf":
        c = _c(act)
        return (2.0 / math.pi) * m * math.asin(c / (1.0 + c))
    if act.kind == "relu":
        return m / 2.0 + m * (m - 1) / (2.0 * math.pi)
    e = np.eye(2)
    G = np.asarray(pair_interaction(e, e, act))
    return float(m * G[0, 0] + m * (m - 1) * G[0, 1])


@dataclass(frozen=True)
class OneNeuronOptimum:
    """The optimal one-neuron student for m unit-orthonormal teacher neurons.

    It points along +sum_j v_j: w* = norm * sum_j v_j / sqrt(m).

    Attributes
    ----------
    activation : str
    m : int
    a : float
        Outgoing weight a*.
    norm : float
        ``|w*|``.
    loss : float
        L*(m).
    silent_loss : float
        E[f*^2], the loss of the zero student.
    closed_form : bool
        False when found numerically.
    """

    activation: str
    m: int
    a: float
    norm: float
    loss: float
    silent_loss: float
    closed_form: bool


@lru_cache(maxsize=512)
def _optimum_cached(m: int, act: Activation) -> OneNeuronOptimum:
    L0 = silent_loss(m, act)
    if act.kind == "erf":
        c = _c(act)
        norm = 1.0 / math.sqrt(m * (1.0 + c) - c)
        return OneNeuronOptimum(act.name, m, float(m), norm, _erf_loss(m, c), L0, True)
    if act.kind == "relu":
        P = _relu_product(m)
        return OneNeuronOptimum(act.name, m, math.sqrt(P), math.sqrt(P), L0 - 0.5 * P * P, L0, True)
    # For odd activations the ray along -sum v_j is the mirror image: use the + ray.
    crit = [p for p in _ray_critical(m, act)
            if p["kind"] == "max" and (p["sign"] > 0 or not act.odd)]
    best = max(crit, key=lambda p: p["profile"], default=None)
    edges = [e for e in _ray_edges(m, act) if e["sign"] > 0 or not act.odd]
    top = max(edges, key=lambda e: e["profile"])
    if best is None or top["profile"] > best["profile"]:
        where = "grows" if top["r"] >= R_MAX else "shrinks"
        raise ValueError(
            f"no optimal one-neuron {act.name} student at finite norm for m = {m}: along "
            f"the direction {'+' if top['sign'] > 0 else '-'}sum_j v_j the loss keeps "
            f"decreasing as |w| {where} to the edge of the scanned range "
            f"[{R_MIN:g}, {R_MAX:g}] (loss there {L0 - top['profile']:.6g})"
        )
    if best["sign"] < 0:
        raise ValueError(  # never seen; the tests would tell
            f"the best one-neuron {act.name} student points along -sum_j v_j")
    return OneNeuronOptimum(act.name, m, best["a"], best["r"], L0 - best["profile"], L0, False)


def one_neuron_optimum(m: int, activation: str | Activation) -> OneNeuronOptimum:
    """a*, ``|w*|`` and L*(m) for m unit-orthonormal teacher neurons (see module docstring).

    Parameters
    ----------
    m : int, m >= 1
    activation : str or Activation

    Returns
    -------
    OneNeuronOptimum

    Raises
    ------
    ValueError
        For a bad m, or when no minimizer exists at finite norm (GELU, m >= 2).
    """
    return _optimum_cached(_check_m(m), get_activation(activation))


def optimal_loss(m, activation: str | Activation):
    """L*(m), the optimal one-neuron loss, elementwise.

    For erf and ReLU the closed form also accepts real m >= 1 (array_like);
    for other activations m must be integers.

    Returns
    -------
    float or ndarray, the shape of m
    """
    act = get_activation(activation)
    mm = np.asarray(m, dtype=float)
    if np.any(~np.isfinite(mm)) or np.any(mm < 1):
        raise ValueError(f"m must be >= 1, got {m!r}")
    if act.kind == "erf":
        c = _c(act)
        q = c / (1.0 + c)
        out = (2.0 / math.pi) * (mm * math.asin(q) - mm**2 * np.arcsin(q / mm))
    elif act.kind == "relu":
        P = (np.sqrt(mm * (mm - 1)) + np.sqrt(mm) * (0.5 * math.pi + np.arcsin(1 / np.sqrt(mm)))) / math.pi
        out = mm / 2 + mm * (mm - 1) / (2 * math.pi) - 0.5 * P**2
    else:
        if np.any(mm != np.round(mm)):
            raise ValueError(f"m must be integers for {act.name}, got {m!r}")
        out = np.vectorize(lambda x: one_neuron_optimum(int(x), act).loss, otypes=[float])(mm)
    return float(out) if np.ndim(out) == 0 else out


def optimal_loss_asymptote(m, activation: str | Activation):
    """The large-m expansion of L*(m) (erf: error O(m^-3); ReLU: error O(m^-1/2)).

    Formulas::

        erf:  (2/pi) [m (arcsin q - q) - q^3 / (6 m)],  q = c / (1 + c)
        ReLU: (pi-1)/(2 pi^2) m^2 - m^1.5/(2 pi) + (3/8 - 1/(2 pi) - 1/(2 pi^2)) m
              - sqrt(m)/(4 pi) - 1/(6 pi^2)
    """
    act = get_activation(activation)
    mm = np.asarray(m, dtype=float)
    if np.any(mm <= 0):
        raise ValueError(f"m must be positive, got {m!r}")
    if act.kind == "erf":
        q = _c(act) / (1.0 + _c(act))
        out = (2.0 / math.pi) * (mm * (math.asin(q) - q) - q**3 / (6.0 * mm))
    elif act.kind == "relu":
        pi = math.pi
        out = ((pi - 1) / (2 * pi**2) * mm**2 - mm**1.5 / (2 * pi)
               + (3 / 8 - 1 / (2 * pi) - 1 / (2 * pi**2)) * mm
               - np.sqrt(mm) / (4 * pi) - 1 / (6 * pi**2))
    else:
        raise ValueError(f"no asymptotic formula for {act.name}; only erf and relu")
    return float(out) if np.ndim(out) == 0 else out


# --------------------------------------------------- the reduced problem ---
def _pair(r1, r2, cos, act):
    """g between a vector of norm r1 and one of norm r2 at cosine cos (autograd-friendly)."""
    w = r1 * np.array([[1.0, 0.0]])
    v = r2 * anp.reshape(anp.array([cos, anp.sqrt(anp.maximum(1.0 - cos * cos, 0.0))]), (1, 2))
    return pair_interaction(w, v, act)[0, 0]


def reduced_loss(norm: float, cosines, activation: str | Activation, a: float | None = None) -> float:
    """The one-neuron loss in order parameters, for the unit-orthonormal teacher.

    Parameters
    ----------
    norm : float
        ``r = |w| > 0``.
    cosines : array_like, shape (m,)
        ``u_j = w.v_j / |w|``, with sum_j u_j^2 <= 1 (the rest of w lies outside
        the teacher's span).
    activation : str or Activation
    a : float, optional
        Outgoing weight; by default the optimal one, a(w) = sum_j g(w, v_j) / g(w, w).

    Returns
    -------
    float
    """
    act = get_activation(activation)
    u = np.asarray(cosines, dtype=float)
    if u.ndim != 1 or u.size < 1:
        raise ValueError(f"cosines must have shape (m,), got {u.shape}")
    s = float(u @ u)
    if s > 1 + 1e-12:
        raise ValueError(f"the cosines must satisfy sum u_j^2 <= 1, got {s:.6g}")
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(f"norm must be positive, got {norm!r}")
    m = u.size
    # w in coordinates (v_1, ..., v_m, e_perp)
    w = norm * np.concatenate([u, [math.sqrt(max(0.0, 1.0 - s))]])[None, :]
    V = np.eye(m, m + 1)
    gww = float(pair_interaction(w, w, act)[0, 0])
    B = float(np.sum(pair_interaction(w, V, act)))
    L0 = silent_loss(m, act)
    if a is None:
        return L0 - B * B / gww
    return float(a * a * gww - 2 * a * B + L0)


def profiled_loss(W, teacher: Teacher, activation: str | Activation, chunk: int = 256) -> np.ndarray:
    """The one-neuron loss with the best outgoing weight, for many incoming vectors at once.

    L0 - (sum_j a*_j g(w, v_j))^2 / g(w, w) for each row w of W (any teacher).

    Parameters
    ----------
    W : array_like, shape (N, d)
        Non-zero rows.
    teacher : Teacher
    activation : str or Activation
    chunk : int
        Rows per block (the self-interactions are the diagonal of a block).

    Returns
    -------
    ndarray, shape (N,)
    """
    act = get_activation(activation)
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[1] != teacher.d:
        raise ValueError(f"W must have shape (N, {teacher.d}), got {W.shape}")
    if np.any(np.linalg.norm(W, axis=1) == 0):
        raise ValueError("every row of W must be non-zero")
    L0 = float(teacher.a @ np.asarray(pair_interaction(teacher.V, teacher.V, act)) @ teacher.a)
    out = np.empty(W.shape[0])
    for lo in range(0, W.shape[0], chunk):
        B = W[lo:lo + chunk]
        gww = np.diag(np.asarray(pair_interaction(B, B, act)))
        cross = np.asarray(pair_interaction(B, teacher.V, act)) @ teacher.a
        out[lo:lo + chunk] = L0 - cross**2 / gww
    return out


def _profile_fn(m, sign, act):
    """Profile P(log r) = (m g(r, 1, sign/sqrt m))^2 / g(r, r, 1) along +-sum v_j."""
    cos = sign / math.sqrt(m)

    def prof(logr):
        r = anp.exp(logr)
        B = m * _pair(r, 1.0, cos, act)
        return B * B / _pair(r, r, 1.0, act)

    return prof


def ray_profile(m: int, activation: str | Activation, norms, sign: int = 1) -> np.ndarray:
    """The loss (P) with optimal a along w = r sign sum_j v_j / sqrt(m), for each r in norms.

    Returns
    -------
    ndarray, the shape of norms
    """
    m = _check_m(m)
    act = get_activation(activation)
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    r = np.asarray(norms, dtype=float)
    if np.any(~(r > 0)):
        raise ValueError("norms must be positive")
    prof = _profile_fn(m, sign, act)
    L0 = silent_loss(m, act)
    return np.vectorize(lambda x: L0 - float(prof(math.log(x))), otypes=[float])(r)


@lru_cache(maxsize=256)
def _ray_critical(m: int, act: Activation) -> tuple:
    """Interior critical points of the profile along +-sum v_j on [R_MIN, R_MAX].

    The profile is tabulated on a logarithmic grid of 61 norms; every interior
    local extremum of the table is refined by Brent's method on the exact
    (autograd) derivative. Points with a = 0 (trivial) are left out.
    """
    out = []
    grid = np.linspace(math.log(R_MIN), math.log(R_MAX), 61)
    for sign in (1, -1):
        prof = _profile_fn(m, sign, act)
        dprof = _grad(prof)
        v = np.array([float(prof(x)) for x in grid])
        for i in range(1, len(grid) - 1):
            is_max = v[i] > v[i - 1] and v[i] >= v[i + 1]
            is_min = v[i] < v[i - 1] and v[i] <= v[i + 1]
            if not (is_max or is_min):
                continue
            lo, hi = grid[i - 1], grid[i + 1]
            d_lo, d_hi = float(dprof(lo)), float(dprof(hi))
            if np.sign(d_lo) == np.sign(d_hi):  # flat to round-off: take the grid point
                x = grid[i]
            else:
                x = brentq(lambda t: float(dprof(t)), lo, hi, xtol=1e-15, rtol=1e-15)
            r = math.exp(x)
            cos = sign / math.sqrt(m)
            gwv = float(_pair(r, 1.0, cos, act))
            gww = float(_pair(r, r, 1.0, act))
            a = m * gwv / gww
            if abs(a) < 1e-8:  # a = 0: a trivial critical point
                continue
            out.append(dict(sign=sign, r=r, a=a, profile=float(prof(x)),
                            kind="max" if is_max else "min"))
    return tuple(out)


@lru_cache(maxsize=256)
def _ray_edges(m: int, act: Activation) -> tuple:
    """The profile at the two ends of the scanned range, on both rays."""
    out = []
    for sign in (1, -1):
        prof = _profile_fn(m, sign, act)
        for r in (R_MIN, R_MAX):
            out.append(dict(sign=sign, r=r, profile=float(prof(math.log(r)))))
    return tuple(out)


# ----------------------------------------------------------- the student ---
def best_of_random_starts(teacher: Teacher, activation: str | Activation, starts: int = 20,
                          seed: int = 0):
    """The best of ``starts`` L-BFGS minimizations of the full one-neuron loss.

    A numerical answer without guarantee, for any teacher: the independent check of the
    closed form (the book compares the two) and the solution for teachers the closed
    form does not cover. Starts: a ~ N(0, 1), w ~ N(0, I_d / d), drawn with ``seed``;
    derivatives in closed form for erf and ReLU.

    Returns
    -------
    scipy.optimize.OptimizeResult
        The run of lowest loss (``fun``), its parameters ``x`` = (a, w).
    """
    from .derivatives import Objective

    if isinstance(starts, bool) or not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ValueError(f"starts must be an integer >= 1, got {starts!r}")
    act = get_activation(activation)
    d = teacher.d
    rng = np.random.default_rng(seed)
    obj = Objective(teacher, act, 1)
    best = None
    for _ in range(starts):
        th0 = np.concatenate([rng.normal(size=1), rng.normal(size=d) / math.sqrt(d)])
        res = minimize(obj.loss_and_gradient, th0, jac=True, method="L-BFGS-B",
                       options=dict(maxiter=2000, gtol=1e-12, ftol=1e-15))
        if best is None or res.fun < best.fun:
            best = res
    return best


def one_neuron_solution(teacher: Teacher, activation: str | Activation):
    """The optimal one-neuron student for a teacher.

    For a unit-orthonormal teacher (orthonormal v_j, all a*_j = 1, in any
    orientation) the closed form (erf, ReLU) or the numerical solution of the
    reduced problem (other activations) is used: ``w* = |w*| sum_j v_j / sqrt(m)``.
    For any other teacher: the best of 20 L-BFGS runs on the full loss from
    random starts (seed 0), a numerical answer without guarantee.

    Parameters
    ----------
    teacher : Teacher
        With m = teacher.k neurons in d = teacher.d dimensions.
    activation : str or Activation

    Returns
    -------
    a : ndarray, shape (1,)
    W : ndarray, shape (1, d)

    Raises
    ------
    ValueError
        When the optimum is not attained at finite norm (see module docstring).
    """
    act = get_activation(activation)
    if not is_unit_orthonormal(teacher):
        a, W = unpack(best_of_random_starts(teacher, act).x, 1, teacher.d)
        return a.copy(), W.copy()
    opt = one_neuron_optimum(teacher.k, act)
    direction = teacher.V.sum(axis=0) / math.sqrt(teacher.k)
    return np.array([opt.a]), (opt.norm * direction)[None, :]


def one_neuron_critical_points(teacher: Teacher, activation: str | Activation) -> list[CriticalPoint]:
    """The non-trivial (a != 0) critical points of the one-neuron loss.

    For a unit-orthonormal teacher only. For erf and ReLU the list is complete
    (proved in the book): erf gives the optimum and its mirror image; ReLU gives
    one representative (balanced, ``a = |w|``) of each critical ray, the optimum
    along +sum_j v_j and, for m >= 2, a saddle along -sum_j v_j. For the other
    activations the list holds the critical points on the two symmetric rays
    +-sum_j v_j with ``|w|`` in [R_MIN, R_MAX]; critical points off these rays are
    not searched for.

    Returns
    -------
    list of CriticalPoint
        Sorted by loss. Each record carries a, W, loss, gradient norm and
        Hessian eigenvalue counts.
    """
    act = get_activation(activation)
    if not is_unit_orthonormal(teacher):
        raise ValueError("one_neuron_critical_points needs a unit-orthonormal teacher "
                         "(orthonormal v_j, every a*_j = 1)")
    m = teacher.k
    e = teacher.V.sum(axis=0) / math.sqrt(m)
    pts = []
    if act.kind == "erf":
        opt = one_neuron_optimum(m, act)
        pts.append(("average (global minimum)", opt.a, opt.norm * e))
        pts.append(("mirror image of the average (global minimum)", -opt.a, -opt.norm * e))
    elif act.kind == "relu":
        P = _relu_product(m)
        pts.append(("average (global minimum, a ray)", math.sqrt(P), math.sqrt(P) * e))
        if m >= 2:
            Q = anti_average_product_relu(m)
            pts.append(("anti-average (a ray)", math.sqrt(Q), -math.sqrt(Q) * e))
    else:
        for p in _ray_critical(m, act):
            name = ("average" if p["sign"] > 0 else
                    "mirror image of the average" if act.odd else "anti-average")
            pts.append((f"{name} ({'local max' if p['kind'] == 'max' else 'local min'} of the ray profile)",
                        p["a"], p["sign"] * p["r"] * e))
    out = [analyze_point(np.array([a]), w[None, :], teacher, act, label) for label, a, w in pts]
    return sorted(out, key=lambda p: p.loss)



def critical_point_label(a, W, points, activation: str | Activation, atol: float = 1e-7):
    """The label of the listed one-neuron critical point that (a, W) is, if any.

    ``points`` are records with ``a``, ``W`` and ``label`` (as returned by
    :func:`one_neuron_critical_points`). For ReLU, whose loss does not change under
    (a, w) -> (a / c, c w) for c > 0, a point is the same as a listed one when the
    directions of w and the products ``a |w|`` agree to ``atol``; for the other
    activations when a and w agree to ``atol``. A point with ``|a| < 1e-6`` that matches
    none is ``"trivial (a = 0)"``; any other unmatched point gives None.
    """
    act = get_activation(activation)
    a, W = np.asarray(a, dtype=float).ravel(), np.asarray(W, dtype=float)
    if a.shape != (1,) or W.ndim != 2 or W.shape[0] != 1:
        raise ValueError(f"critical_point_label takes a one-neuron student (a of shape "
                         f"(1,), W of shape (1, d)), got {a.shape} and {W.shape}")
    a, w = a[0], W[0]
    r = np.linalg.norm(w)
    for p in points:
        pa, pw = p.a[0], p.W[0]
        if act.kind == "relu" and r > 0:
            pr = np.linalg.norm(pw)
            same = (np.allclose(w / r, pw / pr, atol=atol)
                    and abs(a * r - pa * pr) < atol)
        else:
            same = abs(a - pa) < atol and np.allclose(w, pw, atol=atol)
        if same:
            return p.label
    return "trivial (a = 0)" if abs(a) < 1e-6 else None


# ------------------------------------------------- GELU at large norms ---
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _phi(x):
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _gelu(x):
    return x * ndtr(x)


def _smoothed_gelu(mu, s):
    """E[gelu(mu + s xi)], xi ~ N(0, 1): mu Phi(mu / t) + s^2 phi(mu / t) / t, t = sqrt(1 + s^2)."""
    t = math.sqrt(1.0 + s * s)
    return mu * ndtr(mu / t) + s * s * _phi(mu / t) / t


def _smoothed_relu(mu, s):
    """E[relu(mu + s xi)] = mu Phi(mu / s) + s phi(mu / s)."""
    return mu * ndtr(mu / s) + s * _phi(mu / s)


def _quad(f, r=1.0):
    """Integral of f(z) phi(z) over the line, split at the kink scale 1 / r."""
    pts = sorted({0.0, -1.0 / r, 1.0 / r})
    edges = [-12.0] + pts + [12.0]
    return sum(quad(lambda z: f(z) * _phi(z), lo, hi, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
               for lo, hi in zip(edges[:-1], edges[1:]))


def gelu_ray_loss(m: int, norm: float) -> float:
    """The GELU one-neuron loss with optimal a along w = norm * sum_j v_j / sqrt(m).

    An independent route to :func:`ray_profile` for GELU, by one-dimensional
    adaptive quadrature (``scipy.integrate.quad``) after integrating out the
    second Gaussian direction in closed form. It stays accurate for norms far
    beyond the range of the two-dimensional trapezoid rule.
    """
    m = _check_m(m)
    r = float(norm)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"norm must be positive, got {norm!r}")
    u = 1.0 / math.sqrt(m)
    s = math.sqrt(1.0 - u * u)
    gww = _quad(lambda z: _gelu(r * z) ** 2, r)
    # g(w, v_j): z = v_j.x, w.x = r (u z + s xi)
    gwv = _quad(lambda z: _gelu(z) * _smoothed_gelu(r * u * z, r * s), r)
    L0 = _quad(lambda z: _gelu(z) ** 2) * m + m * (m - 1) * _quad(_gelu) ** 2
    return L0 - (m * gwv) ** 2 / gww


def gelu_relu_limit(m: int) -> float:
    """The limit of :func:`gelu_ray_loss` as norm -> infinity.

    With ``a |w|`` held fixed, ``a gelu(w.x)`` tends to ``a |w| relu(w.x / |w|)``, so the
    limit is the loss of the best ReLU neuron along sum_j v_j against the GELU
    teacher: L0 - (m E[relu(z1) gelu(z2)])^2 / E[relu(z)^2], cos(z1, z2) = 1/sqrt(m).
    """
    m = _check_m(m)
    u = 1.0 / math.sqrt(m)
    s = math.sqrt(1.0 - u * u)
    L0 = _quad(lambda z: _gelu(z) ** 2) * m + m * (m - 1) * _quad(_gelu) ** 2
    if m == 1:
        cross = _quad(lambda z: _gelu(z) * max(z, 0.0))
    else:
        cross = _quad(lambda z: _gelu(z) * _smoothed_relu(u * z, s))
    return L0 - (m * cross) ** 2 / 0.5
