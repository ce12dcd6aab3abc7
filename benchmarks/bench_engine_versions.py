"""The engine against an earlier version of itself: same starts, same end points, time ratio.

Extracts the library of a baseline commit (``git archive``) into a temporary folder and
runs the fixed sample of :mod:`engine_sample` (``--set k8``: erf, k = 8, n = 7, std 0.1,
seeds 0-4; ``--set k50``: erf, k = 50, Glorot, n = 10, 25, 40, seeds 0-1) once with the
baseline and once with the current library, alternating A B A B ... ``--repeats`` times,
each as its own process with one BLAS thread. Reports, per repeat, the wall and CPU
seconds of the whole process (children's resource usage), the ratio current / baseline,
and whether every end point is equal (largest difference of theta). Writes
benchmarks/results/engine_versions_<set>.json.

    python benchmarks/bench_engine_versions.py --baseline 212d381 --set k8 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import write_results  # noqa: E402


def extract(rev: str, into: Path) -> Path:
    """The baseline's lib/ folder, from git (no work tree touched)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "lib"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "lib"


def timed_run(lib: Path, which: str, out: Path):
    env = dict(os.environ, PYTHONPATH=str(lib), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / "engine_sample.py"), "--set", which, "--out",
                    str(out)], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def largest_difference(old: Path, new: Path):
    a = np.load(old, allow_pickle=True)["rows"]
    b = np.load(new, allow_pickle=True)["rows"]
    worst, same_status = 0.0, True
    for x, y in zip(a, b):
        worst = max(worst, float(np.max(np.abs(x["theta"] - y["theta"]))))
        same_status &= x["status"] == y["status"]
    return worst, bool(same_status), len(a)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="212d381", help="git revision of the baseline engine")
    p.add_argument("--set", default="k8", choices=["k8", "k50", "small"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old_lib = extract(args.baseline, tmp)
        rows = []
        for rep in range(args.repeats):
            w_old, c_old = timed_run(old_lib, args.set, tmp / "old.npz")
            w_new, c_new = timed_run(ROOT / "lib", args.set, tmp / "new.npz")
            diff, same_status, runs = largest_difference(tmp / "old.npz", tmp / "new.npz")
            rows.append(dict(wall_old=w_old, wall_new=w_new, cpu_old=c_old, cpu_new=c_new,
                             wall_ratio=w_new / w_old, cpu_ratio=c_new / c_old,
                             max_difference=diff, same_status=same_status))
            print(f"repeat {rep}: baseline {w_old:.2f} s wall / {c_old:.2f} s CPU, current "
                  f"{w_new:.2f} s / {c_new:.2f} s, ratio (current/baseline) wall "
                  f"{w_new / w_old:.3f} CPU {c_new / c_old:.3f}; {runs} runs, largest end-point "
                  f"difference {diff:.3g}, same status: {same_status}")
    cpu = [r["cpu_ratio"] for r in rows]
    wall = [r["wall_ratio"] for r in rows]
    print(f"CPU ratio current/baseline: min {min(cpu):.3f} median {statistics.median(cpu):.3f} "
          f"max {max(cpu):.3f}; wall median {statistics.median(wall):.3f}")
    write_results(HERE / "results" / f"engine_versions_{args.set}.json", baseline=args.baseline,
                  set=args.set, repeats=rows, cpu_ratio_median=statistics.median(cpu),
                  wall_ratio_median=statistics.median(wall), load_average_start=load0,
                  load_average_end=os.getloadavg(),
                  command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]))
    return 0 if all(r["max_difference"] == 0 and r["same_status"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
