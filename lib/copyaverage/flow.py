"""Gradient flow on the population loss, from an initialization to a critical point.

:func:`gradient_flow` follows d theta / dt = -grad L(theta), theta = (a, W),
with an ODE solver until the flow has (nearly) settled, then finishes with
Newton's method until the gradient norm is at round-off level. The result
records the end point, its gradient norm and Hessian spectrum, a trajectory
sampled on a logarithmic time grid, and timings and solver statistics.

How the flow is followed
------------------------
The ODE is stiff: the Hessian's eigenvalues spread over many decades (from
~1e3 down to ~1e-6 at the end points of the k = 50 experiments), and the flow
crawls along plateaus near saddles. We step scipy's ODE solver objects
(:class:`scipy.integrate.OdeSolver`, the machinery behind
:func:`scipy.integrate.solve_ivp`) one step at a time, so that the criteria
below can be checked between steps. Methods (option ``method``):

``"auto"`` (default)
    :class:`copyaverage.rkc.RKC`, a stabilized explicit Runge-Kutta-Chebyshev
    solver (cheap: s gradients per step, no Hessian, no factorization), while
    its steps are cheap; when the flow enters a very stiff stretch (many
    stages per step), scipy's ``BDF`` with the exact Hessian as Jacobian takes
    over (with its linear systems factorized in single precision, see
    :class:`_Float32BDF`; ``stats["methods"]`` then reads ``["rkc", "bdf32"]``).
    The switch happens when one RKC step costs more than 0.3 times one
    Hessian plus one factorization, by a fixed cost model (so that runs are
    deterministic).
``"rkc"``, ``"bdf"``, ``"lsoda"``, ``"radau"``
    One solver throughout (the implicit ones with the exact Hessian as
    Jacobian; closed forms of :mod:`copyaverage.derivatives`).

When the ODE stops and Newton takes over
----------------------------------------
Newton's method converges to whatever critical point is nearby, so it must
only take over where the flow's own end point is the nearby one. The tests:
whenever the gradient norm first drops below ``switch_gradient`` (default
1e-3), then below each further tenfold smaller level, and also whenever the
flow time has doubled since the last test while the gradient norm is below
``switch_gradient``,

1. the Hessian must be positive definite (a Cholesky factorization of
   H + mu I succeeds, mu = 1e-12 max|H| for erf; 1e-9 max|H| for ReLU, whose
   rescaling symmetry (a_i, w_i) -> (a_i / c, c w_i) gives exact zero modes,
   numerically of either sign): the flow is in the basin of a minimum, not
   crossing a saddle region;
2. one full Newton step must lower the loss and at least halve the gradient
   norm: the quadratic model is already good (the quadratic regime), so that
   Newton does not travel far.

Only then does Newton polish: steps -(H + mu I)^{-1} g with a backtracking
line search on the loss, chord steps reusing the factor while they cut |g|
fourfold. Guards: every Newton iterate must again have a positive definite
Hessian and a loss not higher than the previous one (within round-off); the
total distance moved must stay below ``max_polish_distance`` times
max(1, |theta|). If a guard trips, the Newton attempt is discarded and the
flow resumes from where it was. The distance the polish moved is reported
(``polish_distance``; typically 1e-5 to 1e-3 in the k = 50 experiment).

For ReLU, minima are not isolated: the loss is invariant under
(a_i, w_i) -> (a_i / c, c w_i), and gradient flow conserves a_i^2 - |w_i|^2.
After the polish each neuron is rescaled along that symmetry to the conserved
value, which puts the end point where the flow would have ended (the network
function and the loss do not change). A ReLU neuron whose w_i reaches 0 (a
"dying" neuron: the loss is not differentiable there, and the flow reaches it
in finite time) ends the run with status ``"failed"``.

If the ODE reaches ``t_max`` or ``max_time``, or stalls (2000 steps advance
t by less than 1 %), without a positive definite Hessian (a degenerate or
saddle end point) and with a gradient norm below ``switch_gradient``, a final
Newton-type iteration on the gradient (pseudo-inverse of H through its
eigendecomposition, line search on |g|, the same distance limit) tries to
land on the critical point
there; the result reports the Hessian spectrum, so such end points are
recognizable.

Convergence
-----------
``converged`` is True only when the final gradient norm (Euclidean norm of the
full gradient with respect to theta) is at most ``tol``. Defaults: 1e-12 for
erf (the paper's bound was 5e-8; our erf end points reach 1e-13 to 1e-15);
1e-10 for ReLU, whose loss is only twice differentiable where a student
neuron copies a teacher neuron (its Hessian is not Lipschitz there, so
Newton's quadratic convergence is not guaranteed) and whose exact zero modes
(the rescaling symmetry) leave a higher round-off floor: converged ReLU end
points reach 1e-11 to 1e-15; 1e-10 for the quadrature activations, whose
derivatives come from numerical quadrature rather than closed forms. A run that does not reach ``tol`` has
``converged = False`` and a message saying why; it must never be counted as a
solution.

Initializations
---------------
:func:`initialize` draws (a0, W0) from a seed: ``"gaussian"`` (every weight
N(0, std^2), std = 0.1 by default) or ``"glorot"`` (Glorot-normal: a weight of
a layer with fan_in inputs and fan_out outputs has std
sqrt(2 / (fan_in + fan_out)); the first layer maps d inputs to n neurons, so
W has std sqrt(2 / (d + n)); the second maps n neurons to 1 output, so a has
std sqrt(2 / (n + 1))). W is drawn first, then a, from
``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
from scipy.integrate import BDF, LSODA, Radau

from .activations import Activation, get_activation
from .derivatives import Objective
from .loss import check_student, pack, unpack
from .results import FlowResult, Recorder, Stop, Trajectory
from .rkc import RKC
from .teacher import Teacher

__all__ = [
    "FlowResult",
    "Trajectory",
    "gradient_flow",
    "initialize",
    "default_tolerance",
    "METHODS",
    "SCHEMES",
]

METHODS = ("auto", "rkc", "bdf", "lsoda", "radau")
SCHEMES = ("gaussian", "glorot")
_SCIPY_SOLVERS = {"bdf": BDF, "lsoda": LSODA, "radau": Radau}
#: "auto" hands over from RKC to BDF when an RKC step costs more than this
#: many (measured) Hessian-plus-factorization times.
_SWITCH_FACTOR = 0.3


# --------------------------------------------------------- initialization --
def _check_int(x, name, minimum):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


def initialize(n: int, teacher: Teacher, scheme: str = "gaussian", seed: int = 0,
               std: float = 0.1):
    """Random initial student (a0, W0), reproducible from a seed.

    Parameters
    ----------
    n : int, n >= 1
        Number of student neurons.
    teacher : Teacher
        Fixes the input dimension d.
    scheme : {"gaussian", "glorot"}
        ``"gaussian"``: every weight N(0, std^2). ``"glorot"``: Glorot-normal,
        W ~ N(0, 2 / (d + n)) (first layer: fan_in d, fan_out n) and
        a ~ N(0, 2 / (n + 1)) (second layer: fan_in n, fan_out 1).
    seed : int, >= 0
        Seed of ``numpy.random.default_rng``; W is drawn first, then a.
    std : float
        Standard deviation for ``"gaussian"`` (default 0.1); ignored for Glorot.

    Returns
    -------
    a0 : ndarray (n,), W0 : ndarray (n, d)
    """
    n = _check_int(n, "n", 1)
    seed = _check_int(seed, "seed", 0)
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    d = teacher.d
    if scheme == "gaussian":
        if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
            raise ValueError(f"std must be a positive finite number, got {std!r}")
        std_W = std_a = float(std)
    elif scheme == "glorot":
        std_W = math.sqrt(2.0 / (d + n))
        std_a = math.sqrt(2.0 / (n + 1))
    else:
        raise ValueError(f"unknown initialization scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    rng = np.random.default_rng(seed)
    W0 = rng.normal(0.0, std_W, size=(n, d))
    a0 = rng.normal(0.0, std_a, size=n)
    return a0, W0


def default_tolerance(activation: str | Activation) -> float:
    """Default gradient-norm tolerance: 1e-12 for erf, 1e-10 otherwise (see module doc)."""
    return 1e-12 if get_activation(activation).kind == "erf" else 1e-10


# ------------------------------------------------------------- internals ---
class _Counter:
    """Objective wrapper that counts and times gradient and Hessian calls and
    remembers the last gradient (the ODE solvers and the checks share it)."""

    def __init__(self, ob: Objective):
        self.ob = ob
        self.n_grad = self.n_hess = 0
        self.t_grad = self.t_hess = 0.0
        self._last_y = None
        self._last_g = None
        self._last_L = None

    def loss_and_gradient(self, y):
        if self._last_y is not None and np.array_equal(y, self._last_y):
            return self._last_L, self._last_g
        t0 = time.perf_counter()
        L, g = self.ob.loss_and_gradient(y)
        self.t_grad += time.perf_counter() - t0
        self.n_grad += 1
        self._last_y, self._last_L, self._last_g = np.array(y, copy=True), L, g
        return L, g

    def rhs(self, t, y):
        return -self.loss_and_gradient(y)[1]

    def hessian(self, y):
        t0 = time.perf_counter()
        H = self.ob.hessian(y)
        self.t_hess += time.perf_counter() - t0
        self.n_hess += 1
        return H

    def jac(self, t, y):
        return -self.hessian(y)


def _cholesky(H, shift):
    """Cholesky factor of H + shift I, or None if that is not positive definite."""
    A = H + shift * np.eye(H.shape[0])
    try:
        return sla.cho_factor(A, lower=False, overwrite_a=True, check_finite=False)
    except sla.LinAlgError:
        return None


def _shift_for(H, kind="erf"):
    """Tiny shift for the Cholesky tests: 1e-12 max|H| (erf), 1e-9 max|H| (others:
    ReLU's exact zero modes from its rescaling symmetry come out of the Hessian as
    eigenvalues of either sign at the 1e-11 level)."""
    rel = 1e-12 if kind == "erf" else 1e-9
    return rel * max(1.0, float(np.abs(H).max()))


def _newton_polish(C: _Counter, theta, tol, max_iter, max_distance, deadline, fac0=None):
    """Newton from a point with positive definite Hessian; see the module doc.

    ``fac0``: the Cholesky factor of the shifted Hessian at ``theta`` if known.
    After a full Newton step that cut |g| at least tenfold (the quadratic
    regime), up to three chord steps reuse the same factor (a gradient and two
    triangular solves each, instead of a Hessian and a factorization), as long
    as each cuts |g| at least fourfold without raising the loss.

    Returns (theta, ok, message, iterations, distance, losses).
    """
    L, g = C.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    losses = [L]
    dist = 0.0
    slow = 0
    # round-off of L: it is a sum of terms as large as the teacher's constant term
    slack = 64 * np.finfo(float).eps * (1.0 + abs(L) + abs(C.ob.const))
    floor = 1e3 * tol  # below this a failure to improve is round-off, not a wrong basin
    for it in range(1, max_iter + 1):
        if gn <= tol:
            return theta, True, "converged", it - 1, dist, losses
        if time.perf_counter() > deadline:
            return theta, False, "time limit during Newton", it - 1, dist, losses
        if it == 1 and fac0 is not None:
            fac = fac0
        else:
            H = C.hessian(theta)
            if not np.all(np.isfinite(H)):
                return theta, False, "non-finite Hessian", it - 1, dist, losses
            fac = _cholesky(H, _shift_for(H, C.ob.act.kind))
            if fac is None:
                return theta, False, "Hessian not positive definite at a Newton iterate", it - 1, dist, losses
        p = -sla.cho_solve(fac, g, check_finite=False)
        slope = float(g @ p)
        alpha = 1.0
        while True:
            trial = theta + alpha * p
            try:
                Lt, gt = C.loss_and_gradient(trial)
            except ValueError:
                Lt, gt = np.inf, None
            gtn = float(np.linalg.norm(gt)) if gt is not None else np.inf
            armijo = Lt <= L + 1e-4 * alpha * slope
            roundoff = Lt <= L + slack and gtn < gn
            if np.isfinite(Lt) and (armijo or roundoff):
                break
            alpha *= 0.5
            if alpha < 1e-12:
                if gn <= floor:
                    return theta, False, "Newton stagnated at the round-off floor", it, dist, losses
                return theta, False, "Newton line search failed", it, dist, losses
        dist += alpha * float(np.linalg.norm(p))
        if dist > max_distance:
            return theta, False, f"Newton moved farther than {max_distance:.3g}", it, dist, losses
        slow = slow + 1 if gtn > 0.5 * gn else 0
        quadratic = alpha == 1.0 and gtn <= 0.1 * gn
        theta, L, g, gn = trial, Lt, gt, gtn
        losses.append(L)
        if quadratic:  # chord steps with the same factor
            for _ in range(3):
                if gn <= tol:
                    break
                q = -sla.cho_solve(fac, g, check_finite=False)
                trial = theta + q
                Lt, gt = C.loss_and_gradient(trial)
                gtn = float(np.linalg.norm(gt))
                if not (gtn <= 0.25 * gn and Lt <= L + slack):
                    break
                dist += float(np.linalg.norm(q))
                theta, L, g, gn = trial, Lt, gt, gtn
                losses.append(L)
        if slow >= 4 and gn <= floor:
            return theta, gn <= tol, "Newton stagnated at the round-off floor", it, dist, losses
    return theta, gn <= tol, "converged" if gn <= tol else "Newton iteration limit", max_iter, dist, losses


#: Probe the full Newton step before starting the polish (see _newton_step_helps).
_PROBE = True


def _newton_step_helps(C: _Counter, theta, fac):
    """Does one full Newton step lower the loss and halve the gradient norm?"""
    L, g = C.loss_and_gradient(theta)
    p = -sla.cho_solve(fac, g, check_finite=False)
    try:
        Lt, gt = C.loss_and_gradient(theta + p)
    except ValueError:
        return False
    slack = 64 * np.finfo(float).eps * (1.0 + abs(L) + abs(C.ob.const))  # round-off of L
    return bool(Lt <= L + slack and np.linalg.norm(gt) <= 0.5 * np.linalg.norm(g))


def _critical_polish(C: _Counter, theta, tol, max_iter, deadline):
    """Newton on grad L = 0 with the pseudo-inverse of H (any critical point)."""
    L0, g = C.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    start = theta
    for it in range(1, max_iter + 1):
        if gn <= tol or time.perf_counter() > deadline:
            break
        H = C.hessian(theta)
        lam, Q = np.linalg.eigh(H)
        cut = 1e-10 * max(1.0, float(np.abs(lam).max()))
        keep = np.abs(lam) > cut
        p = -Q[:, keep] @ ((Q[:, keep].T @ g) / lam[keep])
        alpha = 1.0
        while alpha > 1e-8:
            trial = theta + alpha * p
            Lt, gt = C.loss_and_gradient(trial)
            if np.linalg.norm(gt) < gn:
                break
            alpha *= 0.5
        else:
            break
        theta, g, gn = trial, gt, float(np.linalg.norm(gt))
    L1 = C.loss_and_gradient(theta)[0]
    return theta, it, float(np.linalg.norm(theta - start)), L1 - L0


class _Recorder:
    """Keeps (t, loss, |g|, theta) on a geometric grid of times."""

    def __init__(self, per_decade, keep_theta):
        self.ratio = 10.0 ** (1.0 / per_decade) if per_decade > 0 else np.inf
        self.keep_theta = keep_theta
        self.rows = []
        self.next_t = 0.0

    def add(self, t, L, gn, theta, force=False):
        if force or t >= self.next_t:
            if self.rows and self.rows[-1][0] == t:
                return
            self.rows.append((t, L, gn, np.array(theta, copy=True) if self.keep_theta else None,
                              float(np.linalg.norm(theta))))
            self.next_t = t * self.ratio if t > 0 else 0.0

    def result(self):
        t = np.array([r[0] for r in self.rows])
        L = np.array([r[1] for r in self.rows])
        gn = np.array([r[2] for r in self.rows])
        theta = np.array([r[3] for r in self.rows]) if self.keep_theta else None
        return Trajectory(t, L, gn, theta, np.array([r[4] for r in self.rows]))


def _validate_options(tol, method, rtol, atol, t_max, max_time, switch_gradient,
                      max_polish_distance, max_newton_iterations, trajectory_per_decade):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    for name, val in [("tol", tol), ("rtol", rtol), ("atol", atol), ("t_max", t_max),
                      ("max_time", max_time), ("switch_gradient", switch_gradient),
                      ("max_polish_distance", max_polish_distance)]:
        if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a number, got {val!r}")
        if math.isnan(val) or val <= 0:
            raise ValueError(f"{name} must be positive, got {val!r}")
    for name, val in [("tol", tol), ("rtol", rtol), ("atol", atol), ("switch_gradient", switch_gradient)]:
        if not math.isfinite(val):
            raise ValueError(f"{name} must be finite, got {val!r}")
    _check_int(max_newton_iterations, "max_newton_iterations", 1)
    _check_int(trajectory_per_decade, "trajectory_per_decade", 0)


# ------------------------------------------------------------- the engine --
def gradient_flow(a0, W0, teacher: Teacher, activation: str | Activation, *,
                  tol: float | None = None,
                  method: str = "auto",
                  rtol: float = 1e-4,
                  atol: float = 1e-6,
                  t_max: float = 1e12,
                  max_time: float = 3600.0,
                  switch_gradient: float = 1e-3,
                  max_polish_distance: float = 0.5,
                  max_newton_iterations: int = 100,
                  trajectory_per_decade: int = 10,
                  record_parameters: bool = True,
                  eigenvalues: bool = True) -> FlowResult:
    """Follow gradient flow from (a0, W0) to a critical point of the population loss.

    Parameters
    ----------
    a0 : array_like (n,), W0 : array_like (n, d)
        Initial student; finite. Any n >= 1 (n < k is the paper's question,
        but nothing here requires it).
    teacher : Teacher
    activation : str or Activation
    tol : float, optional
        Gradient-norm tolerance for ``converged``; default
        :func:`default_tolerance` (1e-12 for erf, 1e-10 for ReLU and others).
    method : {"auto", "rkc", "bdf", "lsoda", "radau"}
        ODE solver (see the module docstring).
    rtol, atol : float
        Local error tolerances of the ODE solver (defaults 1e-4, 1e-6; on
        samples of the k = 50 experiment, atol = 1e-7 reaches the same end
        points, to 1e-10, 10-35 % more slowly).
    t_max : float
        Largest flow time (default 1e12).
    max_time : float
        Wall-clock budget in seconds for the whole run (default 3600, the
        authors' ODE budget); when it runs out the run ends not converged
        (unless the polish finishes it).
    switch_gradient : float
        Gradient norm below which switches to Newton are tried (default 1e-3).
    max_polish_distance : float
        Largest distance the Newton polish may move, relative to
        max(1, |theta|) at its start (default 0.5).
    max_newton_iterations : int
    trajectory_per_decade : int
        Trajectory points per decade of flow time (0: only start and end).
    record_parameters : bool
        Keep theta along the trajectory (default True); else only t, loss, |g|.
    eigenvalues : bool
        Compute the Hessian spectrum at the end point (default True).

    Returns
    -------
    FlowResult

    Raises
    ------
    ValueError
        For a bad teacher, activation, shapes, non-finite initial weights, an
        unknown method, or non-positive tolerances and limits.
    """
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    act = get_activation(activation)
    a0, W0 = check_student(a0, W0, teacher)
    tol = default_tolerance(act) if tol is None else tol
    _validate_options(tol, method, rtol, atol, t_max, max_time, switch_gradient,
                      max_polish_distance, max_newton_iterations, trajectory_per_decade)
    options = dict(tol=float(tol), method=method, rtol=float(rtol), atol=float(atol),
                   t_max=float(t_max), max_time=float(max_time),
                   switch_gradient=float(switch_gradient),
                   max_polish_distance=float(max_polish_distance),
                   max_newton_iterations=int(max_newton_iterations),
                   trajectory_per_decade=int(trajectory_per_decade),
                   record_parameters=bool(record_parameters), eigenvalues=bool(eigenvalues))
    n, d = W0.shape
    C = _Counter(Objective(teacher, act, n))
    deadline = t_start + max_time
    theta = pack(a0, W0)
    balance0 = a0**2 - np.sum(W0**2, axis=1)  # conserved by the flow for ReLU
    rec = Recorder(trajectory_per_decade, record_parameters)
    stats = dict(ode_steps=0, ode_rejected=0, nfev=0, njev=0, nlu=0, rkc_stages=0,
                 switch_checks=0, newton_iterations=0, newton_restarts=0, methods=[])
    timings = dict(ode=0.0, polish=0.0, eigenvalues=0.0, total=0.0, cpu=0.0)

    try:
        L, g = C.loss_and_gradient(theta)
    except ValueError as exc:
        raise ValueError(f"cannot start gradient flow: {exc}") from None
    rec.add(0.0, L, float(np.linalg.norm(g)), theta, force=True)

    t = 0.0
    check_level = float(switch_gradient)
    polish_kind, polish_distance, polish_dL = "none", 0.0, 0.0
    message = ""
    failed = False
    current = "rkc" if method == "auto" else method
    solver = None
    h_last = None
    t_checked = np.inf  # flow time of the last switch check
    stall_t: list = []  # flow time every _STALL_STEPS steps
    dead_check = act.kind == "relu"

    while True:
        if solver is None:
            solver = _make_solver(current, C, t, theta, t_max, rtol, atol, h_last)
            stats["methods"].append(current)
        # ---------------- ODE: step until something needs deciding ---------
        t_ode = time.perf_counter()
        stop_reason, msg = None, None
        while stop_reason is None:
            if solver.status == "finished":
                stop_reason = "t_max"
                break
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    msg = solver.step()
            except ValueError as exc:  # e.g. ReLU with some w_i = 0
                stop_reason = f"ODE solver failed: {exc}"
                break
            if solver.status == "failed":
                stop_reason = f"ODE solver failed: {msg}"
                break
            stats["ode_steps"] += 1
            if stats["ode_steps"] % _STALL_STEPS == 0:
                stall_t.append(solver.t)
            t, theta = solver.t, solver.y
            L, g = C.loss_and_gradient(theta)
            gn = float(np.linalg.norm(g))
            rec.add(t, L, gn, theta)
            if not np.isfinite(L):
                stop_reason = "ODE solver failed: non-finite loss"
            elif dead_check and (dead := _dying_neuron(theta, n)) is not None:
                stop_reason = (f"ODE solver failed: student neuron {dead} reached w = 0, where the "
                               f"{act.name} loss is not differentiable (a dying neuron)")
            elif _stalled(stall_t, t, stats["ode_steps"]):
                stop_reason = "stall"
            elif gn <= check_level or (gn <= switch_gradient and t >= 2 * t_checked):
                stop_reason = "check"
            elif time.perf_counter() > deadline:
                stop_reason = "max_time"
            elif current == "rkc" and method == "auto" and solver.stages > 50:
                t_grad, t_jac = _cost_model(n, teacher.k, d)
                if solver.stages * t_grad > _SWITCH_FACTOR * t_jac:
                    stop_reason = "switch"
            if gn > 100 * check_level and check_level < switch_gradient:
                check_level = min(float(switch_gradient), gn / 10)  # left a plateau
        timings["ode"] += time.perf_counter() - t_ode

        if stop_reason == "switch":
            _collect(stats, solver, current)
            h_last, solver, current = solver.h_abs, None, "bdf32"
            continue
        if stop_reason.startswith("ODE solver failed"):
            _collect(stats, solver, current)
            failed, message = True, stop_reason
            break

        t_pol = time.perf_counter()
        if stop_reason == "check":
            # ---------- is the flow in the basin of a minimum? Newton ----------
            stats["switch_checks"] += 1
            t_checked = t
            H = C.hessian(theta)
            fac = _cholesky(H, _shift_for(H, act.kind))
            del H
            if fac is not None and _PROBE and not _newton_step_helps(C, theta, fac):
                fac = None  # the quadratic model is not good yet: keep flowing
                check_level = min(check_level, gn)
            if fac is not None:
                reach = max_polish_distance * max(1.0, float(np.linalg.norm(theta)))
                new, ok, why, its, dist, losses = _newton_polish(
                    C, theta, tol, max_newton_iterations, reach, deadline, fac0=fac)
                stats["newton_iterations"] += its
                keep = ok or why == "time limit during Newton" or why.startswith("Newton stagnated")
                if keep:
                    polish_kind, polish_distance = "newton", dist
                    polish_dL = losses[-1] - losses[0]
                    rec.add(t, L, gn, theta, force=True)
                    theta = new
                    message = f"flow to t = {t:.3g}, then Newton ({its} iterations): {why}"
                    timings["polish"] += time.perf_counter() - t_pol
                    _collect(stats, solver, current)
                    break
                stats["newton_restarts"] += 1  # discard the Newton attempt, keep flowing
                check_level = min(check_level, gn) / 100
            else:
                check_level = gn / 10
            timings["polish"] += time.perf_counter() - t_pol
            if time.perf_counter() <= deadline:
                continue
            stop_reason = "max_time"
            t_pol = time.perf_counter()
        # ---------- the ODE ran out (t_max, max_time, stall): last resort ------
        _collect(stats, solver, current)
        rec.add(t, L, gn, theta, force=True)
        what = {"stall": "stalled (steps shrank to nothing)"}.get(stop_reason, f"reached {stop_reason}")
        if gn <= switch_gradient:
            reach = max_polish_distance * max(1.0, float(np.linalg.norm(theta)))
            new, its, dist, dL = _critical_polish(C, theta, tol, max_newton_iterations,
                                                  time.perf_counter() + 0.1 * max_time)
            stats["newton_iterations"] += its
            if dist <= reach:
                polish_kind, polish_distance, polish_dL = "critical", dist, dL
                theta = new
                message = (f"ODE {what} at t = {t:.3g} without a positive definite Hessian; "
                           f"pseudo-inverse Newton on the gradient ({its} iterations)")
            else:
                message = (f"ODE {what} at t = {t:.3g}; pseudo-inverse Newton moved {dist:.3g} "
                           f"> {reach:.3g} and was discarded")
        else:
            message = f"ODE {what} at t = {t:.3g} with gradient norm {gn:.2e}; no polish"
        timings["polish"] += time.perf_counter() - t_pol
        break

    if act.kind == "relu" and polish_kind != "none" and not failed:
        theta = _restore_balance(theta, n, d, balance0)
    a, W = unpack(theta, n, d)
    L, g = C.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    ev = None
    if eigenvalues and np.all(np.isfinite(theta)):
        t_ev = time.perf_counter()
        try:
            ev = sla.eigh(C.hessian(theta), eigvals_only=True, check_finite=False)
        except (ValueError, sla.LinAlgError):
            ev = None
        timings["eigenvalues"] = time.perf_counter() - t_ev
    converged = (not failed) and bool(np.isfinite(gn)) and gn <= tol
    if failed:
        status = Stop.DYING_NEURON if "w = 0" in message else Stop.SOLVER_FAILED
    else:
        status = Stop.CONVERGED if converged else Stop.NEWTON
        if not converged:
            message += f"; final gradient norm {gn:.2e} > tol {tol:.1e}"
            message += _growth_note(rec)
    stats["n_gradient_evaluations"] = C.n_grad
    stats["n_hessian_evaluations"] = C.n_hess
    timings["total"] = time.perf_counter() - t_start
    timings["cpu"] = time.process_time() - cpu_start
    return FlowResult(a=np.array(a), W=np.array(W), loss=float(L), grad_norm=gn,
                      converged=bool(converged), tol=float(tol), hessian_eigenvalues=ev,
                      trajectory=rec.result(), t_end=float(t), stop=status, message=message,
                      polish=polish_kind, polish_distance=float(polish_distance),
                      polish_loss_change=float(polish_dL), stats=stats, timings=timings,
                      options=options)


def _growth_note(rec: "_Recorder") -> str:
    """A remark when |theta| still grew over the last three decades of flow time."""
    t = np.array([r[0] for r in rec.rows])
    norm = np.array([r[4] for r in rec.rows])
    if len(t) < 2 or t[-1] < 1e6:
        return ""
    i = int(np.searchsorted(t, t[-1] / 1e3))
    if norm[-1] > 1.01 * norm[i]:
        return (f"; |theta| still grew from {norm[i]:.4g} to {norm[-1]:.4g} over the last three "
                "decades of t: the flow may be heading to a critical point at infinity "
                "(e.g. two neurons merging while their outgoing weights diverge)")
    return ""


#: A run stops as stalled when _STALL_STEPS ODE steps advanced t by less than 1%.
_STALL_STEPS = 2000
#: ReLU: a neuron with |w_i| below this fraction of the largest |w_j| is dying.
_DEAD_FRACTION = 1e-6


def _stalled(stall_t, t, steps):
    return len(stall_t) >= 2 and stall_t[-1] - stall_t[-2] < 0.01 * abs(stall_t[-1])


def _dying_neuron(theta, n):
    W = theta[n:].reshape(n, -1)
    norms = np.sqrt(np.einsum("id,id->i", W, W))
    small = np.flatnonzero(norms < _DEAD_FRACTION * max(norms.max(), 1e-300))
    return int(small[0]) if small.size else None


def _restore_balance(theta, n, d, balance0):
    """Move a ReLU end point along its symmetry orbits (a_i / c_i, c_i w_i) back to
    the flow's conserved a_i^2 - |w_i|^2.

    For the 1-homogeneous ReLU, gradient flow conserves a_i^2 - |w_i|^2 for
    every neuron, and the loss is invariant under (a_i, w_i) -> (a_i / c, c w_i):
    minima come in curves of equivalent points. Newton lands on the right
    curve but not at the point the flow would reach; the rescaling with
    c_i^2 = x solving |w_i|^2 x^2 + K_i x - a_i^2 = 0 (K_i the conserved value)
    puts it there. The network function, the loss and the criticality are
    unchanged (the gradient is multiplied by c_i or 1/c_i, both close to 1).
    """
    a, W = unpack(theta, n, d)
    a, W = a.copy(), W.copy()
    A, B = a**2, np.sum(W**2, axis=1)
    ok = (B > 0) & (A > 0)
    x = np.ones(n)
    disc = np.sqrt(balance0**2 + 4 * A * B)
    x[ok] = np.where(balance0[ok] >= 0,
                     2 * A[ok] / (balance0[ok] + disc[ok]),
                     (disc[ok] - balance0[ok]) / (2 * B[ok]))  # both stable forms of the root
    c = np.sqrt(x)
    return pack(a / c, W * c[:, None])


def _cost_model(n, k, d):
    """Modelled seconds of one gradient and of one Hessian plus factorization.

    A fixed model (fitted on the development machine, one BLAS thread) rather
    than timings measured during the run, so that the RKC -> BDF switch, and
    with it the run, is deterministic.
    """
    N = n * (d + 1)
    t_grad = 4e-5 + 6e-10 * n * (n + k) * d
    t_jac = 1e-3 + 1.6e-8 * (n * d) ** 2 + 1e-11 * N**3  # closed-form Hessian, float32 LU
    return t_grad, t_jac


class _Float32BDF(BDF):
    """scipy's BDF with its linear systems factorized in single precision.

    The matrices I - c J (J = -H) are factorized by float32 Cholesky (they are
    positive definite except near saddles, where float32 LU takes over),
    about twice as fast as float64 LU. The factor is only used inside BDF's
    simplified Newton iteration, whose convergence (and the local error test)
    is checked in double precision, so the solution keeps double accuracy; a
    poor factor only costs an extra Jacobian update.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def lu(A):
            self.nlu += 1
            A32 = np.asarray(A, dtype=np.float32)
            c, info = sla.lapack.spotrf(A32, lower=False, clean=False, overwrite_a=False)
            if info == 0:
                return ("cholesky", c)
            lu_, piv, info = sla.lapack.sgetrf(A32, overwrite_a=True)
            return ("lu", (lu_, piv))

        def solve_lu(factor, b):
            kind, f = factor
            b32 = np.asarray(b, dtype=np.float32)
            if kind == "cholesky":
                x, _ = sla.lapack.spotrs(f, b32, lower=False)
            else:
                x, _ = sla.lapack.sgetrs(f[0], f[1], b32)
            return x.astype(np.float64)

        self.lu = lu
        self.solve_lu = solve_lu


def _make_solver(name, C: _Counter, t0, y0, t_max, rtol, atol, h_last):
    kw = {}
    if h_last is not None and np.isfinite(h_last) and h_last > 0:
        kw["first_step"] = min(h_last, t_max - t0)
    if name == "rkc":
        return RKC(C.rhs, t0, y0, t_max, rtol=rtol, atol=atol, **kw)
    cls = _Float32BDF if name == "bdf32" else _SCIPY_SOLVERS[name]
    return cls(C.rhs, t0, y0, t_max, rtol=rtol, atol=atol, jac=C.jac, **kw)


def _collect(stats, solver, name):
    stats["nfev"] += int(solver.nfev)
    stats["njev"] += int(getattr(solver, "njev", 0))
    stats["nlu"] += int(getattr(solver, "nlu", 0))
    if name == "rkc":
        stats["ode_rejected"] += int(solver.n_rejected)
        stats["rkc_stages"] += int(solver.total_stages)
