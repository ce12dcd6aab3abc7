"""Critical points of the population loss: Hessian signatures and a Newton search.

A critical point (a, W) of the loss L has zero gradient; its type is read off the
eigenvalues of the Hessian there. :func:`hessian_signature` counts negative, zero
and positive eigenvalues with a relative tolerance, :func:`analyze_point` bundles
loss, gradient norm and signature into a :class:`CriticalPoint` record, and
:func:`newton_critical_point` looks for the critical point nearest to a given
start by Newton's method on the gradient (critical points of any type, not only
minima).

For erf and ReLU the derivatives come from the hand-derived closed forms of
:mod:`copyaverage.derivatives` (fast); for the other activations from autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, get_activation
from .loss import check_student, gradient, hessian, pack, population_loss, unpack
from .newton import find_critical
from .teacher import Teacher

__all__ = [
    "CriticalPoint",
    "NewtonResult",
    "analyze_point",
    "eigenvalue_signature",
    "hessian_of",
    "hessian_signature",
    "newton_critical_point",
    "search_critical_points",
    "signature_kind",
    "smallest_cosine",
    "trust_region_minimum",
]

#: Default relative tolerance below which a Hessian eigenvalue counts as zero.
ZERO_RTOL = 1e-8


def hessian_of(a, W, teacher: Teacher, activation: str | Activation) -> np.ndarray:
    """The Hessian of the loss at (a, W): closed form for erf and ReLU, else autograd.

    Returns
    -------
    ndarray, shape (n (1 + d), n (1 + d))
    """
    act = get_activation(activation)
    if act.kind in ("erf", "relu"):
        from .derivatives import closed_form_hessian

        return closed_form_hessian(a, W, teacher, act)
    return hessian(a, W, teacher, act)


def hessian_signature(H, rtol: float = ZERO_RTOL) -> tuple[int, int, int]:
    """Numbers of negative, zero and positive eigenvalues of a symmetric matrix.

    An eigenvalue lam counts as zero when ``|lam| <= rtol * max(1, max |eigenvalue|)``.

    Parameters
    ----------
    H : array_like, shape (p, p)
    rtol : float

    Returns
    -------
    (n_negative, n_zero, n_positive) : tuple of int
    """
    H = np.asarray(H, dtype=float)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a square matrix, got shape {H.shape}")
    return eigenvalue_signature(np.linalg.eigvalsh(0.5 * (H + H.T)), rtol)


def eigenvalue_signature(eigenvalues, rtol: float = ZERO_RTOL) -> tuple[int, int, int]:
    """:func:`hessian_signature` from precomputed eigenvalues."""
    ev = np.asarray(eigenvalues, dtype=float)
    tol = rtol * max(1.0, float(np.max(np.abs(ev))))
    return int(np.sum(ev < -tol)), int(np.sum(np.abs(ev) <= tol)), int(np.sum(ev > tol))


def signature_kind(n_negative: int, n_zero: int, n_positive: int) -> str:
    """A word for a Hessian signature at a critical point.

    ``"minimum"`` (all eigenvalues positive), ``"saddle"`` (both signs),
    ``"maximum"`` (all negative); with zero eigenvalues and no negative one the
    Hessian cannot tell a minimum from a degenerate saddle, which is
    ``"degenerate (no negative curvature)"``.
    """
    if n_negative == 0:
        return "minimum" if n_zero == 0 else "degenerate (no negative curvature)"
    if n_positive == 0 and n_zero == 0:
        return "maximum"
    return "saddle"


@dataclass(frozen=True)
class CriticalPoint:
    """A point of the loss landscape with its loss, gradient norm and Hessian type.

    Attributes
    ----------
    label : str
        What the point is, in words (e.g. ``"average"``).
    a : ndarray, shape (n,)
    W : ndarray, shape (n, d)
    loss : float
    grad_norm : float
        Euclidean norm of the gradient with respect to pack(a, W).
    n_negative, n_zero, n_positive : int or None
        Hessian eigenvalue counts (see :func:`hessian_signature`); None when the
        point was analyzed with ``signature=False``.
    kind : str
        :func:`signature_kind` of the counts (``"not computed"`` without them).
    eigenvalues : ndarray
        All Hessian eigenvalues, ascending (empty without the signature).
    """

    label: str
    a: np.ndarray
    W: np.ndarray
    loss: float
    grad_norm: float
    n_negative: int | None
    n_zero: int | None
    n_positive: int | None
    kind: str
    eigenvalues: np.ndarray = field(repr=False)


def analyze_point(a, W, teacher: Teacher, activation: str | Activation, label: str = "",
                  rtol: float = ZERO_RTOL, signature: bool = True) -> CriticalPoint:
    """Loss, gradient norm and Hessian signature of the student (a, W).

    Parameters
    ----------
    a : array_like, shape (n,)
    W : array_like, shape (n, d)
    teacher : Teacher
    activation : str or Activation
    label : str
    rtol : float
        Zero tolerance of :func:`hessian_signature`.
    signature : bool
        False skips the Hessian and its eigenvalues (the counts are then None): at
        k = 50 the eigen-decomposition takes seconds and is most of the cost.

    Returns
    -------
    CriticalPoint
        (Whether it *is* critical is for the caller to judge from ``grad_norm``.)
    """
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    loss = population_loss(a, W, teacher, act)
    grad_norm = float(np.linalg.norm(gradient(a, W, teacher, act)))
    if not signature:
        return CriticalPoint(label=label, a=a.copy(), W=W.copy(), loss=loss,
                             grad_norm=grad_norm, n_negative=None, n_zero=None,
                             n_positive=None, kind="not computed", eigenvalues=np.empty(0))
    H = hessian_of(a, W, teacher, act)
    ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    neg, zero, pos = eigenvalue_signature(ev, rtol)
    return CriticalPoint(
        label=label, a=a.copy(), W=W.copy(), loss=loss, grad_norm=grad_norm,
        n_negative=neg, n_zero=zero, n_positive=pos,
        kind=signature_kind(neg, zero, pos), eigenvalues=ev,
    )


@dataclass(frozen=True)
class NewtonResult:
    """Outcome of :func:`newton_critical_point`.

    Attributes
    ----------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, d)
        The last iterate.
    converged : bool
        True when the gradient norm fell to ``tol``.
    iterations : int
    grad_norms : ndarray
        Gradient norm at the start and after every iteration.
    distance : float
        ``|pack(a, W) - pack(a0, W0)|``, Euclidean distance from the start.
    """

    a: np.ndarray
    W: np.ndarray
    converged: bool
    iterations: int
    grad_norms: np.ndarray
    distance: float


def newton_critical_point(a0, W0, teacher: Teacher, activation: str | Activation, *,
                          tol: float = 1e-12, max_iter: int = 100,
                          rcond: float = 1e-12, max_step: float | None = None) -> NewtonResult:
    """Newton's method on the gradient, for the critical point nearest a start.

    Each step solves H p = -g in the least-squares sense (minimum-norm step,
    which copes with the flat directions of symmetric or homogeneous losses) and
    halves the step until the gradient norm decreases
    (:func:`copyaverage.newton.find_critical`, the iteration the flow uses
    too). This finds critical
    points of any type, saddles included, as opposed to a minimizer, which
    would slide away from a saddle.

    Parameters
    ----------
    a0 : array_like, shape (n,)
    W0 : array_like, shape (n, d)
    teacher : Teacher
    activation : str or Activation
    tol : float
        Stop when the gradient norm is at most tol.
    max_iter : int
    rcond : float
        Relative cut-off for small eigenvalues of the Hessian (relative to the
        largest in absolute value).
    max_step : float, optional
        Longest step allowed (Euclidean norm); longer Newton steps are shortened
        to this length, which keeps the search local. Default: no limit.

    Returns
    -------
    NewtonResult
    """
    from .derivatives import Objective

    act = get_activation(activation)
    a0, W0 = check_student(a0, W0, teacher)
    n, d = W0.shape
    obj = Objective(teacher, act, n)  # closed forms for erf and ReLU, else autograd
    found = find_critical(obj, pack(a0, W0), tol, max_iter=max_iter, rcond=rcond,
                          max_step=max_step, halvings=40)
    a, W = unpack(found.theta, n, d)
    return NewtonResult(a=a.copy(), W=W.copy(), converged=found.converged,
                        iterations=found.iterations, grad_norms=found.grad_norms,
                        distance=found.distance)


def search_critical_points(teacher: Teacher, activation: str | Activation, n: int = 1, *,
                           starts: int = 10, seed: int = 0, max_norm: float = 50.0,
                           tol: float = 1e-12) -> list[NewtonResult]:
    """Critical points of any type found from random starts.

    Each start minimizes the squared gradient norm ``|grad L|^2`` with L-BFGS (its
    minima with value 0 are the critical points of L, saddles included) and
    then polishes with :func:`newton_critical_point`. Starts: outgoing weights
    N(0, n^-1 k^2), incoming vectors N(0, rho^2 / d) with rho ~ U(0.2, 1.5).

    Parameters
    ----------
    teacher : Teacher
    activation : str or Activation
    n : int
        Student width.
    starts : int
    seed : int
    max_norm : float
        Runs that end with an incoming vector longer than this are dropped (far
        out the gradient fades without a critical point).
    tol : float
        Gradient norm required of a critical point.

    Returns
    -------
    list of NewtonResult
        The converged runs only (including trivial ones with some a_i = 0).
    """
    from scipy.optimize import minimize

    from .derivatives import Objective

    act = get_activation(activation)
    d, k = teacher.d, teacher.k
    obj = Objective(teacher, act, n)
    rng = np.random.default_rng(seed)

    def squared(th):
        g = obj.gradient(th)
        return float(g @ g), 2.0 * (obj.hessian(th) @ g)

    found = []
    for _ in range(starts):
        a0 = rng.normal(size=n) * k / math.sqrt(n)
        W0 = rng.normal(size=(n, d)) * rng.uniform(0.2, 1.5) / math.sqrt(d)
        try:
            res = minimize(squared, pack(a0, W0), jac=True, method="L-BFGS-B",
                           options=dict(maxiter=400, gtol=1e-20, ftol=1e-30))
        except ValueError:  # a ReLU neuron reached w = 0
            continue
        a1, W1 = unpack(res.x, n, d)
        if res.fun > 1e-10 or np.linalg.norm(W1, axis=1).max() > max_norm:
            continue
        try:
            nr = newton_critical_point(a1, W1, teacher, act, tol=tol, max_iter=30)
        except ValueError:
            continue
        if nr.converged:
            found.append(nr)
    return found


def trust_region_minimum(a0, W0, teacher: Teacher, activation: str | Activation, *,
                         gtol: float = 1e-10, max_iter: int = 1000):
    """A minimum of the loss reached downhill from (a0, W0) by a trust-region method.

    SciPy's ``trust-exact`` with the exact gradient and Hessian (closed forms for erf
    and ReLU): unlike :func:`newton_critical_point`, which stops at the nearest critical
    point of any type, this only goes downhill, so from near a saddle it leaves the
    saddle. Stops when the gradient norm is at most ``gtol`` or after ``max_iter``
    iterations; check the result with :func:`analyze_point`.

    Returns
    -------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, d)
    """
    from scipy.optimize import minimize

    from .derivatives import Objective

    act = get_activation(activation)
    a0, W0 = check_student(a0, W0, teacher)
    n, d = W0.shape
    obj = Objective(teacher, act, n)
    res = minimize(obj.loss, pack(a0, W0), jac=obj.gradient, hess=obj.hessian,
                   method="trust-exact", options=dict(gtol=gtol, maxiter=max_iter))
    a, W = unpack(res.x, n, d)
    return a.copy(), W.copy()


def smallest_cosine(W, W_ref) -> float:
    """The smallest cosine between a row of W and the same row of W_ref.

    How far the worst-turned neuron has turned: 1 when every w_i points where its
    reference does. Both arrays have shape (n, d) and no zero row.
    """
    W, W_ref = np.asarray(W, dtype=float), np.asarray(W_ref, dtype=float)
    if W.ndim != 2 or W.shape != W_ref.shape:
        raise ValueError(f"W and W_ref must be (n, d) arrays of the same shape, got "
                         f"{W.shape} and {W_ref.shape}")
    norms = np.linalg.norm(W, axis=1) * np.linalg.norm(W_ref, axis=1)
    if np.any(norms == 0):
        raise ValueError("smallest_cosine needs rows of nonzero length")
    return float(np.min(np.sum(W * W_ref, axis=1) / norms))
