"""Benchmark 2: time per gradient-flow run against the number of parameters.

erf, unit-orthonormal teacher with k neurons in d = k + 1, Glorot-normal
initialization (as in the k = 50 experiment), students n = k/2 and n = k - 1,
k up to 50, a few seeds; each run to |grad| <= 1e-12 with the engine's
defaults, one after another in this process with single-threaded BLAS. For
each family (n = k/2, n = k - 1) fits time ~ P^alpha over the parameter count
P = n (d + 1) by least squares on log-log scale (medians over the seeds).

Side by side, for each size: the time of one closed-form Hessian
(copyaverage.derivatives) against one autograd Hessian (copyaverage.hessian)
of the same loss, while the latter takes under a minute.

    python benchmarks/bench_scale.py [--k 4,8,12,16,24,32,40,50] [--seeds 0-2]

Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from copyaverage import Teacher, hessian, pack  # noqa: E402
from copyaverage.__main__ import parse_range  # noqa: E402
from copyaverage.derivatives import Objective  # noqa: E402
from copyaverage.flow import gradient_flow, initialize  # noqa: E402
from _results import write_results  # noqa: E402


def _hessian_times(T, n, a0, W0, autograd_ok):
    ob = Objective(T, "erf", n)
    th = pack(a0, W0)
    ob.hessian(th)
    t0 = time.perf_counter()
    reps = 3
    for _ in range(reps):
        ob.hessian(th)
    closed = (time.perf_counter() - t0) / reps
    auto = None
    if autograd_ok:
        t0 = time.perf_counter()
        hessian(a0, W0, T, "erf")
        auto = time.perf_counter() - t0
    return closed, auto


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", default="4,8,12,16,24,32,40,50")
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = p.parse_args(argv)
    rows = []
    auto_ok = True
    print(f"{'family':>7} {'k':>3} {'n':>3} {'P':>5} {'median s':>9} {'cpu s':>7} {'runs s':>24} "
          f"{'conv':>4} {'H closed s':>10} {'H autograd s':>12} {'ratio':>7}")
    for k in parse_range(args.k):
        T = Teacher.orthonormal(k)
        for family, n in (("k/2", max(1, k // 2)), ("k-1", k - 1)):
            times, cpus, conv = [], [], []
            for seed in parse_range(args.seeds):
                a0, W0 = initialize(n, T, "glorot", seed)
                r = gradient_flow(a0, W0, T, "erf")
                times.append(r.timings["total"])
                cpus.append(r.timings["cpu"])
                conv.append(r.converged)
            a0, W0 = initialize(n, T, "glorot", 0)
            h_closed, h_auto = _hessian_times(T, n, a0, W0, auto_ok)
            if h_auto is not None and h_auto > 60:
                auto_ok = False  # larger sizes would take far longer
            P = n * (k + 2)
            row = dict(family=family, k=k, n=n, P=P, times=times, median=float(np.median(times)),
                       cpu_times=cpus, median_cpu=float(np.median(cpus)),
                       converged=all(conv), hessian_closed_s=h_closed, hessian_autograd_s=h_auto)
            rows.append(row)
            ratio = f"{h_auto / h_closed:7.0f}" if h_auto else "      -"
            auto = f"{h_auto:12.3f}" if h_auto else "           -"
            print(f"{family:>7} {k:>3} {n:>3} {P:>5} {row['median']:>9.3f} {row['median_cpu']:>7.3f} "
                  f"{' '.join(f'{t:.2f}' for t in times):>24} {str(all(conv)):>4} "
                  f"{h_closed:>10.4f} {auto} {ratio}", flush=True)
    fits = {}
    for family in ("k/2", "k-1"):
        sel = [r for r in rows if r["family"] == family and r["P"] >= 100]
        x = np.log([r["P"] for r in sel])
        y = np.log([r["median"] for r in sel])
        alpha, c = np.polyfit(x, y, 1)
        alpha_cpu, c_cpu = np.polyfit(x, np.log([r["median_cpu"] for r in sel]), 1)
        fits[family] = dict(alpha=float(alpha), prefactor=float(np.exp(c)), points=len(sel),
                            alpha_cpu=float(alpha_cpu), prefactor_cpu=float(np.exp(c_cpu)))
        print(f"n = {family}: time per run ~ {np.exp(c):.2e} * P^{alpha:.2f} (wall), "
              f"{np.exp(c_cpu):.2e} * P^{alpha_cpu:.2f} (CPU); fit over {len(sel)} sizes "
              f"with P >= 100")
    write_results(args.out, benchmark="scale", rows=rows, fits=fits,
                  load_average=os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
