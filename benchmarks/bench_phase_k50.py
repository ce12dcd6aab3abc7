"""Benchmark 3: the paper's phase-transition experiment at full scale, measured on a sample.

The experiment: erf, unit-orthonormal teacher with k = 50 neurons in d = 51,
students n = 1..49, 20 seeds each, Glorot-normal initialization, every run to
|grad| <= 1e-12 (980 runs). This script runs a sample of it exactly as the
sweep does (joblib, 2 worker processes, one BLAS thread each, same options),
measures the wall-clock time and each run's wall and CPU time, and
extrapolates to the full experiment: the mean run time at each sampled n is
interpolated linearly in n to every n = 1..49 and multiplied by 20 seeds; then
(a) divided by 2 workers and the parallel efficiency measured on the sample
(sum of run times / (2 x wall time)), or (b) the same with CPU times and
perfect efficiency: the estimate for the machine to ourselves, since this
machine is shared and wall times include other people's jobs. Nothing is read
from the result store (a temporary store is used).

    python benchmarks/bench_phase_k50.py [--n 1,5,9,...] [--seeds 0-1] [--jobs 2]

Prints a table and writes benchmarks/results/phase_k50.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from copyaverage.__main__ import parse_range
from copyaverage.classify import classify
from copyaverage.store import ResultStore
from copyaverage.sweep import grid, sweep

from _results import write_results

BUDGET_S = 2 * 3600.0
K, SEEDS_FULL, N_FULL = 50, 20, np.arange(1, 50)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1,5,9,13,17,21,25,29,33,37,41,45,49")
    p.add_argument("--seeds", default="0-1")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "phase_k50.json"))
    args = p.parse_args(argv)
    ns, seeds = parse_range(args.n), parse_range(args.seeds)
    specs = grid("erf", K, ns, seeds, "glorot")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results = sweep(specs, store=ResultStore(tmp, code="bench"), n_jobs=args.jobs,
                        progress=False)
        wall = time.perf_counter() - t0
    T = specs[0].teacher()
    per_n, per_n_cpu = {}, {}
    rows = []
    for s, r in zip(specs, results):
        label = classify(r.a, r.W, T, "erf", loss=r.loss).label if r.converged else "not converged"
        per_n.setdefault(s.n, []).append(r.timings["total"])
        per_n_cpu.setdefault(s.n, []).append(r.timings["cpu"])
        rows.append(dict(n=s.n, seed=s.seed, time=r.timings["total"], cpu=r.timings["cpu"],
                         converged=r.converged, grad_norm=r.grad_norm, loss=r.loss, label=label,
                         t_end=r.t_end, methods=r.stats["methods"],
                         newton=r.stats["newton_iterations"], polish_distance=r.polish_distance))
    wall_sum = sum(r.timings["total"] for r in results)
    cpu_sum = sum(r.timings["cpu"] for r in results)
    efficiency = wall_sum / (args.jobs * wall)
    n_s = np.array(sorted(per_n))

    def extrapolate(table):
        mean_t = np.array([np.mean(table[n]) for n in n_s])
        return SEEDS_FULL * float(np.sum(np.interp(N_FULL, n_s, mean_t)))

    # (a) as measured: run wall times, the measured parallel efficiency
    est_wall = extrapolate(per_n) / (args.jobs * efficiency)
    # (b) the machine to ourselves: CPU seconds of the runs, 2 workers kept busy
    est_cpu = extrapolate(per_n_cpu) / args.jobs
    all_conv = all(r.converged for r in results)
    load = os.getloadavg()
    print(f"{'n':>3} {'seed':>4} {'wall s':>7} {'cpu s':>7} {'|grad|':>9} {'loss':>12}  class")
    for row in rows:
        print(f"{row['n']:>3} {row['seed']:>4} {row['time']:>7.2f} {row['cpu']:>7.2f} "
              f"{row['grad_norm']:>9.1e} {row['loss']:>12.9f}  {row['label']}")
    print(f"sample: {len(results)} runs, wall {wall:.1f} s with {args.jobs} workers, sum of run "
          f"wall times {wall_sum:.1f} s, of CPU times {cpu_sum:.1f} s, parallel efficiency "
          f"{efficiency:.2f}; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"all converged: {all_conv}")
    print(f"extrapolated full experiment (n = 1..49, {SEEDS_FULL} seeds, {SEEDS_FULL * 49} runs) "
          f"on {args.jobs} workers: (a) from the measured wall times {est_wall / 60:.1f} min; "
          f"(b) from CPU times, machine to ourselves {est_cpu / 60:.1f} min; budget "
          f"{BUDGET_S / 60:.0f} min (ratios {BUDGET_S / est_wall:.1f}, {BUDGET_S / est_cpu:.1f})")
    write_results(args.out, benchmark="phase_k50", sample_n=ns, sample_seeds=seeds, jobs=args.jobs,
                  wall_s=wall, run_wall_sum_s=wall_sum, run_cpu_sum_s=cpu_sum,
                  efficiency=efficiency, all_converged=all_conv,
                  estimated_full_wall_s=est_wall, estimated_full_wall_idle_machine_s=est_cpu,
                  budget_s=BUDGET_S, load_average_end=load, runs=rows)
    return 0 if all_conv else 1


if __name__ == "__main__":
    sys.exit(main())
