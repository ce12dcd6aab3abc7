"""The ODE phase of gradient flow: solver choice, the RKC -> BDF switch, and the
tests between steps that end the phase with a named :class:`Event`.

:class:`OdePhase` follows d theta / dt = -grad L(theta) with scipy's ODE solver
objects (:class:`scipy.integrate.OdeSolver`, the machinery behind
:func:`scipy.integrate.solve_ivp`), one step at a time, and returns from
:meth:`OdePhase.advance` when something needs deciding by the driver
(:func:`copyaverage.flow.gradient_flow`). Methods:

``"auto"`` (default)
    :class:`copyaverage.rkc.RKC`, a stabilized explicit Runge-Kutta-Chebyshev
    solver (s gradients per step, no Hessian, no factorization), while its
    steps are cheap; when the flow enters a very stiff stretch, scipy's ``BDF``
    with the exact Hessian as Jacobian takes over, its linear systems factorized
    in single precision (:class:`Float32BDF`; ``stats["methods"]`` then reads
    ``["rkc", "bdf32"]``). The switch happens when one RKC step costs more than
    0.3 times one Hessian plus one factorization, by a fixed cost model
    (:func:`cost_model`), so that runs are deterministic.
    Small smooth problems (at most ``BDF_FIRST_MAX_PARAMS`` parameters, not
    ReLU) use scipy's ``BDF`` from the start: there a Hessian costs about as much
    as a few gradients, and BDF needs ~150-250 steps and ~500 gradients where
    RKC needs ~300 steps and ~2,000-3,500 gradient evaluations (the book's
    k <= 12 grids; measured by ``benchmarks/bench_engine_versions.py`` against commit
    7e65b55 and by ``benchmarks/bench_peers.py``).
``"rkc"``, ``"bdf"``, ``"lsoda"``, ``"radau"``
    One solver throughout (the implicit ones with the exact Hessian as Jacobian).

A trial point with non-finite values inside a step (an overflow, or a ReLU
student vector exactly at 0 where the gradient does not exist) makes the
right-hand side NaN, which the solvers treat as a rejected step and retry with
a shorter one; only *accepted* points are tested below.

The events, tested after every accepted step in this order:

============  ==============================================================
event         when
============  ==============================================================
FAILED        the solver could not take a step, or the loss is not finite
DYING         ReLU: some ``|w_i| < 1e-6 max(max_j |w_j|, max_j |w_j(0)|)``:
              a student vector reaches 0 (where the loss has no gradient)
STALL         2,000 steps advanced t by less than 1 %
AT_TOL        the gradient norm is already at most ``tol`` (also at t = 0:
              a start at a critical point ends at once)
CHECK         the gradient norm fell to the current check level, or the flow
              time doubled since the last check while ``|g| <= switch_gradient``
TIME_LIMIT    the wall-clock deadline passed
T_MAX         the flow time reached t_max (tested before each step)
============  ==============================================================

After a CHECK the driver lowers or raises :attr:`OdePhase.check_level`; when
the gradient norm climbs 100-fold above the level (the flow left a plateau)
the level is reset to ``min(switch_gradient, |g| / 10)``.
"""

from __future__ import annotations

import time
import warnings
from enum import Enum

import numpy as np
import scipy.linalg as sla
from scipy.integrate import BDF, LSODA, Radau

from .rkc import RKC

__all__ = ["METHODS", "Event", "Float32BDF", "OdePhase", "cost_model"]

#: The ODE methods :class:`OdePhase` accepts (see the module docstring).
METHODS = ("auto", "rkc", "bdf", "lsoda", "radau")
_SCIPY_SOLVERS = {"bdf": BDF, "lsoda": LSODA, "radau": Radau}
#: "auto" hands over from RKC to BDF when an RKC step costs more than this
#: many (modelled) Hessian-plus-factorization times.
SWITCH_FACTOR = 0.3
#: "auto" uses BDF from the start for smooth activations with at most this many
#: parameters n (d + 1) (all of the book's k <= 12 grids).
BDF_FIRST_MAX_PARAMS = 160
#: A run stalls when STALL_STEPS ODE steps advanced t by less than 1 %.
STALL_STEPS = 2000
#: ReLU: a student vector shorter than this fraction of the scale is dying.
DEAD_FRACTION = 1e-6


