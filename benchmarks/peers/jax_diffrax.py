"""Peer (b): gradient flow written in JAX, solved with diffrax, finished by Newton.

The erf loss (sigma(x) = erf(x / sqrt 2)) in jax.numpy, from the closed form of the
pair interaction for x ~ N(0, I):

    E[sigma(w.x) sigma(v.x)] = (2/pi) arcsin( w.v / sqrt((1 + |w|^2) (1 + |v|^2)) ),

    L(a, W) = a' G(W, W) a - 2 a' G(W, V) b + b' G(V, V) b,

theta = (a_1..a_n, w_1, ..., w_n) as in copyaverage. Gradient by ``jax.grad``,
Hessian by ``jax.hessian``. The flow d theta/dt = -grad L(theta) is solved by
``diffrax.diffeqsolve`` with an ESDIRK method (Kvaerno5 or Kvaerno4), a
``PIDController`` (rtol 1e-4, atol 1e-6 as in the engine) and diffrax's own
implicit stages: their Newton-chord iteration linearises -grad L once per step with
``jax.jacfwd``, i.e. the exact Jacobian -H (the same forward-over-reverse product
that ``jax.hessian`` computes). A terminating ``diffrax.Event`` stops the flow when
|grad L| <= ``switch`` (default 1e-3), or when a deadline has passed (CPU seconds of
the process, checked by an ``io_callback`` at every step); otherwise the flow runs to
``t_max``.
Then Newton's method, theta <- theta - H^{-1} grad L with ``jax.hessian``, inside a
``lax.while_loop``, until |grad L| <= ``tol`` (1e-12), 30 iterations, the deadline,
three steps in a row that do not lower the smallest |grad L| so far (round-off floor;
Newton is not monotone in |grad L| along the flattest directions: at k = 50, n = 10
the Hessian's condition number is 1.4e9), or divergence (|grad L| non-finite or 100
times its starting value); the iterate with the smallest |grad L| is its result.

If Newton does not reach ``tol``, the flow goes on from where it stopped (not from
Newton's iterate) to a tenfold lower level, and Newton tries again; down to
``min_switch`` (1e-9). Without these retries the recipe fails where |grad L| falls
below 1e-3 long before the quadratic regime: at k = 50, n = 10, seed 0 the Hessian is
positive definite at the 1e-3 hand-over (t = 8.6e3) but the flow's end point is still
a distance 23 away (it ends at t = 7e6), and Newton diverges (to NaN). There is no
line search and no positive-definiteness test (the engine has both).

Both phases are compiled ahead of time (``jax.jit(...).lower(...).compile()``) when
the peer is built, so :attr:`JaxDiffraxPeer.compile_seconds` is the compile time
(wall; tracing and lowering included; split in ``compile_detail``;
``compile_cpu_seconds`` in CPU seconds) and every
:meth:`JaxDiffraxPeer.run` is a steady-state call with the same shapes.

JAX must run in double precision on one CPU thread; :func:`configure` sets the
environment for that and must run before jax is imported (``bench_peers.py`` calls it
first thing).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

_ENV = {
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def configure() -> None:
    """Set JAX's environment (CPU, one thread); call before jax is imported."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)


def available() -> str | None:
    """None if jax and diffrax import, else the reason why not (for the skip message)."""
    try:
        import diffrax  # noqa: F401
        import jax  # noqa: F401
    except ImportError as exc:
        return f"{exc}; install them with `pip install jax diffrax`"
    return None


def versions() -> dict:
    """Versions of jax, jaxlib, diffrax, equinox, lineax, optimistix."""
    out = {}
    for name in ("jax", "jaxlib", "diffrax", "equinox", "lineax", "optimistix"):
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            out[name] = None
    return out


def _jax():
    configure()
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def erf_loss_function(b, V, n: int):
    """The population loss theta -> L for erf(x / sqrt 2), as a jax function.

    Parameters
    ----------
    b : array_like, shape (k,)
        Teacher outgoing weights.
    V : array_like, shape (k, d)
        Teacher incoming vectors as rows.
    n : int
        Number of student neurons; theta has shape (n (1 + d),).
    """
    jax = _jax()
    jnp = jax.numpy
    V = jnp.asarray(V, dtype=jnp.float64)
    b = jnp.asarray(b, dtype=jnp.float64)
    d = V.shape[1]

    def pair(W, U):
        p = 1.0 + jnp.sum(W * W, axis=1)
        q = 1.0 + jnp.sum(U * U, axis=1)
        return (2.0 / math.pi) * jnp.arcsin((W @ U.T) / jnp.sqrt(p[:, None] * q[None, :]))

    const = b @ pair(V, V) @ b

    def loss(theta):
        a, W = theta[:n], theta[n:].reshape(n, d)
        return a @ pair(W, W) @ a - 2.0 * a @ pair(W, V) @ b + const

    return loss


