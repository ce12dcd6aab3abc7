"""Gradient flow on the population loss, from an initialization to a critical point.

:func:`gradient_flow` follows d theta / dt = -grad L(theta), theta = (a, W),
with an ODE solver until the flow has (nearly) settled, then finishes with
Newton's method until the gradient norm is at round-off level. The result
(:class:`~copyaverage.results.FlowResult`) records the end point, its gradient
norm and Hessian spectrum, why the run stopped (``stop``, data a program reads),
a trajectory sampled on a logarithmic time grid, and timings and solver
statistics.

The driver and its phases
-------------------------
:func:`gradient_flow` is a short driver over three pieces:

* the ODE phase (:class:`copyaverage.ode.OdePhase`): RKC, then BDF with the
  exact Hessian when the flow gets stiff, stepped until a named event (a check
  level reached, a stall, the time or t limit, a dying ReLU neuron, a solver
  failure, or the gradient already at the tolerance);
* the Newton phase (:mod:`copyaverage.newton`), asked on every CHECK event
  whether it may take over, and if so polishing to round-off;
* the analysis of the end point (loss, gradient norm, Hessian spectrum).

The ODE is stiff: the Hessian's eigenvalues spread over many decades (from
~1e3 down to ~1e-6 at the end points of the k = 50 experiments), and the flow
crawls along plateaus near saddles.

When the ODE stops and Newton takes over
----------------------------------------
Newton's method converges to whatever critical point is nearby, so it must
only take over where the flow's own end point is the nearby one. The tests:
whenever the gradient norm first drops below ``switch_gradient`` (default
1e-3), then below each further tenfold smaller level, and also whenever the
flow time has doubled since the last test while the gradient norm is below
``switch_gradient``,

1. the Hessian must be positive definite (a Cholesky factorization of
   H + mu I succeeds, ``mu = 1e-12 max|H|`` for erf; ``1e-9 max|H|`` for ReLU, whose
   rescaling symmetry (a_i, w_i) -> (a_i / c, c w_i) gives exact zero modes,
   numerically of either sign): the flow is in the basin of a minimum, not
   crossing a saddle region;
2. one full Newton step must lower the loss and at least halve the gradient
   norm: the quadratic model is already good (the quadratic regime), so that
   Newton does not travel far.

Only then does Newton polish (:func:`copyaverage.newton.polish`: line search
on the loss, chord steps, guards on positive definiteness, loss and distance
moved, at most ``max_polish_distance`` times ``max(1, |theta|)``). If a guard
trips, the Newton attempt is discarded and the flow resumes from where it was.
The distance the polish moved is reported (``polish_distance``; typically 1e-5
to 1e-3 in the k = 50 experiment).

If the ODE reaches ``t_max`` or ``max_time``, or stalls, without a positive
definite Hessian (a degenerate or saddle end point) and with a gradient norm
below ``switch_gradient``, Newton on the gradient
(:func:`copyaverage.newton.find_critical`, pseudo-inverse of H, the same
distance limit) tries to land on the critical point there; the result reports
the Hessian spectrum, so such end points are recognizable. A run whose
gradient norm is already at most ``tol`` (at the start, or along the way) ends
there: it is at a critical point, and the Hessian spectrum tells a saddle from
a minimum.

ReLU
----
For ReLU, minima are not isolated: the loss is invariant under
(a_i, w_i) -> (a_i / c, c w_i), and gradient flow conserves ``a_i^2 - |w_i|^2``.
After the polish each neuron is rescaled along that symmetry to the conserved
value, which puts the end point where the flow would have ended (the network
function and the loss do not change). A ReLU neuron whose w_i reaches 0 (a
"dying" neuron: the loss is not differentiable there, and the flow reaches it
in finite time) ends the run with ``stop == "dying_neuron"``.

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
derivatives come from numerical quadrature rather than closed forms. A run
that does not reach ``tol`` has ``converged = False`` and a ``stop`` saying
why; it must never be counted as a solution.

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

import numpy as np
import scipy.linalg as sla

from . import newton
from .activations import Activation, get_activation
from .derivatives import Objective
from .empirical import EmpiricalObjective
from .loss import check_student, pack, unpack
from .ode import METHODS, Event, OdePhase
from .results import FlowResult, Recorder, Stop
from .teacher import Teacher

__all__ = [
    "FlowResult",
    "gradient_flow",
    "initialize",
    "default_tolerance",
    "METHODS",
    "SCHEMES",
]

SCHEMES = ("gaussian", "glorot")


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
    remembers the last gradient (the ODE solvers and the checks share it).

    ``rhs`` returns NaN where the gradient is not finite or does not exist (a
    trial point inside an ODE step): the solvers then reject the step.
    """

    def __init__(self, ob: Objective):
        self.ob = ob
        self.const = ob.const
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
        if not np.all(np.isfinite(y)):
            return np.full_like(y, np.nan)
        try:
            return -self.loss_and_gradient(y)[1]
        except ValueError:  # ReLU: a student vector exactly at 0
            return np.full_like(y, np.nan)

    def hessian(self, y):
        t0 = time.perf_counter()
        H = self.ob.hessian(y)
        self.t_hess += time.perf_counter() - t0
        self.n_hess += 1
        return H

    def jac(self, t, y):
        return -self.hessian(y)


