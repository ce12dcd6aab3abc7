"""Newton's method on the population loss: the one implementation the library uses.

Two iterations, for two jobs:

:func:`polish`
    Newton towards the *minimum* whose basin the flow has entered: steps
    -(H + mu I)^{-1} g with a backtracking (Armijo) line search on the loss,
    chord steps that reuse the factor while they cut ``|g|`` fourfold, and guards
    (every iterate has a positive definite Hessian and a loss not above the
    previous one, within round-off; the total distance stays below a bound).
    :func:`quadratic_regime` is the test that decides whether it may start.
:func:`find_critical`
    Newton on grad L = 0 for the critical point *of any type* nearest a start
    (saddles included): the minimum-norm step -H^+ g through the
    eigendecomposition of H (small eigenvalues cut, which copes with the flat
    directions of symmetric or homogeneous losses) and a line search on ``|g|``.
    Used by the flow when it ends without a positive definite Hessian, and by
    :func:`copyaverage.critical.newton_critical_point`.

Both take an *objective*: any object with ``loss_and_gradient(theta) -> (L, g)``
and ``hessian(theta) -> H`` (e.g. :class:`copyaverage.derivatives.Objective`);
``objective.const`` (the teacher's constant term of the loss, for the round-off
allowance of the loss) is used when present. A ``ValueError`` from the
objective at a trial point (a ReLU neuron pushed to w = 0) rejects that trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import scipy.linalg as sla

__all__ = ["CriticalSearch", "Polish", "PolishEnd", "cholesky", "find_critical", "polish",
           "quadratic_regime", "shift_for"]

_EPS = np.finfo(float).eps


def cholesky(H, shift):
    """Cholesky factor of H + shift I (scipy ``cho_factor`` form), or None if that is not
    positive definite."""
    A = H + shift * np.eye(H.shape[0])
    try:
        return sla.cho_factor(A, lower=False, overwrite_a=True, check_finite=False)
    except sla.LinAlgError:
        return None


def shift_for(H, kind="erf"):
    """Tiny shift for the positive-definiteness tests: ``1e-12 max|H|`` (erf), ``1e-9 max|H|``
    (others: ReLU's exact zero modes from its rescaling symmetry come out of the
    Hessian as eigenvalues of either sign at the 1e-11 level)."""
    rel = 1e-12 if kind == "erf" else 1e-9
    return rel * max(1.0, float(np.abs(H).max()))


def _loss_slack(objective, L):
    """Round-off of L: it is a sum of terms as large as the teacher's constant term."""
    return 64 * _EPS * (1.0 + abs(L) + abs(getattr(objective, "const", 0.0)))


def _try(objective, theta):
    """(L, g) at theta, or (inf, None) where the objective has no gradient."""
    try:
        return objective.loss_and_gradient(theta)
    except ValueError:
        return np.inf, None


def quadratic_regime(objective, theta, fac) -> bool:
    """Does one full Newton step (factor ``fac`` of the shifted Hessian) lower the loss
    (within round-off) and at least halve the gradient norm?"""
    L, g = objective.loss_and_gradient(theta)
    p = -sla.cho_solve(fac, g, check_finite=False)
    Lt, gt = _try(objective, theta + p)
    if gt is None:
        return False
    return bool(Lt <= L + _loss_slack(objective, L) and np.linalg.norm(gt) <= 0.5 * np.linalg.norm(g))


class PolishEnd(str, Enum):
    """Why :func:`polish` stopped."""

    CONVERGED = "converged"
    TIME_LIMIT = "time limit during Newton"
    ROUNDOFF = "Newton stagnated at the round-off floor"
    ITERATION_LIMIT = "Newton iteration limit"
    LINE_SEARCH = "Newton line search failed"
    TOO_FAR = "Newton moved too far"
    NOT_POSITIVE_DEFINITE = "Hessian not positive definite at a Newton iterate"
    NON_FINITE = "non-finite Hessian"

    @property
    def keep(self) -> bool:
        """May the iterate be kept (the basin was right, only the accuracy or time ran out)?"""
        return self in (PolishEnd.CONVERGED, PolishEnd.TIME_LIMIT, PolishEnd.ROUNDOFF)


