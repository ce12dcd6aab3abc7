"""The width transition as the teacher grows: boundaries at large k and their k -> infinity limits.

Erf family, unit-orthonormal teacher (as :mod:`copyaverage.exact_transition`).
Three boundaries in the student width n, for teacher width k:

``loss crossing``
    where the perturbed copy and the CA optimum have equal loss. Its limit at
    fixed nu = n / k (:func:`loss_crossing_limit`) comes from the expansions

        L_CA = (k - n + 1) D + O(1 / k),
        L_PC = (k - n) D + (k - n) / n * V + o(1),

    with D = E[sigma(z)^2] - E[sigma'(z)]^2 (the part of one teacher neuron that
    no linear function of its input captures) and V = Var sigma'(z), z ~ N(0, 1).
    The CA optimum copies n - 1 teacher neurons and its averaging neuron, nearly
    linear for large groups, captures only the linear part of the others. The
    perturbed copy copies n and shares the linear part of the k - n others among
    all n students (gamma -> 1 / n); each student's input then carries a small
    extra term gamma sum_{j > n} x_j, and the n responses sigma'(x_i) to it
    fluctuate around their mean, which costs (k - n) / n Var sigma'. So
    L_PC - L_CA -> (1 - nu) / nu V - D, zero at nu* = V / (V + D). For
    erf(x / sqrt 2): D = 1/3 - 1/pi, V = (2 / sqrt 3 - 1) / pi and
    nu* = (2/sqrt 3 - 1) / (2/sqrt 3 + pi/3 - 2) = 0.76623...
    This is a leading-order derivation, not a proof; the book checks it
    against the exact transition up to k = 10^4.

``CA saddle onset``
    the smallest n from which the CA optimum has a negative Hessian eigenvalue
    (in the std_m component: the averaging neuron tilting within its group of
    m = k - n + 1 teacher neurons while all p = n - 1 copies shift together).
    :func:`ca_saddle_onset` finds it for any k by bisection on that 2 x 2 block
    (cost independent of k). For erf(x / sqrt 2) the block is singular exactly
    where (:func:`ca_saddle_equation`)

        p (1 / F(m) - 1) = pi V = 2 / sqrt(3) - 1,
        F(m) = (1 - x) / (1 - x / 2)^(3/2),  x = 1 / (2 m^2),

    and indefinite (a saddle) for smaller m; the book derives it. Since
    1 / F - 1 = 1 / (8 m^2) + O(m^-4), the onset is at m* = c sqrt(k) (1 + O(1 / sqrt k))
    with c = 1 / sqrt(8 (2 / sqrt 3 - 1)) = 0.89890. For other erf scales the
    numbers agree with c = abs(E sigma'''(z)) / sqrt(2 Var sigma'(z))
    (:func:`ca_saddle_constant`; a conjecture there, checked to 2e-4 at k = 10^8).

``perturbed-copy minimum onset``
    the smallest n from which the perturbed copy has no negative Hessian
    eigenvalue. :func:`pc_minimum_onset` finds it on the branch of
    :func:`copyaverage.exact_transition.perturbed_copy_branch`; n / k -> 0, and
    n / sqrt(k) still grows slowly at k = 10^6 (no limit law is claimed).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from .activations import Activation
from .exact_transition import (
    _branch,
    _ca_base,
    _component_low,
    _erf_s2,
    _pc_base,
    _single_spectrum,
    _solve_on_branch,
)

__all__ = [
    "ca_saddle_constant",
    "ca_saddle_equation",
    "ca_saddle_onset",
    "ca_saddle_onset_closed_form",
    "gaussian_moments",
    "loss_crossing_limit",
    "loss_gap_limit",
    "pc_minimum_onset",
]


def gaussian_moments(activation: str | Activation = "erf") -> dict:
    """Gaussian moments of an erf activation that the k -> infinity limits use.

    Returns
    -------
    dict
        ``power`` E[sigma(z)^2], ``slope`` E[sigma'(z)], ``V`` Var sigma'(z),
        ``D`` E[sigma(z)^2] - E[sigma'(z)]^2 (the nonlinear part of one teacher
        neuron), ``third`` E[sigma'''(z)], z ~ N(0, 1), all in closed form for
        sigma(x) = erf(s x) (s2 = 2 s^2; ``"erf"`` is s2 = 1).
    """
    s2 = _erf_s2(activation)
    scale2 = s2 / 2.0
    power = 2.0 / math.pi * math.asin(s2 / (1.0 + s2))
    slope = math.sqrt(2.0 * s2 / (math.pi * (1.0 + s2)))
    slope_sq = 2.0 * s2 / math.pi / math.sqrt(1.0 + 2.0 * s2)
    third = (2.0 * math.sqrt(scale2 / math.pi)
             * (4.0 * scale2**2 * (1.0 + s2) ** -1.5 - 2.0 * scale2 * (1.0 + s2) ** -0.5))
    return dict(power=power, slope=slope, V=slope_sq - slope**2, D=power - slope**2, third=third)


def loss_gap_limit(nu, activation: str | Activation = "erf"):
    """lim_{k -> inf} (L_PC - L_CA) at n = nu k: (1 - nu) / nu V - D (module docstring)."""
    nu = np.asarray(nu, dtype=float)
    if np.any(~np.isfinite(nu)) or np.any((nu <= 0) | (nu > 1)):
        raise ValueError(f"nu = n / k must lie in (0, 1], got {nu}")
    g = gaussian_moments(activation)
    return (1.0 - nu) / nu * g["V"] - g["D"]


def loss_crossing_limit(activation: str | Activation = "erf") -> float:
    """lim_{k -> inf} n / k at the loss crossing: V / (V + D) (0.76623 for ``"erf"``)."""
    g = gaussian_moments(activation)
    return g["V"] / (g["V"] + g["D"])


def ca_saddle_constant(activation: str | Activation = "erf") -> float:
    """The conjectured lim m* / sqrt(k): ``|E sigma'''| / sqrt(2 Var sigma')``
    (module docstring)."""
    g = gaussian_moments(activation)
    return abs(g["third"]) / math.sqrt(2.0 * g["V"])


def ca_saddle_equation(m, p):
    """p (1 / F(m) - 1) - (2 / sqrt 3 - 1), for erf(x / sqrt 2).

    Zero where the CA optimum's std_m block is singular, positive where the CA
    optimum is a saddle (module docstring; derived in the book's
    exact-transition chapter).

    Parameters
    ----------
    m : float or array, >= 2
        Size of the averaged group, k - n + 1.
    p : float or array, >= 1
        Number of copies, n - 1.
    """
    m, p = np.asarray(m, dtype=float), np.asarray(p, dtype=float)
    if np.any(~np.isfinite(m)) or np.any(m < 2) or np.any(~np.isfinite(p)) or np.any(p < 1):
        raise ValueError(f"need real m >= 2 and p >= 1, got m = {m}, p = {p}")
    x = 0.5 / (m * m)
    inv_f_minus_1 = np.expm1(1.5 * np.log1p(-0.5 * x) - np.log1p(-x))  # 1 / F - 1, accurately
    return p * inv_f_minus_1 - (2.0 / math.sqrt(3.0) - 1.0)


def ca_saddle_onset_closed_form(k) -> float:
    """Real n at which the CA optimum becomes a saddle, from :func:`ca_saddle_equation`
    (erf(x / sqrt 2) only), for real k >= 20: the root in m of
    ``ca_saddle_equation(m, k - m)``, returned as n = k - m + 1.

    More accurate than :func:`ca_saddle_onset` for very large k (no block to round).
    """
    k = _check_k(k, 20)
    top = min(5.0 * math.sqrt(k) + 5.0, k - 1.0)
    m = brentq(lambda m: float(ca_saddle_equation(m, k - m)), 2.0, top, xtol=1e-12)
    return k - m + 1.0


def _check_k(k, smallest):
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) \
            or not math.isfinite(k) or k < smallest or k > 1e12:
        raise ValueError(f"k must be a real number in [{smallest}, 1e12], got {k!r}")
    return float(k)


def ca_saddle_onset(k, activation: str | Activation = "erf") -> float:
    """Real n at which the CA optimum stops being a minimum, for any k >= 20.

    The root of the smallest eigenvalue of its std_m block (the component that
    turns negative first; see :func:`copyaverage.exact_transition.transition`,
    whose ``ca_stability_changes`` agree for k <= 10^4), bracketed between
    n = k - 5 sqrt(k) - 5 (a minimum) and n = k - 1 (a saddle, m = 2) and
    solved by Brent's method to 1e-9 relative. Cost independent of k.

    Raises
    ------
    ValueError
        If k < 20 or the bracket does not hold (then the onset is not of this kind).
    """
    s2 = _erf_s2(activation)
    k = _check_k(k, 20)

    def low(n):
        return _component_low(_ca_base(k, n, s2), s2, "std_m")

    lo, hi = max(4.0, k - 5.0 * math.sqrt(k) - 5.0), k - 1.0
    f_lo, f_hi = low(lo), low(hi)
    if not (f_lo > 0 > f_hi):
        raise ValueError(f"at k = {k:g} the std_m block of the CA optimum does not change sign "
                         f"between n = {lo:g} ({f_lo:.3g}) and n = {hi:g} ({f_hi:.3g})")
    return float(brentq(low, lo, hi, xtol=1e-9))


def pc_minimum_onset(k: int, activation: str | Activation = "erf", samples: int = 40) -> float:
    """Real n above which the perturbed copy is a minimum (its smallest Hessian
    eigenvalue changes sign there), for integer k >= 50.

    Follows the branch of perturbed copies (cost grows with k: ~6 s at k = 10^5,
    ~30 s at 10^6), evaluates the smallest block eigenvalue at ``samples``
    log-spaced n between 2 sqrt(k) and k / 2, and refines the last sign change
    (from negative to positive) by Brent's method.

    Raises
    ------
    ValueError
        If no sign change lies in that range, or Newton's method fails on the branch.
    """
    s2 = _erf_s2(activation)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 50 <= k <= 10**7:
        raise ValueError(f"k must be an integer in [50, 10^7], got {k!r}")
    k = int(k)
    br = _branch(k, s2)

    def low(n):
        x, ok = _solve_on_branch(br, [n])
        if not ok[0]:
            raise ValueError(f"Newton's method failed on the branch at k = {k}, n = {n:g}")
        return _single_spectrum(_pc_base(float(k), n, x[:, 0]), s2).smallest

    grid = np.geomspace(max(2.0 * math.sqrt(k), br.end.n + 1.0, 4.0), k / 2.0, samples)
    vals = np.array([low(n) for n in grid])
    change = np.flatnonzero((vals[:-1] < 0) & (vals[1:] >= 0))
    if change.size == 0:
        raise ValueError(f"at k = {k} the perturbed copy's smallest eigenvalue does not turn "
                         f"positive between n = {grid[0]:g} and {grid[-1]:g}")
    i = change[-1]
    return float(brentq(low, grid[i], grid[i + 1], xtol=1e-9 * k))