def _validate_options(*, tol, method, rtol, atol, t_max, max_time, switch_gradient,
                      max_polish_distance, max_newton_iterations, trajectory_per_decade,
                      record_parameters, eigenvalues, fresh_jacobian=False) -> dict:
    """Check the options of :func:`gradient_flow`; return them as plain Python values."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    numbers = dict(tol=tol, rtol=rtol, atol=atol, t_max=t_max, max_time=max_time,
                   switch_gradient=switch_gradient, max_polish_distance=max_polish_distance)
    for name, val in numbers.items():
        if isinstance(val, bool) or not isinstance(val, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} must be a number, got {val!r}")
        if math.isnan(val) or val <= 0:
            raise ValueError(f"{name} must be positive, got {val!r}")
    for name in ("tol", "rtol", "atol", "switch_gradient"):
        if not math.isfinite(numbers[name]):
            raise ValueError(f"{name} must be finite, got {numbers[name]!r}")
    options = {name: float(val) for name, val in numbers.items()}
    options.update(method=method,
                   max_newton_iterations=_check_int(max_newton_iterations,
                                                    "max_newton_iterations", 1),
                   trajectory_per_decade=_check_int(trajectory_per_decade,
                                                    "trajectory_per_decade", 0),
                   record_parameters=bool(record_parameters), eigenvalues=bool(eigenvalues))
    if not isinstance(fresh_jacobian, (bool, np.bool_)):
        raise ValueError(f"fresh_jacobian must be True or False, got {fresh_jacobian!r}")
    if fresh_jacobian:  # recorded only when set, so that the default runs keep their options
        options["fresh_jacobian"] = True
    return options


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
                  eigenvalues: bool = True,
                  fresh_jacobian: bool = False,
                  data=None) -> FlowResult:
    """Follow gradient flow from (a0, W0) to a critical point of the population loss
    (or, with ``data``, of the empirical loss on that sample).

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
        ``max(1, |theta|)`` at its start (default 0.5).
    max_newton_iterations : int
    trajectory_per_decade : int
        Trajectory points per decade of flow time (0: only start and end).
    record_parameters : bool
        Keep theta along the trajectory (default True); else only t, loss, ``|g|``.
    eigenvalues : bool
        Compute the Hessian spectrum at the end point (default True).
    fresh_jacobian : bool
        In the stiff phase of ``method="auto"``, re-evaluate the Jacobian when scipy's BDF
        halves a step after a failed Newton solve (:class:`copyaverage.ode.Float32BDF`):
        on large students a median 0.64 times the factorizations and 0.75 times the wall
        time (``benchmarks/bench_fresh_jacobian.py``), and a trajectory that differs at the
        level of the solver tolerances. Default False (every committed experiment before
        2026-12-02 ran without it).
    data : array_like (N, d), optional
        A sample of inputs, one per row (e.g. :func:`copyaverage.empirical.sample_inputs`):
        then the flow follows the empirical loss (1/N) sum_s (f(x_s) - f*(x_s))^2 of
        :mod:`copyaverage.empirical` (full-batch gradient flow), and every loss, gradient
        and Hessian of the result is the empirical one; ``options["samples"]`` of the
        result is N.

    Returns
    -------
    FlowResult

    Raises
    ------
    ValueError
        For a bad teacher, activation, shapes, non-finite initial weights, an
        unknown method, non-positive tolerances and limits, or a sample that is not a
        finite (N, d) array with N >= 1.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    act = get_activation(activation)
    a0, W0 = check_student(a0, W0, teacher)
    tol = default_tolerance(act) if tol is None else tol
    options = _validate_options(tol=tol, method=method, rtol=rtol, atol=atol, t_max=t_max,
                                max_time=max_time, switch_gradient=switch_gradient,
                                max_polish_distance=max_polish_distance,
                                max_newton_iterations=max_newton_iterations,
                                trajectory_per_decade=trajectory_per_decade,
                                record_parameters=record_parameters, eigenvalues=eigenvalues,
                                fresh_jacobian=fresh_jacobian)
    n, d = W0.shape
    if data is None:
        objective = Objective(teacher, act, n)
    else:
        objective = EmpiricalObjective(teacher, act, n, data)
        options["samples"] = objective.N
    C = _Counter(objective)
    theta = pack(a0, W0)
    try:
        L, g = C.loss_and_gradient(theta)
    except ValueError as exc:
        raise ValueError(f"cannot start gradient flow: {exc}") from None
    rec = Recorder(trajectory_per_decade, record_parameters)
    rec.add(0.0, L, float(np.linalg.norm(g)), theta, force=True)
    stats = dict(ode_steps=0, ode_rejected=0, nfev=0, njev=0, nlu=0, rkc_stages=0,
                 switch_checks=0, newton_iterations=0, newton_restarts=0, methods=[])
    deadline = t_start + max_time
    ode = OdePhase(C, theta, L, g, n=n, k=teacher.k, d=d, method=method, tol=tol,
                   switch_gradient=switch_gradient, rtol=rtol, atol=atol, t_max=t_max,
                   deadline=deadline, relu=act.kind == "relu", recorder=rec, stats=stats,
                   fresh_jacobian=fresh_jacobian)
    end = _End()
    while True:
        event = ode.advance()
        if event is Event.CHECK:
            t_pol = time.perf_counter()
            _check(ode, C, act.kind, tol, max_polish_distance, max_newton_iterations, end)
            end.seconds += time.perf_counter() - t_pol
            if end.polish == "newton":
                break
            if not ode.out_of_time():
                continue
            event = Event.TIME_LIMIT
        break
    ode.close()
    if end.polish != "newton":
        t_pol = time.perf_counter()
        _finish(event, ode, C, tol, max_polish_distance, max_newton_iterations, max_time, end)
        end.seconds += time.perf_counter() - t_pol
    theta = end.theta if end.theta is not None else ode.theta
    if act.kind == "relu" and end.polish != "none":
        theta = _restore_balance(theta, n, d, a0**2 - np.sum(W0**2, axis=1))
    a, W = unpack(theta, n, d)
    L, g = C.loss_and_gradient(theta)
    gn = float(np.linalg.norm(g))
    t_ev = time.perf_counter()
    ev = _eigenvalues(C, theta) if eigenvalues else None
    t_ev = time.perf_counter() - t_ev
    failed = event in (Event.FAILED, Event.DYING)
    converged = not failed and bool(np.isfinite(gn)) and gn <= tol
    stop = Stop.CONVERGED if converged else end.stop
    message = end.message
    if not converged and not failed:
        message += f"; final gradient norm {gn:.2e} > tol {tol:.1e}" + rec.growth_note()
    stats.update(n_gradient_evaluations=C.n_grad, n_hessian_evaluations=C.n_hess)
    timings = dict(ode=ode.elapsed, polish=end.seconds, eigenvalues=t_ev,
                   total=time.perf_counter() - t_start, cpu=time.process_time() - cpu_start)
    return FlowResult(a=np.array(a), W=np.array(W), loss=float(L), grad_norm=gn,
                      converged=bool(converged), tol=float(tol), hessian_eigenvalues=ev,
                      trajectory=rec.result(), t_end=float(ode.t), stop=stop, message=message,
                      polish=end.polish, polish_distance=float(end.distance),
                      polish_loss_change=float(end.loss_change), stats=stats, timings=timings,
                      options=options)