@dataclass
class Polish:
    """Outcome of :func:`polish`: the last iterate and how it was reached."""

    theta: np.ndarray
    end: PolishEnd
    iterations: int
    distance: float
    losses: list = field(default_factory=list)

    @property
    def keep(self) -> bool:
        return self.end.keep


def polish(objective, theta, tol, *, max_iter, max_distance, deadline, kind="erf",
           fac0=None) -> Polish:
    """Newton from a point with positive definite Hessian, down to ``|g| <= tol``.

    Parameters
    ----------
    objective : object with ``loss_and_gradient`` and ``hessian``
    theta : ndarray
        Start.
    tol : float
        Gradient-norm target.
    max_iter : int
        Newton iterations (full steps; chord steps are extra).
    max_distance : float
        Largest total distance moved; beyond it the attempt ends ``TOO_FAR``.
    deadline : float
        ``time.perf_counter()`` value after which the attempt ends ``TIME_LIMIT``.
    kind : str
        Activation kind, for :func:`shift_for`.
    fac0 : optional
        The Cholesky factor of the shifted Hessian at ``theta`` if known.

    Notes
    -----
    After a full step that cut ``|g|`` at least tenfold (the quadratic regime), up
    to three chord steps reuse the same factor (a gradient and two triangular
    solves each, instead of a Hessian and a factorization), as long as each
    cuts ``|g|`` at least fourfold without raising the loss. ``ITERATION_LIMIT``
    and ``ROUNDOFF`` are only reported when the iterate is still above ``tol``.
    """
    L, g = objective.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    losses = [L]
    dist = 0.0
    slow = 0
    slack = _loss_slack(objective, L)
    floor = 1e3 * tol  # below this a failure to improve is round-off, not a wrong basin

    def end(why, it):
        if why is not PolishEnd.TIME_LIMIT and gn <= tol:
            why = PolishEnd.CONVERGED
        return Polish(theta, why, it, dist, losses)

    for it in range(1, max_iter + 1):
        if gn <= tol:
            return end(PolishEnd.CONVERGED, it - 1)
        if time.perf_counter() > deadline:
            return Polish(theta, PolishEnd.TIME_LIMIT, it - 1, dist, losses)
        if it == 1 and fac0 is not None:
            fac = fac0
        else:
            H = objective.hessian(theta)
            if not np.all(np.isfinite(H)):
                return Polish(theta, PolishEnd.NON_FINITE, it - 1, dist, losses)
            fac = cholesky(H, shift_for(H, kind))
            if fac is None:
                return Polish(theta, PolishEnd.NOT_POSITIVE_DEFINITE, it - 1, dist, losses)
        p = -sla.cho_solve(fac, g, check_finite=False)
        slope = float(g @ p)
        alpha = 1.0
        while True:
            trial = theta + alpha * p
            Lt, gt = _try(objective, trial)
            gtn = float(np.linalg.norm(gt)) if gt is not None else np.inf
            armijo = Lt <= L + 1e-4 * alpha * slope
            roundoff = Lt <= L + slack and gtn < gn
            if np.isfinite(Lt) and (armijo or roundoff):
                break
            alpha *= 0.5
            if alpha < 1e-12:
                if gn <= floor:
                    return Polish(theta, PolishEnd.ROUNDOFF, it, dist, losses)
                return Polish(theta, PolishEnd.LINE_SEARCH, it, dist, losses)
        dist += alpha * float(np.linalg.norm(p))
        if dist > max_distance:
            return Polish(theta, PolishEnd.TOO_FAR, it, dist, losses)
        slow = slow + 1 if gtn > 0.5 * gn else 0
        quadratic = alpha == 1.0 and gtn <= 0.1 * gn
        theta, L, g, gn = trial, Lt, gt, gtn
        losses.append(L)
        if quadratic:  # chord steps with the same factor
            for _ in range(3):
                if gn <= tol:
                    break
                q = -sla.cho_solve(fac, g, check_finite=False)
                Lt, gt = _try(objective, theta + q)
                if gt is None:
                    break
                gtn = float(np.linalg.norm(gt))
                if not (gtn <= 0.25 * gn and Lt <= L + slack):
                    break
                dist += float(np.linalg.norm(q))
                theta, L, g, gn = theta + q, Lt, gt, gtn
                losses.append(L)
        if slow >= 4 and gn <= floor:
            return end(PolishEnd.ROUNDOFF, it)
    return end(PolishEnd.ITERATION_LIMIT, max_iter)


