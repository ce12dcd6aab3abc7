"""A Runge-Kutta-Chebyshev ODE solver for gradient flows, in scipy's OdeSolver form.

Gradient flow d theta/dt = -grad L(theta) has the Jacobian -H, with H the
symmetric Hessian: its spectrum is real. Stiffness (a few large positive
Hessian eigenvalues next to the slow directions that set the time scale) is
then handled well by *stabilized explicit* methods, whose stability region
stretches along the negative real axis: with s stages, the damped second-order
Runge-Kutta-Chebyshev method (RKC; van der Houwen and Sommeijer 1980,
Sommeijer, Shampine and Verwer 1998, J. Comput. Appl. Math. 88, 315) is stable
for h rho <= ~0.65 s^2, rho the spectral radius of H. A step costs s gradient
evaluations and no Hessian, no factorization. Where the implicit solvers
(BDF, Radau, LSODA) need a dense n (1 + d) square LU per Jacobian update, RKC
needs sqrt(h rho) gradients: for the k = 50 teacher and n = 49 students this
is 10 to 50 times cheaper during the active part of the flow. When the flow
settles into a long, very stiff tail (huge h rho), an implicit solver becomes
cheaper again; :mod:`copyaverage.flow` then switches.

:class:`RKC` is a subclass of :class:`scipy.integrate.OdeSolver`, so it can
be passed to :func:`scipy.integrate.solve_ivp` as ``method=RKC`` (with
events and dense output), or stepped by hand.

Implementation notes (written from the published method, not from code):
damping epsilon = 2/13; stage count s = 1 + floor(sqrt(1 + 1.54 h rho));
local error estimate (12 (y_n - y_{n+1}) + 6 h (f_n + f_{n+1})) / 15 in the
weighted RMS norm with weights ``atol + rtol max(|y_n|, |y_{n+1}|)``; step factor
0.8 err^(-1/3) clipped to [0.1, 10]; spectral radius by power iteration on
finite-difference Jacobian-vector products (or a user callable), refreshed
every 25 steps and after every rejected step, with a safety factor 1.2.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import DenseOutput, OdeSolver

__all__ = ["RKC", "rkc_coefficients"]

_EPS = np.finfo(float).eps
_DAMPING = 2.0 / 13.0


def rkc_coefficients(s: int):
    """Coefficients of the s-stage damped RKC method.

    Returns
    -------
    dict
        Arrays (index j = 0..s) ``mu``, ``nu``, ``mu_t`` (mu tilde),
        ``gamma_t`` (gamma tilde) and ``c`` (stage times as fractions of h), and the
        float ``beta``, the length of the real stability interval [-beta, 0].

    Notes
    -----
    The stage recursion is::

        Y_0 = y, Y_1 = y + mu_t[1] h f(Y_0),
        Y_j = (1 - mu_j - nu_j) y + mu_j Y_{j-1} + nu_j Y_{j-2}
              + mu_t[j] h f(Y_{j-1}) + gamma_t[j] h f(Y_0),   j = 2..s.
    """
    if s < 2:
        raise ValueError(f"RKC needs at least 2 stages, got {s}")
    w0 = 1.0 + _DAMPING / s**2
    acosh_w0 = math.acosh(w0)
    # T_s'(w0) / T_s''(w0) in closed form through sinh/cosh of s acosh(w0)
    t1 = w0 * w0 - 1.0
    t2 = math.sqrt(t1)
    arg = s * acosh_w0
    w1 = math.sinh(arg) * t1 / (math.cosh(arg) * s * t2 - w0 * math.sinh(arg))
    # Chebyshev values T_j, T_j', T_j'' at w0 by the three-term recurrence
    T = np.zeros(s + 1)
    dT = np.zeros(s + 1)
    d2T = np.zeros(s + 1)
    T[0], T[1] = 1.0, w0
    dT[1] = 1.0
    for j in range(2, s + 1):
        T[j] = 2 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2 * w0 * dT[j - 1] - dT[j - 2] + 2 * T[j - 1]
        d2T[j] = 2 * w0 * d2T[j - 1] - d2T[j - 2] + 4 * dT[j - 1]
    b = np.zeros(s + 1)
    b[2:] = d2T[2:] / dT[2:] ** 2
    b[0] = b[1] = b[2]
    a = 1.0 - b * T
    mu = np.zeros(s + 1)
    nu = np.zeros(s + 1)
    mu_t = np.zeros(s + 1)
    gamma_t = np.zeros(s + 1)
    mu_t[1] = b[1] * w1
    for j in range(2, s + 1):
        mu[j] = 2 * b[j] * w0 / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_t[j] = 2 * b[j] * w1 / b[j - 1]
        gamma_t[j] = -a[j - 1] * mu_t[j]
    c = np.zeros(s + 1)
    c[1] = mu_t[1]
    # stage times: c_j = T_j'(w0) / T_j''(w0) * T_s''(w0) / T_s'(w0) (c_s = 1); use recursion
    for j in range(2, s + 1):
        c[j] = mu[j] * c[j - 1] + nu[j] * c[j - 2] + mu_t[j] + gamma_t[j]
    beta = (w0 + 1.0) / w1
    return {"mu": mu, "nu": nu, "mu_t": mu_t, "gamma_t": gamma_t, "c": c, "beta": beta}


class _HermiteOutput(DenseOutput):
    """Cubic Hermite interpolant through (t_old, y_old, f_old) and (t, y, f)."""

    def __init__(self, t_old, t, y_old, y, f_old, f):
        super().__init__(t_old, t)
        self.h = t - t_old
        self.y_old, self.y, self.f_old, self.f = y_old, y, f_old, f

    def _call_impl(self, t):
        x = (np.asarray(t) - self.t_old) / self.h
        h00 = (1 + 2 * x) * (1 - x) ** 2
        h10 = x * (1 - x) ** 2
        h01 = x * x * (3 - 2 * x)
        h11 = x * x * (x - 1)
        if x.ndim == 0:
            return (h00 * self.y_old + h10 * self.h * self.f_old
                    + h01 * self.y + h11 * self.h * self.f)
        return (np.outer(self.y_old, h00) + np.outer(self.h * self.f_old, h10)
                + np.outer(self.y, h01) + np.outer(self.h * self.f, h11))


class RKC(OdeSolver):
    """Damped second-order Runge-Kutta-Chebyshev solver (explicit, stabilized).

    For stiff problems whose Jacobian has a real (or nearly real) spectrum,
    such as gradient flows. Usable as ``solve_ivp(..., method=RKC)``.

    Parameters
    ----------
    fun, t0, y0, t_bound
        As for every :class:`scipy.integrate.OdeSolver`.
    rtol, atol : float
        Relative and absolute tolerance of the local error (default 1e-4, 1e-7).
    first_step : float, optional
        Initial step; by default chosen from the spectral radius and ``|f|``.
    max_step : float
        Largest step allowed (default inf).
    max_stages : int
        Largest number of stages (default 10_000); longer steps are cut.
    spectral_radius : callable (t, y) -> float, optional
        An upper bound for the spectral radius of the Jacobian; by default a
        power iteration on finite-difference Jacobian-vector products.

    Attributes
    ----------
    nfev : int
        Number of evaluations of ``fun`` (the stages and the power iterations).
    n_accepted, n_rejected : int
        Accepted and rejected steps.
    stages : int
        Stage count of the last step.
    rho : float
        The current spectral radius estimate (with its safety factor).
    """

    REFRESH_EVERY = 25
    SAFETY = 1.2

    def __init__(self, fun, t0, y0, t_bound, rtol=1e-4, atol=1e-7, first_step=None,
                 max_step=np.inf, max_stages=10_000, spectral_radius=None,
                 vectorized=False, **extraneous):
        super().__init__(fun, t0, y0, t_bound, vectorized)
        if not (rtol > 0 and np.all(np.asarray(atol) >= 0)):
            raise ValueError(f"RKC needs rtol > 0 and atol >= 0, got {rtol}, {atol}")
        if max_stages < 2:
            raise ValueError(f"max_stages must be >= 2, got {max_stages}")
        self.rtol, self.atol = float(rtol), atol
        self.max_step = float(max_step)
        self.max_stages = int(max_stages)
        self._user_rho = spectral_radius
        self.f = self.fun(self.t, self.y)
        self.n_accepted = self.n_rejected = 0
        self.stages = 0
        self.total_stages = 0
        self._eigvec = None
        self._age = 0
        self._coef_cache: dict[int, dict] = {}
        self.rho = self._estimate_rho()
        if first_step is None:
            fn = np.sqrt(np.mean((self.f / (self.atol + self.rtol * np.abs(self.y))) ** 2))
            h = 0.1 / max(fn, 1e-300) if fn > 0 else 1.0
            h = min(h, 1.0 / max(self.rho, 1e-300))
        else:
            h = float(first_step)
        self.h_abs = min(abs(h), self.max_step, abs(t_bound - t0))
        self._y_old = self._f_old = None
        self._last_rejected = False

    # -- spectral radius ----------------------------------------------------
    def _estimate_rho(self):
        self._age = 0
        if self._user_rho is not None:
            return self.SAFETY * float(self._user_rho(self.t, self.y))
        y, f = self.y, self.f
        v = self._eigvec
        if v is None:
            v = np.random.default_rng(0).standard_normal(self.n)
        v = v / np.linalg.norm(v)
        ynorm = np.linalg.norm(y)
        eps_fd = math.sqrt(_EPS) * max(1.0, ynorm)
        est = 0.0
        for _ in range(50):
            Jv = (self.fun(self.t, y + eps_fd * v) - f) / eps_fd
            new = np.linalg.norm(Jv)
            if new == 0.0:
                break
            v = Jv / new
            if abs(new - est) <= 0.01 * new:
                est = new
                break
            est = new
        self._eigvec = v
        return self.SAFETY * max(est, 1e-12)

    def _coefficients(self, s):
        if s not in self._coef_cache:
            if len(self._coef_cache) > 64:
                self._coef_cache.clear()
            self._coef_cache[s] = rkc_coefficients(s)
        return self._coef_cache[s]

    # -- one step -----------------------------------------------------------
    def _step_impl(self):
        t, y, f = self.t, self.y, self.f
        h_abs = min(self.h_abs, self.max_step)
        min_step = 10 * abs(np.nextafter(t, self.direction * np.inf) - t)
        if self._age >= self.REFRESH_EVERY:
            self.rho = self._estimate_rho()
        while True:
            if h_abs < min_step:
                return False, self.TOO_SMALL_STEP
            s = 1 + int(math.sqrt(1.0 + 1.54 * h_abs * self.rho))
            if s > self.max_stages:
                s = self.max_stages
                h_abs = (s * s - 1) / (1.54 * self.rho)
            s = max(s, 2)
            h = h_abs * self.direction
            t_new = t + h
            if self.direction * (t_new - self.t_bound) > 0:
                t_new = self.t_bound
                h = t_new - t
                h_abs = abs(h)
            C = self._coefficients(s)
            mu, nu, mu_t, gamma_t, cc = C["mu"], C["nu"], C["mu_t"], C["gamma_t"], C["c"]
            y_jm2 = y
            y_jm1 = y + mu_t[1] * h * f
            for j in range(2, s + 1):
                fj = self.fun(t + cc[j - 1] * h, y_jm1)
                y_j = ((1.0 - mu[j] - nu[j]) * y + mu[j] * y_jm1 + nu[j] * y_jm2
                       + h * (mu_t[j] * fj + gamma_t[j] * f))
                y_jm2, y_jm1 = y_jm1, y_j
            y_new = y_jm1
            f_new = self.fun(t_new, y_new)
            self.stages = s
            self.total_stages += s
            if not (np.all(np.isfinite(y_new)) and np.all(np.isfinite(f_new))):
                err = np.inf
            else:
                est = 0.8 * (y - y_new) + 0.4 * h * (f + f_new)
                wt = self.atol + self.rtol * np.maximum(np.abs(y), np.abs(y_new))
                err = float(np.sqrt(np.mean((est / wt) ** 2)))
            if err <= 1.0:
                break
            self.n_rejected += 1
            self._last_rejected = True
            factor = 0.8 * err ** (-1.0 / 3.0) if np.isfinite(err) else 0.1
            h_abs *= min(0.8, max(0.1, factor))
            self.rho = self._estimate_rho()
        # accepted
        self.n_accepted += 1
        self._age += 1
        factor = 10.0 if err == 0 else 0.8 * err ** (-1.0 / 3.0)
        factor = min(10.0, max(0.1, factor))
        if self._last_rejected:
            factor = min(factor, 1.0)
            self._last_rejected = False
        self._y_old, self._f_old = y, f
        self.t, self.y, self.f = t_new, y_new, f_new
        self.h_abs = h_abs * factor
        return True, None

    def _dense_output_impl(self):
        return _HermiteOutput(self.t_old, self.t, self._y_old, self.y, self._f_old, self.f)