class _End:
    """How the run ends: the polished point (if any), the stop reason and the message."""

    def __init__(self):
        self.theta = None
        self.polish, self.distance, self.loss_change = "none", 0.0, 0.0
        self.stop, self.message = Stop.NEWTON, ""
        self.seconds = 0.0


#: ODE events that end a run, and the stop reason they give when no polish finishes it.
_STOPS = {Event.T_MAX: Stop.T_MAX, Event.STALL: Stop.STALLED, Event.TIME_LIMIT: Stop.TIME_LIMIT,
          Event.FAILED: Stop.SOLVER_FAILED, Event.DYING: Stop.DYING_NEURON,
          Event.AT_TOL: Stop.CONVERGED}


def _check(ode: OdePhase, C: _Counter, kind, tol, max_polish_distance, max_iter, end: _End):
    """A CHECK event: is the flow in the quadratic basin of a minimum? Then polish."""
    stats, theta, gn = ode.stats, ode.theta, ode.gn
    stats["switch_checks"] += 1
    ode.t_checked = ode.t
    H = C.hessian(theta)
    fac = newton.cholesky(H, newton.shift_for(H, kind))
    del H
    if fac is None or not newton.quadratic_regime(C, theta, fac):
        ode.check_level = gn / 10
        return
    reach = max_polish_distance * max(1.0, float(np.linalg.norm(theta)))
    pol = newton.polish(C, theta, tol, max_iter=max_iter, max_distance=reach,
                        deadline=ode.deadline, kind=kind, fac0=fac)
    stats["newton_iterations"] += pol.iterations
    if not pol.keep:
        stats["newton_restarts"] += 1  # discard the Newton attempt, keep flowing
        ode.check_level = min(ode.check_level, gn) / 100
        return
    ode.rec.add(ode.t, ode.L, gn, theta, force=True)
    end.theta, end.polish, end.distance = pol.theta, "newton", pol.distance
    end.loss_change = pol.losses[-1] - pol.losses[0]
    end.stop = Stop.TIME_LIMIT if pol.end is newton.PolishEnd.TIME_LIMIT else Stop.NEWTON
    end.message = (f"flow to t = {ode.t:.3g}, then Newton ({pol.iterations} iterations): "
                   f"{pol.end.value}")