@dataclass
class CriticalSearch:
    """Outcome of :func:`find_critical`.

    Attributes
    ----------
    theta : ndarray
        The last iterate.
    converged : bool
        True when the gradient norm fell to ``tol``.
    iterations : int
        Newton steps taken.
    grad_norms : ndarray
        Gradient norm at the start and after every step.
    distance : float
        Euclidean distance of ``theta`` from the start.
    loss_change : float
        Loss at ``theta`` minus the loss at the start.
    """

    theta: np.ndarray
    converged: bool
    iterations: int
    grad_norms: np.ndarray
    distance: float
    loss_change: float


def find_critical(objective, theta, tol, *, max_iter=100, rcond=1e-12, rcond_floor=0.0,
                  max_step=None, halvings=40, deadline=None) -> CriticalSearch:
    """Newton's method on the gradient, for the critical point nearest a start.

    Each step is the minimum-norm solution of H p = -g: eigenvalues lam of H with
    ``|lam| <= rcond * max(rcond_floor, max |lam|)`` are left out. The step is
    halved (at most ``halvings`` times) until the gradient norm decreases; if no
    step does, the search stops honestly (``converged`` False).

    Parameters
    ----------
    objective : object with ``loss_and_gradient`` and ``hessian``
    theta : ndarray
        Start.
    tol : float
        Stop when the gradient norm is at most tol.
    max_iter : int
    rcond, rcond_floor : float
        Cut-off for small eigenvalues (see above).
    max_step : float, optional
        Longest step (Euclidean norm); longer Newton steps are shortened to it.
    halvings : int
        Line-search halvings before giving up.
    deadline : float, optional
        ``time.perf_counter()`` value after which no further step is started.

    Returns
    -------
    CriticalSearch
    """
    start = np.array(theta, dtype=float, copy=True)
    L0, g = objective.loss_and_gradient(start)
    norms = [float(np.linalg.norm(g))]
    theta = start
    it = 0
    while norms[-1] > tol and it < max_iter:
        if deadline is not None and time.perf_counter() > deadline:
            break
        H = objective.hessian(theta)
        lam, Q = np.linalg.eigh(H)
        keep = np.abs(lam) > rcond * max(rcond_floor, float(np.abs(lam).max()))
        step = -Q[:, keep] @ ((Q[:, keep].T @ g) / lam[keep])
        length = float(np.linalg.norm(step))
        if max_step is not None and length > max_step:
            step *= max_step / length
        alpha = 1.0
        for _ in range(halvings):
            trial = theta + alpha * step
            _, g_trial = _try(objective, trial)
            if g_trial is not None and np.linalg.norm(g_trial) < norms[-1]:
                break
            alpha *= 0.5
        else:
            break  # no step decreases the gradient norm: give up honestly
        it += 1
        theta, g = trial, g_trial
        norms.append(float(np.linalg.norm(g)))
    L1 = objective.loss_and_gradient(theta)[0]
    return CriticalSearch(theta=theta, converged=norms[-1] <= tol, iterations=it,
                          grad_norms=np.array(norms),
                          distance=float(np.linalg.norm(theta - start)), loss_change=L1 - L0)
