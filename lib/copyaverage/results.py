"""What a gradient-flow run returns: :class:`FlowResult`, its :class:`Trajectory`,
and why it stopped (:class:`Stop`), as data that programs read.

This module holds no numerics, so that the result store and the pages can use the
types without importing the engine.

Why a run stopped
-----------------
``FlowResult.stop`` is one of the values below (a :class:`Stop`, which is also a
``str``); ``FlowResult.message`` says the same for people, with numbers. Programs
read ``stop`` (or ``status``/``converged``), never the message.

=============================  ==============================================================
``stop``                       meaning
=============================  ==============================================================
``converged``                  the final gradient norm is at most ``tol``: a critical point
``not_converged_time_limit``   the wall-clock budget ``max_time`` ran out first
``not_converged_t_max``        the flow time reached ``t_max`` first (e.g. weights that keep
                               growing towards a critical point at infinity)
``stalled``                    the ODE's steps shrank to nothing (2,000 steps advanced t by
                               less than 1 %) before a critical point was reached
``not_converged_newton``       Newton's method stopped above ``tol`` (its round-off floor,
                               its iteration limit, or a failed line search)
``dying_neuron``               ReLU: a student vector w_i reached 0, where the loss has no
                               gradient (the flow cannot be continued there)
``solver_failed``              the ODE solver could not take a step (its step size fell
                               below round-off, or the loss became non-finite)
=============================  ==============================================================

``status`` folds these into the three words used in tables: ``"converged"``,
``"failed"`` (``dying_neuron``, ``solver_failed``) and ``"not converged"`` (the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

__all__ = ["FlowResult", "Recorder", "STOP_MEANINGS", "Stop", "Trajectory"]


class Stop(str, Enum):
    """Why a gradient-flow run stopped (see the module docstring's table)."""

    CONVERGED = "converged"
    TIME_LIMIT = "not_converged_time_limit"
    T_MAX = "not_converged_t_max"
    STALLED = "stalled"
    NEWTON = "not_converged_newton"
    DYING_NEURON = "dying_neuron"
    SOLVER_FAILED = "solver_failed"

    def __str__(self) -> str:
        return self.value

    @property
    def status(self) -> str:
        """``"converged"``, ``"failed"`` or ``"not converged"``."""
        if self is Stop.CONVERGED:
            return "converged"
        if self in (Stop.DYING_NEURON, Stop.SOLVER_FAILED):
            return "failed"
        return "not converged"


#: One line per stop reason, for tables and legends.
STOP_MEANINGS = {
    Stop.CONVERGED: "gradient norm at most tol",
    Stop.TIME_LIMIT: "wall-clock budget max_time ran out",
    Stop.T_MAX: "flow time reached t_max",
    Stop.STALLED: "ODE steps shrank to nothing",
    Stop.NEWTON: "Newton stopped above tol",
    Stop.DYING_NEURON: "a ReLU student vector reached w = 0",
    Stop.SOLVER_FAILED: "the ODE solver could not take a step",
}


@dataclass
class Trajectory:
    """The flow sampled on a logarithmic time grid (about ``per_decade`` points
    per decade of t, plus t = 0 and the last ODE point).

    Attributes
    ----------
    t : ndarray, shape (m,)
        Flow times (t = 0 is the initialization).
    loss : ndarray, shape (m,)
    grad_norm : ndarray, shape (m,)
    theta : ndarray, shape (m, n (1 + d)) or None
        The parameters pack(a, W) at those times (None when not recorded).
    param_norm : ndarray, shape (m,)
        ``|theta|`` at those times (always recorded; shows weights that keep
        growing, as when two neurons merge with diverging outgoing weights).
    """

    t: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    theta: np.ndarray | None = None
    param_norm: np.ndarray | None = None

    def a(self, n: int) -> np.ndarray:
        """Outgoing weights along the trajectory, shape (m, n)."""
        return self.theta[:, :n]

    def W(self, n: int) -> np.ndarray:
        """Incoming vectors along the trajectory, shape (m, n, d)."""
        return self.theta[:, n:].reshape(len(self.t), n, -1)


@dataclass
class FlowResult:
    """The end point of :func:`~copyaverage.flow.gradient_flow` and how it was reached.

    Attributes
    ----------
    a : ndarray (n,)
    W : ndarray (n, d)
    loss : float
        Population loss at (a, W).
    grad_norm : float
        Euclidean norm of the gradient with respect to theta = (a, W).
    converged : bool
        True only if ``grad_norm <= tol`` (and the run did not fail).
    tol : float
    hessian_eigenvalues : ndarray (n (1 + d),) or None
        Ascending eigenvalues of the Hessian at the end point.
    trajectory : Trajectory
    t_end : float
        Flow time at which the ODE stopped.
    stop : Stop
        Why the run stopped (module docstring); ``status`` is derived from it.
    message : str
        What happened, in words, for people.
    polish : str
        ``"newton"`` (from a point with positive definite Hessian),
        ``"critical"`` (final pseudo-inverse Newton iteration) or ``"none"``.
    polish_distance : float
        Euclidean distance in theta moved by the Newton polish.
    polish_loss_change : float
        Loss after the polish minus the loss where it started (<= 0 up to round-off).
    stats : dict
        Solver statistics: ``ode_steps``, ``ode_rejected``, ``nfev``, ``njev``,
        ``nlu``, ``rkc_stages``, ``switch_checks``, ``newton_iterations``,
        ``newton_restarts``, ``methods`` (solvers used, in order).
    timings : dict
        Wall-clock seconds: ``ode``, ``polish``, ``eigenvalues``, ``total``;
        and ``cpu``, the CPU seconds of the whole run (this process, all
        threads): on a machine shared with other jobs it stays close to what
        ``total`` would be on an idle one.
    options : dict
        The options the run used (after defaults were filled in).
    """

    a: np.ndarray
    W: np.ndarray
    loss: float
    grad_norm: float
    converged: bool
    tol: float
    hessian_eigenvalues: np.ndarray | None
    trajectory: Trajectory
    t_end: float
    stop: Stop
    message: str
    polish: str = "none"
    polish_distance: float = 0.0
    polish_loss_change: float = 0.0
    stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        self.stop = Stop(self.stop)

    @property
    def status(self) -> str:
        """``"converged"``, ``"not converged"`` or ``"failed"`` (from ``stop``)."""
        return self.stop.status

    @property
    def theta(self) -> np.ndarray:
        return np.concatenate([np.ravel(self.a), np.ravel(self.W)])

    @property
    def n(self) -> int:
        return self.a.size

    @property
    def min_eigenvalue(self) -> float:
        """Smallest Hessian eigenvalue (nan if not computed)."""
        ev = self.hessian_eigenvalues
        return float(ev[0]) if ev is not None and len(ev) else float("nan")

    def __repr__(self) -> str:
        return (f"FlowResult(n={self.n}, loss={self.loss:.12g}, grad_norm={self.grad_norm:.2e}, "
                f"stop={self.stop.value}, t_end={self.t_end:.3g}, "
                f"time={self.timings.get('total', float('nan')):.2f}s)")


class Recorder:
    """Keeps ``(t, loss, |g|, theta, |theta|)`` on a geometric grid of flow times.

    Parameters
    ----------
    per_decade : int
        Points per decade of t (0: only the points added with ``force=True``).
    keep_theta : bool
        Keep the parameters themselves (else only their norm).
    """

    def __init__(self, per_decade: int, keep_theta: bool):
        self.ratio = 10.0 ** (1.0 / per_decade) if per_decade > 0 else np.inf
        self.keep_theta = keep_theta
        self.rows: list = []
        self.next_t = 0.0

    def add(self, t, L, gn, theta, force=False):
        """Record the point if its time is due on the grid (or ``force``)."""
        if force or t >= self.next_t:
            if self.rows and self.rows[-1][0] == t:
                return
            self.rows.append((t, L, gn, np.array(theta, copy=True) if self.keep_theta else None,
                              float(np.linalg.norm(theta))))
            self.next_t = t * self.ratio if t > 0 else 0.0

    def growth_note(self) -> str:
        """A remark when ``|theta|`` still grew over the last three decades of flow time."""
        t = np.array([r[0] for r in self.rows])
        norm = np.array([r[4] for r in self.rows])
        if len(t) < 2 or t[-1] < 1e6:
            return ""
        i = int(np.searchsorted(t, t[-1] / 1e3))
        if norm[-1] > 1.01 * norm[i]:
            return (f"; |theta| still grew from {norm[i]:.4g} to {norm[-1]:.4g} over the last "
                    "three decades of t: the flow may be heading to a critical point at infinity "
                    "(e.g. two neurons merging while their outgoing weights diverge)")
        return ""

    def result(self) -> Trajectory:
        t = np.array([r[0] for r in self.rows])
        L = np.array([r[1] for r in self.rows])
        gn = np.array([r[2] for r in self.rows])
        theta = np.array([r[3] for r in self.rows]) if self.keep_theta else None
        return Trajectory(t, L, gn, theta, np.array([r[4] for r in self.rows]))