class Event(str, Enum):
    """Why :meth:`OdePhase.advance` returned (module docstring table)."""

    FAILED = "solver_failed"
    DYING = "dying_neuron"
    STALL = "stall"
    AT_TOL = "at_tolerance"
    CHECK = "check"
    TIME_LIMIT = "time_limit"
    T_MAX = "t_max"


def cost_model(n, k, d):
    """Modelled seconds of one gradient and of one Hessian plus factorization.

    A fixed model (fitted on the development machine, one BLAS thread) rather
    than timings measured during the run, so that the RKC -> BDF switch, and
    with it the run, is deterministic.
    """
    N = n * (d + 1)
    t_grad = 4e-5 + 6e-10 * n * (n + k) * d
    t_jac = 1e-3 + 1.6e-8 * (n * d) ** 2 + 1e-11 * N**3  # closed-form Hessian, float32 LU
    return t_grad, t_jac


class Float32BDF(BDF):
    """scipy's BDF with its linear systems factorized in single precision.

    The matrices I - c J (J = -H) are factorized by float32 Cholesky (they are
    positive definite except near saddles, where float32 LU takes over, and
    float64 LU where float32 LU finds the matrix singular), about twice as fast
    as float64 LU. The factor is only used inside BDF's simplified Newton
    iteration, whose convergence (and the local error test) is checked in double
    precision, so the solution keeps double accuracy; a poor factor only costs
    an extra Jacobian update or a shorter step.

    ``fresh_jacobian=True`` (off by default) mends a waste in scipy's step control:
    when a Newton solve fails with a Jacobian evaluated for that step, scipy halves the
    step, up to ten times in a row, and keeps that Jacobian, although it was evaluated at
    the predicted point of the failed, longer step, often far from the new one; Newton
    then fails again at every halving (``benchmarks/diagnose_bdf_newton.py``). With the
    option, a factorization requested for a halved step (step size exactly half the last
    one, with the same Jacobian) is made of ``I - c J`` with J evaluated afresh at the
    halved step's predicted point, and later factorizations use that Jacobian until scipy
    evaluates its next one. Newton then converges at the first halving (at k = 70, n = 32
    it needed 165 factorizations instead of 303). It changes the trajectory at the level
    of the solver's tolerances, so runs with and without it may end at different
    (equally valid) points where the flow passes close to a saddle.
    """

    def __init__(self, *args, fresh_jacobian: bool = False, **kwargs):
        super().__init__(*args, **kwargs)

        def lu(A):
            self.nlu += 1
            A32 = np.asarray(A, dtype=np.float32)
            c, info = sla.lapack.spotrf(A32, lower=False, clean=False, overwrite_a=False)
            if info == 0:
                return ("cholesky", c)
            lu_, piv, info = sla.lapack.sgetrf(A32, overwrite_a=True)
            if info == 0:
                return ("lu", (lu_, piv))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # singular: the step will be rejected
                return ("lu64", sla.lu_factor(A, check_finite=False))

        def solve_lu(factor, b):
            kind, f = factor
            if kind == "lu64":
                return sla.lu_solve(f, b, check_finite=False)
            b32 = np.asarray(b, dtype=np.float32)
            if kind == "cholesky":
                x, _ = sla.lapack.spotrs(f, b32, lower=False)
            else:
                x, _ = sla.lapack.sgetrs(f[0], f[1], b32)
            return x.astype(np.float64)

        self.lu = lu
        self.solve_lu = solve_lu
        if fresh_jacobian:
            self._refresh_jacobian_on_halving()

    def _refresh_jacobian_on_halving(self):
        """Wrap ``jac`` and ``lu`` as the class docstring describes (fresh_jacobian)."""
        jac, lu = self.jac, self.lu
        state = {"scipy_J": self.J, "own_J": None, "last": None}

        def tracked_jac(t, y):
            J = jac(t, y)
            state["scipy_J"], state["own_J"] = J, None
            return J

        def refreshing_lu(A):
            J = state["scipy_J"]  # scipy's A is I - c J with this J
            i = int(np.argmax(np.abs(np.diag(J))))
            c = (1.0 - A[i, i]) / J[i, i]
            last = state["last"]
            if last is not None and last[0] is J and abs(c / last[1] - 0.5) < 1e-9:
                # a halving after a failed Newton solve: scipy's D and order already
                # describe the halved step, so its predicted point is theirs to sum
                y_predict = np.sum(self.D[: self.order + 1], axis=0)
                t_new = self.t + c * self.alpha[self.order]
                state["own_J"] = jac(t_new, y_predict)
            state["last"] = (J, c)
            if state["own_J"] is not None:
                A = self.I - c * state["own_J"]
            return lu(A)

        self.jac, self.lu = tracked_jac, refreshing_lu


