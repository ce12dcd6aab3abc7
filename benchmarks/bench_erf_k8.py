"""Benchmark 1: one gradient-flow run, engine vs a straightforward implementation.

Setting: erf (the paper's erf(x / sqrt(2))), unit-orthonormal teacher k = 8 in
d = 9, student n = 7, std-0.1 Gaussian initialization. Both routes start from
the same initialization and must end at |grad| <= 1e-12.

Straightforward route: the autograd gradient and Hessian of the same loss
(copyaverage.gradient / copyaverage.hessian), scipy's solve_ivp with LSODA and
the Hessian as Jacobian (the same rtol = 1e-4, atol = 1e-6 as the engine; a
terminal event when |grad| <= 1e-6), then scipy.optimize.minimize with
method="trust-exact" (gtol = 1e-12), and, where trust-exact stops short of
1e-12 at round-off, plain Newton steps with the same autograd Hessian.

Engine: copyaverage.flow.gradient_flow with its defaults (closed-form
derivatives, RKC / BDF, Newton in the quadratic regime; it also computes the
Hessian spectrum at the end, which the straightforward route does not).

Both run in this process, one after the other, single-threaded BLAS. Prints
the wall time of each, their ratio (and the ratio of CPU times, less
disturbed by other jobs on a shared machine), and the distance between the two end points;
writes benchmarks/results/erf_k8.json.

    python benchmarks/bench_erf_k8.py [--seeds 0-4]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from copyaverage import Teacher, gradient, hessian, pack, population_loss, unpack  # noqa: E402
from copyaverage.__main__ import parse_range  # noqa: E402
from copyaverage.classify import classify  # noqa: E402
from copyaverage.flow import gradient_flow, initialize  # noqa: E402
from _results import write_results  # noqa: E402

K, N, D, TOL = 8, 7, 9, 1e-12


def straightforward(a0, W0, T, rtol=1e-4, atol=1e-6, switch=1e-6, t_max=1e10):
    """solve_ivp(LSODA, jac = autograd Hessian) until |g| <= switch, then trust-exact."""
    t0 = time.perf_counter()
    c0 = time.process_time()

    def f(th):
        return population_loss(*unpack(th, N, D), T, "erf")

    def g(th):
        return gradient(*unpack(th, N, D), T, "erf")

    def H(th):
        return hessian(*unpack(th, N, D), T, "erf")

    def event(t, y):
        return np.linalg.norm(g(y)) - switch

    event.terminal = True
    sol = solve_ivp(lambda t, y: -g(y), (0.0, t_max), pack(a0, W0), method="LSODA",
                    jac=lambda t, y: -H(y), rtol=rtol, atol=atol, events=event)
    t_ode = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(f, sol.y[:, -1], jac=g, hess=H, method="trust-exact",
                       options=dict(gtol=TOL, maxiter=1000))
    theta = res.x
    # trust-exact often stops a little above 1e-12 ("failure to predict improvement"
    # at round-off); finish with plain Newton steps on the same autograd Hessian
    newton = 0
    while np.linalg.norm(g(theta)) > TOL and newton < 20:
        theta = theta - np.linalg.solve(H(theta), g(theta))
        newton += 1
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return dict(theta=theta, loss=float(f(theta)), grad_norm=float(np.linalg.norm(g(theta))),
                time=total, cpu=cpu, time_ode=t_ode, t_end=float(sol.t[-1]), ode_nfev=int(sol.nfev),
                ode_njev=int(sol.njev), optimizer_iterations=int(res.nit),
                optimizer_message=str(res.message), extra_newton_steps=newton)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "erf_k8.json"))
    args = p.parse_args(argv)
    T = Teacher.orthonormal(K, D)
    rows = []
    print(f"{'seed':>4} {'baseline s':>10} {'engine s':>9} {'ratio':>6} {'cpu ratio':>9} {'|g| base':>9} "
          f"{'|g| eng':>9} {'distance':>9}  class")
    for seed in parse_range(args.seeds):
        a0, W0 = initialize(N, T, "gaussian", seed)
        gradient_flow(a0, W0, T, "erf")  # warm-up (imports, caches) not timed
        base = straightforward(a0, W0, T)
        t0, c0 = time.perf_counter(), time.process_time()
        eng = gradient_flow(a0, W0, T, "erf")
        t_eng, c_eng = time.perf_counter() - t0, time.process_time() - c0
        dist = float(np.linalg.norm(eng.theta - base["theta"]))
        label = classify(eng.a, eng.W, T, "erf", loss=eng.loss).label
        row = dict(seed=seed, baseline_s=base["time"], engine_s=t_eng,
                   baseline_cpu_s=base["cpu"], engine_cpu_s=c_eng,
                   ratio=base["time"] / t_eng, cpu_ratio=base["cpu"] / c_eng, baseline_grad_norm=base["grad_norm"],
                   engine_grad_norm=eng.grad_norm, distance=dist,
                   baseline_loss=base["loss"], engine_loss=eng.loss, label=label,
                   baseline_detail={k: v for k, v in base.items() if k != "theta"},
                   engine_stats=eng.stats, engine_timings=eng.timings)
        rows.append(row)
        print(f"{seed:>4} {base['time']:>10.2f} {t_eng:>9.3f} {row['ratio']:>6.1f} {row['cpu_ratio']:>9.1f} "
              f"{base['grad_norm']:>9.1e} {eng.grad_norm:>9.1e} {dist:>9.1e}  {label}", flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    cpu_ratios = np.array([r["cpu_ratio"] for r in rows])
    same = all(r["distance"] < 1e-8 for r in rows)
    both = all(r["engine_grad_norm"] <= TOL for r in rows)
    base_ok = all(r["baseline_grad_norm"] <= TOL for r in rows)
    print(f"speed-up (wall): first seed {ratios[0]:.1f}x, median {np.median(ratios):.1f}x, "
          f"min {ratios.min():.1f}x; (CPU): median {np.median(cpu_ratios):.1f}x, "
          f"min {cpu_ratios.min():.1f}x; same end points (distance < 1e-8): {same}; "
          f"engine |g| <= 1e-12: {both}; baseline |g| <= 1e-12: {base_ok}")
    write_results(args.out, benchmark="erf_k8", k=K, n=N, d=D, tol=TOL, rows=rows,
                  median_ratio=float(np.median(ratios)), min_ratio=float(ratios.min()),
                  median_cpu_ratio=float(np.median(cpu_ratios)),
                  min_cpu_ratio=float(cpu_ratios.min()), same_end_points=same,
                  load_average=os.getloadavg())
    return 0 if (same and both and ratios.min() >= 10) else 1


if __name__ == "__main__":
    sys.exit(main())
