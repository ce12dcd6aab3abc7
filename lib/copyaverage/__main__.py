"""Command line: ``python -m copyaverage sweep ...``, ``info`` and ``prune``.

Ranges of integers are written as in ``1-49`` (inclusive), ``0,2,5`` or
``1-10,20,30-32``. Run ``python -m copyaverage sweep --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter


#: Most integers one range option (--k, --n, --seeds) may list.
MAX_RANGE_VALUES = 10_000
#: Most runs one sweep command may ask for (the paper's k = 50 experiment has 980).
MAX_RUNS = 100_000


def parse_range(text: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7] (inclusive ranges, comma separated).

    At most :data:`MAX_RANGE_VALUES` integers in all (checked before they are listed).
    """
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
            lo_i, hi_i = int(lo), int(hi)
            if hi_i < lo_i:
                raise argparse.ArgumentTypeError(f"empty range {part!r}")
            count = hi_i - lo_i + 1
        else:
            lo_i = hi_i = int(part)
            count = 1
        if len(out) + count > MAX_RANGE_VALUES:
            raise argparse.ArgumentTypeError(
                f"{text!r} lists {len(out) + count:,} or more integers; at most "
                f"{MAX_RANGE_VALUES:,} are allowed (MAX_RANGE_VALUES)")
        out.extend(range(lo_i, hi_i + 1))
    if not out:
        raise argparse.ArgumentTypeError(f"no integers in {text!r}")
    return out


def _range_arg(text):
    try:
        return parse_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the store directory must not be empty (an empty path would mean the current "
            "directory); leave --store out for the default, or give '.' explicitly")
    return text


def _parser():
    p = argparse.ArgumentParser(prog="python -m copyaverage",
                                description="Gradient-flow experiments for the copy-or-average paper.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a grid of gradient flows through the result store",
                       description="Run every (activation, k, n, seed, init) combination with a "
                       "unit-orthonormal teacher (d = k + 1 unless --d), loading stored runs and "
                       "saving new ones; print a summary per (activation, k, n).")
    s.add_argument("--activation", nargs="+", default=["erf"], help="activation name(s) (default erf)")
    s.add_argument("--k", type=_range_arg, required=True, help="teacher widths, e.g. 50 or 2-12")
    s.add_argument("--n", type=_range_arg, required=True, help="student widths, e.g. 1-49")
    s.add_argument("--seeds", type=_range_arg, default=[0], help="seeds, e.g. 0-19 (default 0)")
    s.add_argument("--init", nargs="+", default=["gaussian"], choices=["gaussian", "glorot"])
    s.add_argument("--std", type=float, default=0.1, help="std of the gaussian initialization")
    s.add_argument("--d", type=int, default=None, help="input dimension (default k + 1)")
    s.add_argument("--include-n-ge-k", action="store_true", help="also run n >= k")
    s.add_argument("--tol", type=float, default=None, help="gradient-norm tolerance")
    s.add_argument("--method", default=None, help="ODE method (auto, rkc, bdf, lsoda, radau)")
    s.add_argument("--max-time", type=float, default=None, help="wall-clock seconds per run")
    s.add_argument("--record-parameters", action="store_true",
                   help="keep the parameters along each trajectory (large for big n)")
    s.add_argument("--jobs", type=int, default=2, help="parallel workers (default 2, -1: all cores)")
    s.add_argument("--backend", default=None, help="joblib backend (default loky; 'dask' for a cluster)")
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (with --backend dask)")
    s.add_argument("--store", type=_store_arg, default=None,
                   help="store directory (default: $COPYAVERAGE_STORE or <repo>/.cache/store)")
    s.add_argument("--recompute", action="store_true", help="ignore stored results")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    i = sub.add_parser("info", help="print the store directory and the code hash")
    i.add_argument("--store", type=_store_arg, default=None)
    r = sub.add_parser("prune", help="delete the stored results of other code versions",
                       description="Delete the store directories of other code versions (named by "
                       "16 hex digits, holding only stored runs) and stray temporary files; "
                       "nothing else in the store directory is touched.")
    r.add_argument("--store", type=_store_arg, default=None)
    r.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    return p