def _finish(event: Event, ode: OdePhase, C: _Counter, tol, max_polish_distance, max_iter,
            max_time, end: _End):
    """The ODE ended without a Newton polish: say why, and try to land on a critical point."""
    end.stop = _STOPS[event]
    t, gn = ode.t, ode.gn
    ode.rec.add(t, ode.L, gn, ode.theta, force=True)
    if event in (Event.FAILED, Event.DYING):
        end.message = ode.message
        return
    if event is Event.AT_TOL:
        end.message = f"gradient norm {gn:.2e} <= tol at t = {t:.3g} (a critical point)"
        return
    what = {Event.STALL: "stalled (steps shrank to nothing)", Event.T_MAX: "reached t_max",
            Event.TIME_LIMIT: "reached max_time"}[event]
    if gn > ode.switch_gradient:
        end.message = f"ODE {what} at t = {t:.3g} with gradient norm {gn:.2e}; no polish"
        return
    reach = max_polish_distance * max(1.0, float(np.linalg.norm(ode.theta)))
    found = newton.find_critical(C, ode.theta, tol, max_iter=max_iter, rcond=1e-10,
                                 rcond_floor=1.0, halvings=27,
                                 deadline=time.perf_counter() + 0.1 * max_time)
    ode.stats["newton_iterations"] += found.iterations
    if found.distance > reach:
        end.message = (f"ODE {what} at t = {t:.3g}; pseudo-inverse Newton moved "
                       f"{found.distance:.3g} > {reach:.3g} and was discarded")
        return
    end.theta, end.polish = found.theta, "critical"
    end.distance, end.loss_change = found.distance, found.loss_change
    end.message = (f"ODE {what} at t = {t:.3g} with no Newton polish kept; "
                   f"pseudo-inverse Newton on the gradient ({found.iterations} iterations)")


def _eigenvalues(C: _Counter, theta):
    """Ascending Hessian eigenvalues at theta, or None where they cannot be computed."""
    if not np.all(np.isfinite(theta)):
        return None
    try:
        return sla.eigh(C.hessian(theta), eigvals_only=True, check_finite=False)
    except (ValueError, sla.LinAlgError):
        return None


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