class JaxDiffraxPeer:
    """Flow (diffrax) + Newton (jax.hessian) for one problem size, compiled once.

    Parameters
    ----------
    teacher : copyaverage.Teacher
    n : int
        Number of student neurons.
    solver : {"kvaerno5", "kvaerno4"}
    rtol, atol : float
        Tolerances of the PID step-size controller.
    switch : float
        The first level: the flow stops when |grad L| <= switch.
    min_switch : float
        The last level (levels are switch, switch / 10, ..., min_switch).
    t_max : float
        Flow time at which the flow stops anyway.
    tol : float
        Newton stops when |grad L| <= tol.
    max_newton : int
        Newton iterations per attempt at most.
    max_steps : int
        diffrax's step limit per flow segment.
    """

    def __init__(self, teacher, n: int, solver: str = "kvaerno5", rtol: float = 1e-4,
                 atol: float = 1e-6, switch: float = 1e-3, min_switch: float = 1e-9,
                 t_max: float = 1e12, tol: float = 1e-12, max_newton: int = 30,
                 max_steps: int = 1_000_000):
        jax = _jax()
        import diffrax
        from jax.experimental import io_callback

        jnp, lax = jax.numpy, jax.lax
        solvers = {"kvaerno5": diffrax.Kvaerno5, "kvaerno4": diffrax.Kvaerno4}
        if solver not in solvers:
            raise ValueError(f"unknown solver {solver!r}; known: {', '.join(solvers)}")
        self.solver, self.n, self.d = solver, int(n), teacher.d
        self.size = self.n * (1 + self.d)
        self.options = dict(rtol=rtol, atol=atol, switch=switch, min_switch=min_switch,
                            t_max=t_max, tol=tol, max_newton=max_newton, max_steps=max_steps)
        loss = erf_loss_function(teacher.a, teacher.V, self.n)
        grad = jax.grad(loss)
        hess = jax.hessian(loss)

        def past(deadline):
            return np.bool_(time.process_time() > deadline)

        def late(deadline):
            return io_callback(past, jax.ShapeDtypeStruct((), jnp.bool_), deadline,
                               ordered=False)

        def stop_flow(t, y, args, **kwargs):
            level, deadline = args
            return (jnp.linalg.norm(grad(y)) <= level) | late(deadline)

        def flow(theta0, t0, level, deadline):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(lambda t, y, args: -grad(y)), solvers[solver](),
                t0, t_max, None, theta0, args=(level, deadline),
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                event=diffrax.Event(stop_flow), max_steps=max_steps, throw=False)
            y = sol.ys[-1]
            return dict(theta=y, t=sol.ts[-1], grad_norm=jnp.linalg.norm(grad(y)),
                        steps=sol.stats["num_steps"],
                        accepted=sol.stats["num_accepted_steps"],
                        rejected=sol.stats["num_rejected_steps"],
                        event=sol.result == diffrax.RESULTS.event_occurred,
                        max_steps_reached=sol.result == diffrax.RESULTS.max_steps_reached)

        def newton(theta0, deadline):
            g0 = grad(theta0)
            gn0 = jnp.linalg.norm(g0)

            def cond(c):
                _, _, _, best_gn, i, fails, diverged, out_of_time = c
                return ((best_gn > tol) & (i < max_newton) & (fails < 3) & ~diverged
                        & ~out_of_time)

            def body(c):
                th, g, best, best_gn, i, fails, _, _ = c
                new = th - jnp.linalg.solve(hess(th), g)
                g_new = grad(new)
                gn_new = jnp.linalg.norm(g_new)
                better = gn_new < best_gn
                diverged = ~jnp.isfinite(gn_new) | (gn_new > 100.0 * gn0)
                return (new, g_new, jnp.where(better, new, best),
                        jnp.where(better, gn_new, best_gn), i + 1,
                        jnp.where(better, 0, fails + 1), diverged, late(deadline))

            _, _, best, best_gn, i, _, diverged, out_of_time = lax.while_loop(
                cond, body, (theta0, g0, theta0, gn0, 0, 0, False, False))
            return dict(theta=best, grad_norm=best_gn, iterations=i, loss=loss(best),
                        diverged=diverged, out_of_time=out_of_time)

        f64 = jax.ShapeDtypeStruct((), jnp.float64)
        theta = jax.ShapeDtypeStruct((self.size,), jnp.float64)
        self.compile_detail = {}

        def grad_norm(th):
            return jnp.linalg.norm(grad(th))

        for name, fn, spec in (("flow", flow, (theta, f64, f64, f64)),
                               ("newton", newton, (theta, f64)), ("loss", loss, (theta,)),
                               ("grad_norm", grad_norm, (theta,))):
            t0, c0 = time.perf_counter(), time.process_time()
            lowered = jax.jit(fn).lower(*spec)
            t1 = time.perf_counter()
            setattr(self, "_" + name, lowered.compile())
            self.compile_detail[name] = dict(trace_lower_s=t1 - t0,
                                             compile_s=time.perf_counter() - t1,
                                             cpu_s=time.process_time() - c0)
        detail = self.compile_detail.values()
        self.compile_seconds = sum(v["trace_lower_s"] + v["compile_s"] for v in detail)
        self.compile_cpu_seconds = sum(v["cpu_s"] for v in detail)

    def run(self, theta0, max_seconds: float = 300.0) -> dict:
        """Flow from theta0, then Newton (retried at lower levels); seconds, end point.

        ``stop`` is ``"converged"`` (|grad| <= tol), ``"capped"`` (the deadline,
        ``max_seconds`` CPU seconds after the start, stopped the flow or Newton),
        ``"t_max"`` or ``"max_steps"`` (the flow ended without reaching a level; Newton
        was tried once from there) or ``"newton_failed"`` (no attempt reached tol down
        to ``min_switch``). ``attempts`` lists, per level, the flow time, |grad| at the
        hand-over, Newton's iterations and its final |grad|.
        """
        jax = _jax()
        opt = self.options

        def as_np(tree):
            return jax.tree_util.tree_map(np.asarray, jax.block_until_ready(tree))

        t0, c0 = time.perf_counter(), time.process_time()
        deadline = np.float64(c0 + max_seconds)  # CPU seconds of this process
        theta, t, drop = np.asarray(theta0, dtype=float), 0.0, 0

        def level():  # switch, switch / 10, ..., min_switch
            return max(opt["switch"] / 10.0**drop, opt["min_switch"])

        steps = accepted = rejected = 0
        attempts, stop, nw, flow_s = [], None, None, 0.0
        while stop is None:
            gn = float(self._grad_norm(theta))
            while level() >= gn and level() > opt["min_switch"]:  # already below this level
                drop += 1
            t1 = time.perf_counter()
            fl = as_np(self._flow(theta, np.float64(t), np.float64(level()), deadline))
            flow_s += time.perf_counter() - t1
            steps += int(fl["steps"])
            accepted += int(fl["accepted"])
            rejected += int(fl["rejected"])
            theta, t, nw = np.array(fl["theta"]), float(fl["t"]), None
            if bool(fl["event"]) and float(fl["grad_norm"]) > level():
                stop = "capped"  # the event fired on the deadline, not on the level
                break
            nw = as_np(self._newton(theta, deadline))
            attempts.append(dict(level=level(), t=t, grad_norm=float(fl["grad_norm"]),
                                 newton_iterations=int(nw["iterations"]),
                                 newton_grad_norm=float(nw["grad_norm"]),
                                 newton_diverged=bool(nw["diverged"])))
            if float(nw["grad_norm"]) <= opt["tol"]:
                stop = "converged"
            elif bool(nw["out_of_time"]):
                stop = "capped"
            elif bool(fl["max_steps_reached"]):
                stop = "max_steps"
            elif not bool(fl["event"]):
                stop = "t_max"
            elif level() <= opt["min_switch"]:
                stop = "newton_failed"
            else:
                drop += 1  # Newton failed here: flow on to a tenfold lower level
        # the end point: Newton's last iterate where it improved on the flow's end
        end, end_gn = theta, float(self._grad_norm(theta))
        if nw is not None and np.isfinite(nw["grad_norm"]) and float(nw["grad_norm"]) < end_gn:
            end, end_gn = np.array(nw["theta"]), float(nw["grad_norm"])
        loss = float(self._loss(end))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return dict(theta=end, loss=loss, grad_norm=end_gn, wall_s=wall, cpu_s=cpu,
                    capped=stop == "capped", stop=stop, flow_s=flow_s, t_end=t,
                    ode_steps=steps, ode_accepted=accepted, ode_rejected=rejected,
                    newton_attempts=len(attempts), attempts=attempts)
