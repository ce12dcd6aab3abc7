"""Peers (c) and (d): scipy.optimize.minimize on the engine's exact loss.

(c) ``method="trust-exact"`` with the closed-form gradient and Hessian of
:mod:`copyaverage.derivatives`; (d) ``method="BFGS"`` with the closed-form gradient.
Both start from the initialization itself (no flow) and ask for gtol = 1e-12 in the
Euclidean norm (trust-exact measures |grad| that way; BFGS is given ``norm=2``).
They are optimizers, not flows: where the loss has several minima they may end at a
different one than gradient flow does, which the benchmark reports.

A cap on the CPU seconds stops a run: the objective raises once the deadline has passed, and
the run reports the last point it evaluated, with ``capped = True``.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from scipy.optimize import minimize

try:  # the engine's objective (one teacher term for all calls)
    from copyaverage.derivatives import Objective as _Objective
except ImportError:  # pragma: no cover - the public functions always exist
    _Objective = None

from copyaverage import closed_form_gradient, closed_form_hessian, population_loss, unpack

METHODS = {"trust-exact": "trust-exact", "bfgs": "BFGS"}


class _Deadline(Exception):
    pass


class ExactObjective:
    """Loss with gradient, and Hessian, of theta = pack(a, W) for erf, closed forms."""

    def __init__(self, teacher, n: int, activation: str = "erf"):
        self.teacher, self.n, self.activation = teacher, int(n), activation
        self._ob = _Objective(teacher, activation, n) if _Objective is not None else None

    def loss_and_gradient(self, theta):
        if self._ob is not None:
            return self._ob.loss_and_gradient(theta)
        a, W = unpack(theta, self.n, self.teacher.d)
        return (population_loss(a, W, self.teacher, self.activation),
                closed_form_gradient(a, W, self.teacher, self.activation))

    def hessian(self, theta):
        if self._ob is not None:
            return self._ob.hessian(theta)
        a, W = unpack(theta, self.n, self.teacher.d)
        return closed_form_hessian(a, W, self.teacher, self.activation)


def run(objective: ExactObjective, theta0, method: str, tol: float = 1e-12,
        max_seconds: float = 300.0) -> dict:
    """One scipy.optimize.minimize run from theta0; wall and CPU seconds, end point.

    Parameters
    ----------
    objective : ExactObjective
    theta0 : ndarray, shape (n (1 + d),)
    method : {"trust-exact", "bfgs"}
    tol : float
        gtol (Euclidean norm of the gradient).
    max_seconds : float
        Cap on the CPU seconds of the run.
    """
    last = {"theta": np.array(theta0, dtype=float), "calls": 0}
    deadline = time.process_time() + max_seconds

    def fun(theta):
        if time.process_time() > deadline:
            raise _Deadline
        last["theta"] = np.array(theta, copy=True)
        last["calls"] += 1
        return objective.loss_and_gradient(theta)

    options = dict(gtol=tol, maxiter=10**7)
    kw = {}
    if method == "trust-exact":
        kw["hess"] = objective.hessian
    elif method == "bfgs":
        options["norm"] = 2
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    t0, c0 = time.perf_counter(), time.process_time()
    capped, message, nit = False, "", None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = minimize(fun, np.array(theta0, dtype=float), jac=True, method=METHODS[method],
                           options=options, **kw)
            theta, message, nit = res.x, str(res.message), int(res.nit)
        except _Deadline:
            capped, theta, message = True, last["theta"], f"capped at {max_seconds:g} CPU s"
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    loss, g = objective.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    stop = "capped" if capped else ("converged" if gn <= tol else "stopped_above_tol")
    return dict(theta=np.asarray(theta), loss=float(loss), grad_norm=gn, wall_s=wall, cpu_s=cpu,
                capped=capped, stop=stop, message=message, iterations=nit,
                evaluations=last["calls"])