def _summary(specs, results):
    rows = {}
    for s, r in zip(specs, results):
        rows.setdefault((s.activation, s.k, s.init, s.n), []).append((s, r))
    lines = [f"{'act':>6} {'k':>4} {'init':>8} {'n':>4} {'runs':>5} {'conv':>5} "
             f"{'max|g|':>9} {'min loss':>11} {'mean s':>8}  classes"]
    from .classify import classify
    for (act, k, init, n), group in sorted(rows.items()):
        res = [r for _, r in group]
        conv = sum(r.converged for r in res)
        classes: Counter = Counter()
        for s, r in group:
            if not r.converged:
                classes["not converged"] += 1
            elif n < k:
                classes[classify(r.a, r.W, s.teacher(), act, loss=r.loss).label] += 1
        cls = ", ".join(f"{c}: {m}" for c, m in sorted(classes.items()))
        lines.append(f"{act:>6} {k:>4} {init:>8} {n:>4} {len(res):>5} {conv:>5} "
                     f"{max(r.grad_norm for r in res):>9.1e} {min(r.loss for r in res):>11.6g} "
                     f"{sum(r.timings.get('total', 0) for r in res) / len(res):>8.2f}  {cls}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from .store import ResultStore, code_hash, default_store_dir, source_files
    if args.command == "info":
        store = ResultStore(args.store)
        print(f"store directory: {store.root}")
        print(f"code hash:       {code_hash()}  (results in {store.dir})")
        print(f"stored runs:     {len(store.keys())}")
        print("hashed sources:  " + ", ".join(p.name for p in source_files()))
        print(f"(default directory: {default_store_dir()})")
        return 0
    if args.command == "prune":
        store = ResultStore(args.store)
        removed = store.prune(dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for path in removed:
            print(f"{verb} {path}")
        print(f"{verb} {len(removed)} item(s) from {store.root}; kept the current code's "
              f"results in {store.dir}")
        return 0
    from .sweep import grid, sweep
    opts = {}
    if args.tol is not None:
        opts["tol"] = args.tol
    if args.method is not None:
        opts["method"] = args.method
    if args.max_time is not None:
        opts["max_time"] = args.max_time
    if args.record_parameters:
        opts["record_parameters"] = True
    runs = len(args.activation) * len(args.k) * len(args.n) * len(args.seeds) * len(args.init)
    if runs > MAX_RUNS:
        print(f"error: the grid has {runs:,} combinations; at most MAX_RUNS = {MAX_RUNS:,} "
              "runs per command", file=sys.stderr)
        return 2
    try:
        specs = grid(args.activation, args.k, args.n, args.seeds, args.init, d=args.d,
                     std=args.std, skip_n_ge_k=not args.include_n_ge_k, **opts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not specs:
        print("error: the grid is empty (n >= k everywhere? use --include-n-ge-k)", file=sys.stderr)
        return 2
    client = None
    if args.backend == "dask":
        from dask.distributed import Client  # noqa: F401  (needs dask[distributed])
        client = Client(args.scheduler) if args.scheduler else Client()
    store = ResultStore(args.store)
    try:
        store.check_writable()  # before minutes of computing, not after the first run
    except OSError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{len(specs)} runs; store {store.dir}", flush=True)
    t0 = time.perf_counter()
    results = sweep(specs, store=store, n_jobs=args.jobs, backend=args.backend,
                    progress=not args.no_progress, recompute=args.recompute)
    wall = time.perf_counter() - t0
    print(_summary(specs, results))
    conv = sum(r.converged for r in results)
    print(f"{conv}/{len(results)} converged; wall time {wall:.1f} s; "
          f"sum of run times {sum(r.timings.get('total', 0) for r in results):.1f} s")
    if client is not None:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