class OdePhase:
    """Gradient flow stepped by an ODE solver until an :class:`Event`.

    Parameters
    ----------
    objective : object
        With ``loss_and_gradient(theta)``, ``rhs(t, theta)`` (NaN for points
        without a finite gradient) and ``jac(t, theta)``.
    theta : ndarray
        Start.
    L, g : float, ndarray
        Loss and gradient at the start.
    n, k, d : int
        Student width, teacher width, input dimension (for the cost model and
        the dying-neuron test).
    method : str
        One of :data:`METHODS`.
    tol, switch_gradient : float
        Gradient-norm tolerance and the level below which checks happen.
    rtol, atol, t_max : float
        ODE solver options.
    deadline : float
        ``time.perf_counter()`` value of the wall-clock budget.
    relu : bool
        Test for dying neurons.
    recorder : copyaverage.results.Recorder
        Receives every accepted point.
    stats : dict
        Solver statistics, updated in place.
    fresh_jacobian : bool
        Passed to :class:`Float32BDF` (the stiff phase of ``"auto"``).

    Attributes
    ----------
    t, theta, L, gn : the last accepted point, its loss and gradient norm.
    check_level : float
        Next gradient norm at which a CHECK happens.
    t_checked : float
        Flow time of the last check.
    message : str
        The solver's message after FAILED.
    """

    def __init__(self, objective, theta, L, g, *, n, k, d, method, tol, switch_gradient,
                 rtol, atol, t_max, deadline, relu, recorder, stats,
                 fresh_jacobian=False):
        self.ob = objective
        self.fresh_jacobian = bool(fresh_jacobian)
        self.t, self.theta, self.L = 0.0, theta, L
        self.gn = float(np.linalg.norm(g))
        self.n, self.k, self.d = n, k, d
        self.method, self.current = method, method
        if method == "auto":
            small = n * (d + 1) <= BDF_FIRST_MAX_PARAMS and not relu
            self.current = "bdf" if small else "rkc"
        self.tol, self.switch_gradient = tol, float(switch_gradient)
        self.rtol, self.atol, self.t_max, self.deadline = rtol, atol, t_max, deadline
        self.relu = relu
        self.rec, self.stats = recorder, stats
        self.check_level = float(switch_gradient)
        self.t_checked = np.inf
        self.message = ""
        self.elapsed = 0.0
        self._solver = None
        self._h_last = None
        self._stall_t: list = []
        self._w_scale = float(self._norms(theta).max())

    # -------------------------------------------------------------- public --
    def advance(self) -> Event:
        """Step until an event; return it (the state is the last accepted point)."""
        start = time.perf_counter()
        try:
            if self.stats["ode_steps"] == 0 and self.gn <= self.tol:
                return Event.AT_TOL
            while True:
                event = self._step()
                if event is not None:
                    return event
        finally:
            self.elapsed += time.perf_counter() - start

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline

    def close(self):
        """Add the current solver's statistics to ``stats`` (once)."""
        s = self._solver
        if s is None:
            return
        st = self.stats
        st["nfev"] += int(s.nfev)
        st["njev"] += int(getattr(s, "njev", 0))
        st["nlu"] += int(getattr(s, "nlu", 0))
        if self.current == "rkc":
            st["ode_rejected"] += int(s.n_rejected)
            st["rkc_stages"] += int(s.total_stages)
        self._h_last = getattr(s, "h_abs", None)
        self._solver = None

    # ------------------------------------------------------------ internal --
    def _step(self) -> Event | None:
        if self._solver is None:
            self._solver = self._make_solver()
            self.stats["methods"].append(self.current)
        solver = self._solver
        if solver.status == "finished":
            return Event.T_MAX
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                msg = solver.step()
            except ValueError as exc:  # e.g. a Jacobian at a ReLU point with w_i = 0
                self.message = f"ODE solver failed: {exc}"
                return Event.FAILED
        if solver.status == "failed":
            self.message = f"ODE solver failed: {msg}"
            return Event.FAILED
        st = self.stats
        st["ode_steps"] += 1
        if st["ode_steps"] % STALL_STEPS == 0:
            self._stall_t.append(solver.t)
        self.t, self.theta = solver.t, solver.y
        self.L, g = self.ob.loss_and_gradient(self.theta)
        gn = self.gn = float(np.linalg.norm(g))
        self.rec.add(self.t, self.L, gn, self.theta)
        event = None
        if not np.isfinite(self.L):
            self.message = "ODE solver failed: non-finite loss"
            event = Event.FAILED
        elif self.relu and (dead := self._dying()) is not None:
            self.message = (f"student neuron {dead} reached w = 0, where the ReLU loss is not "
                            "differentiable (a dying neuron)")
            event = Event.DYING
        elif self._stalled():
            event = Event.STALL
        elif gn <= self.tol:
            event = Event.AT_TOL
        elif gn <= self.check_level or (gn <= self.switch_gradient and self.t >= 2 * self.t_checked):
            event = Event.CHECK
        elif time.perf_counter() > self.deadline:
            event = Event.TIME_LIMIT
        elif self._rkc_too_expensive():
            self.close()
            self.current = "bdf32"
        if gn > 100 * self.check_level and self.check_level < self.switch_gradient:
            self.check_level = min(self.switch_gradient, gn / 10)  # left a plateau
        return event

    def _make_solver(self):
        kw = {}
        h = self._h_last
        if h is not None and np.isfinite(h) and h > 0:
            kw["first_step"] = min(h, self.t_max - self.t)
        ob, t0, y0 = self.ob, self.t, self.theta
        if self.current == "rkc":
            return RKC(ob.rhs, t0, y0, self.t_max, rtol=self.rtol, atol=self.atol, **kw)
        if self.current == "bdf32":
            return Float32BDF(ob.rhs, t0, y0, self.t_max, rtol=self.rtol, atol=self.atol,
                              jac=ob.jac, fresh_jacobian=self.fresh_jacobian, **kw)
        cls = _SCIPY_SOLVERS[self.current]
        return cls(ob.rhs, t0, y0, self.t_max, rtol=self.rtol, atol=self.atol, jac=ob.jac, **kw)

    def _rkc_too_expensive(self) -> bool:
        s = self._solver
        if self.current != "rkc" or self.method != "auto" or s.stages <= 50:
            return False
        t_grad, t_jac = cost_model(self.n, self.k, self.d)
        return s.stages * t_grad > SWITCH_FACTOR * t_jac

    def _stalled(self) -> bool:
        st = self._stall_t
        return len(st) >= 2 and st[-1] - st[-2] < 0.01 * abs(st[-1])

    def _norms(self, theta):
        W = theta[self.n:].reshape(self.n, -1)
        return np.sqrt(np.einsum("id,id->i", W, W))

    def _dying(self):
        norms = self._norms(self.theta)
        scale = max(float(norms.max()), self._w_scale, 1e-300)
        small = np.flatnonzero(norms < DEAD_FRACTION * scale)
        return int(small[0]) if small.size else None
