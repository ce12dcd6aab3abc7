"""Which ODE solver? The same runs with each method of gradient_flow, side by side.

erf, unit-orthonormal teacher k = 50 (d = 51), Glorot initialization, a few
student widths; every run to |grad| <= 1e-12 with method = "auto" (RKC, then
float32-factorized BDF in very stiff stretches), "rkc", "bdf" and "lsoda"
(scipy's, with the exact closed-form Hessian as Jacobian), all with the same
rtol = 1e-4, atol = 1e-6 and the same Newton hand-over, each run limited to
--max-time seconds (default 120; RKC alone crawls through the very stiff tails
of the copy-average runs). Prints the time of
each (wall and CPU seconds; the ratio to "auto" in CPU seconds, which other
jobs on a shared machine disturb less), and the distance of each end point to the
"auto" end point; writes benchmarks/results/methods.json.

    python benchmarks/bench_methods.py [--n 10,25,40] [--methods auto,rkc,bdf,lsoda]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from copyaverage import Teacher  # noqa: E402
from copyaverage.__main__ import parse_range  # noqa: E402
from copyaverage.flow import gradient_flow, initialize  # noqa: E402
from _results import write_results  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--n", default="10,25,40")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="auto,rkc,bdf,lsoda")
    p.add_argument("--max-time", type=float, default=120.0,
                   help="wall-clock limit per run (a run that hits it is reported unconverged)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "methods.json"))
    args = p.parse_args(argv)
    T = Teacher.orthonormal(args.k)
    methods = args.methods.split(",")
    rows = []
    print(f"{'n':>3} {'method':>6} {'wall s':>8} {'cpu s':>7} {'x auto':>7} {'|grad|':>9} "
          f"{'dist to auto':>12} {'t_end':>9} {'steps':>6} {'nfev':>7} {'njev':>5} {'nlu':>5}")
    for n in parse_range(args.n):
        a0, W0 = initialize(n, T, "glorot", args.seed)
        ref = None
        for m in methods:
            r = gradient_flow(a0, W0, T, "erf", method=m, eigenvalues=False,
                              max_time=args.max_time)
            if ref is None:
                ref = r
            row = dict(n=n, method=m, time=r.timings["total"], cpu=r.timings["cpu"],
                       ode=r.timings["ode"], ratio_to_first=r.timings["cpu"] / ref.timings["cpu"],
                       grad_norm=r.grad_norm, converged=r.converged,
                       distance=float(np.linalg.norm(r.theta - ref.theta)), t_end=r.t_end,
                       stats=r.stats)
            rows.append(row)
            print(f"{n:>3} {m:>6} {row['time']:>8.2f} {row['cpu']:>7.2f} {row['ratio_to_first']:>7.1f} "
                  f"{r.grad_norm:>9.1e} {row['distance']:>12.1e} "
                  f"{r.t_end:>9.3g} {r.stats['ode_steps']:>6} {r.stats['nfev']:>7} "
                  f"{r.stats['njev']:>5} {r.stats['nlu']:>5}", flush=True)
    write_results(args.out, benchmark="methods", k=args.k, seed=args.seed, rows=rows,
                  load_average=os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
