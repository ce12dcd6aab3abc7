"""Run a fixed sample of gradient flows and save their end points (engine regression check).

Used to compare two versions of the engine from the same starts: run it once with
each version on the path (e.g. ``PYTHONPATH=<old checkout>/lib``) and compare the
saved end points with ``--compare``. Also the workload timed by ``farm-bench`` in
benchmarks/README.md. Single-threaded BLAS, runs one after another.

    python benchmarks/engine_sample.py --set small --out /tmp/new.npz
    python benchmarks/engine_sample.py --compare /tmp/old.npz /tmp/new.npz
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def specs(which: str):
    """(activation, k, n, seed, init) tuples of a named sample."""
    out = []
    if which in ("small", "all"):
        out += [("erf", 8, 7, s, "gaussian") for s in range(5)]
        out += [("erf", k, n, s, "gaussian") for k in range(3, 11) for n in range(1, k)
                for s in range(2)]
        out += [("erf", 10, n, s, "glorot") for n in range(5, 10) for s in range(3)]
        out += [("relu", k, n, s, "gaussian") for k in range(3, 9) for n in range(1, k)
                for s in range(2)]
    if which in ("k8",):
        out += [("erf", 8, 7, s, "gaussian") for s in range(5)]
    if which in ("k50", "all"):
        out += [("erf", 50, n, s, "glorot") for n in (10, 25, 40) for s in range(2)]
    return out


def run_all(which: str):
    from copyaverage import Teacher
    from copyaverage.flow import gradient_flow, initialize

    rows = []
    t0 = time.perf_counter()
    for act, k, n, seed, init in specs(which):
        T = Teacher.orthonormal(k)
        a0, W0 = initialize(n, T, init, seed)
        r = gradient_flow(a0, W0, T, act, record_parameters=False)
        rows.append(dict(spec=(act, k, n, seed, init), theta=r.theta, status=r.status,
                         stop=getattr(r, "stop", ""), grad_norm=r.grad_norm, loss=r.loss,
                         seconds=r.timings["total"]))
    return rows, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", default="small", choices=["small", "k8", "k50", "all"])
    p.add_argument("--out")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = p.parse_args(argv)
    if args.compare:
        old, new = (np.load(f, allow_pickle=True)["rows"] for f in args.compare)
        worst, bad = 0.0, []
        for o, q in zip(old, new):
            assert o["spec"] == q["spec"]
            d = float(np.max(np.abs(o["theta"] - q["theta"]))) if o["theta"].shape == q["theta"].shape else np.inf
            if not np.isfinite(d) and np.array_equal(np.isnan(o["theta"]), np.isnan(q["theta"])):
                d = 0.0
            worst = max(worst, d)
            if d > 1e-9 or o["status"] != q["status"]:
                bad.append((o["spec"], d, o["status"], q["status"]))
        print(f"{len(old)} runs; largest end-point difference {worst:.3g}; "
              f"{len(bad)} differ by > 1e-9 or in status")
        for b in bad:
            print("  ", b)
        return 1 if bad else 0
    rows, wall = run_all(args.set)
    print(f"{len(rows)} runs in {wall:.1f} s; converged {sum(r['status'] == 'converged' for r in rows)}")
    if args.out:
        np.savez(args.out, rows=np.array(rows, dtype=object))
    return 0


if __name__ == "__main__":
    sys.exit(main())
