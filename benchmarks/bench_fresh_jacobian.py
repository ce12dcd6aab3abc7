"""Does ``fresh_jacobian`` make large runs faster, and do they end where they did?

Usage: python benchmarks/bench_fresh_jacobian.py [--out benchmarks/results/fresh_jacobian.json]

Part A (timing, paired): for each run of a sample of large runs (erf; Glorot starts, and
starts of standard deviation 1 at k = 50, the planned erf_k50_s1),
run gradient flow without and with ``fresh_jacobian`` from the same start, in alternating
order, one BLAS thread, one run at a time; report wall-time and factorization ratios
(with / without) and the largest weight difference of the two end points. Run it on an
idle machine.

Part B (agreement with committed results): every seed of one committed cell near the
switch (erf_k70, n = 33) re-run with ``fresh_jacobian``, two at a time, against its
committed end point (computed without the option): same class, and weights within
1e-7 where the end point is determined (``experiments.verify_sample``'s criterion).
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one BLAS thread, as the sweep workers run (before numpy loads)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from copyaverage.classify import classify  # noqa: E402
from copyaverage.experiments import committed_results_dir, load_endpoints  # noqa: E402
from copyaverage.flow import gradient_flow  # noqa: E402
from copyaverage.store import code_hash  # noqa: E402
from copyaverage.sweep import RunSpec  # noqa: E402

#: (k, n, seed, initialization, std): runs that reach the stiff phase (float32 BDF)
TIMED = ([(50, 20, seed, "glorot", 0.1) for seed in (0, 1)]
         + [(70, 32, seed, "glorot", 0.1) for seed in (0, 1)]
         + [(50, n, 0, "gaussian", 1.0) for n in (25, 40)])
AGREEMENT = ("erf_k70", 33)


def run(k, n, seed, fresh, init="glorot", std=0.1):
    spec = RunSpec("erf", k, n, seed, init, std=std)
    a0, W0 = spec.start()
    start = time.perf_counter()
    r = gradient_flow(a0, W0, spec.teacher(), "erf", fresh_jacobian=fresh)
    return dict(seconds=time.perf_counter() - start, nlu=r.stats["nlu"],
                njev=r.stats["njev"], converged=r.converged, loss=r.loss,
                theta=np.concatenate([r.a, r.W.ravel()]), a=r.a, W=r.W)


def timed_pairs():
    rows = []
    for i, (k, n, seed, init, std) in enumerate(TIMED):
        order = (False, True) if i % 2 == 0 else (True, False)
        out = {fresh: run(k, n, seed, fresh, init, std) for fresh in order}
        plain, fresh = out[False], out[True]
        row = dict(k=k, n=n, seed=seed, init=init, std=std, seconds_plain=plain["seconds"],
                   seconds_fresh=fresh["seconds"], nlu_plain=plain["nlu"],
                   nlu_fresh=fresh["nlu"], njev_plain=plain["njev"],
                   njev_fresh=fresh["njev"],
                   both_converged=plain["converged"] and fresh["converged"],
                   max_weight_difference=float(np.abs(plain["theta"] - fresh["theta"]).max()))
        row["time_ratio"] = row["seconds_fresh"] / row["seconds_plain"]
        rows.append(row)
        print(json.dumps({key: (round(v, 3) if isinstance(v, float) else v)
                          for key, v in row.items()}), flush=True)
    return rows


def agreement():
    name, n = AGREEMENT
    specs, ends, table, _ = load_endpoints(committed_results_dir(name))
    rows = [i for i, s in enumerate(specs) if s.n == n]

    def one(i):
        s = specs[i]
        r = run(s.k, s.n, s.seed, True)
        label = (classify(r["a"], r["W"], s.teacher(), "erf", loss=r["loss"]).label
                 if r["converged"] else "not converged")
        a, W = ends[i]
        stored = np.concatenate([a, W.ravel()])
        row = dict(seed=s.seed, committed=table.label.iloc[i], fresh=label,
                   committed_converged=bool(table.converged.iloc[i]),
                   max_weight_difference=float(np.abs(stored - r["theta"]).max()),
                   seconds=r["seconds"])
        print(json.dumps(row), flush=True)
        return row

    return Parallel(n_jobs=2)(delayed(one)(i) for i in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/fresh_jacobian.json")
    args = parser.parse_args()
    started = time.perf_counter()
    pairs = timed_pairs()
    agree = agreement()
    same_class = sum(r["committed"] == r["fresh"] for r in agree)
    result = dict(
        command="python benchmarks/bench_fresh_jacobian.py --out " + args.out,
        code_hash=code_hash(), date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), python=platform.python_version(),
                     cpus=os.cpu_count()),
        wall_seconds=time.perf_counter() - started,
        timed=pairs,
        median_time_ratio=float(np.median([p["time_ratio"] for p in pairs])),
        median_nlu_ratio=float(np.median([p["nlu_fresh"] / p["nlu_plain"] for p in pairs
                                          if p["nlu_plain"] > 0])),
        agreement=dict(experiment=AGREEMENT[0], n=AGREEMENT[1], runs=agree,
                       same_class=same_class, total=len(agree)))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    print(f"median time ratio {result['median_time_ratio']:.2f}, median factorization ratio "
          f"{result['median_nlu_ratio']:.2f}; same class {same_class} of {len(agree)}")


if __name__ == "__main__":
    main()
