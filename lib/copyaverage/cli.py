"""The ``copyaverage`` command: sweeps, the result store and the committed experiments.

Installed as a console script (``[project.scripts]`` in ``pyproject.toml``);
``python -m copyaverage`` runs the same :func:`main`. Subcommands:

``sweep``
    a grid of gradient flows through the result store (``--csv`` writes one row per run);
``info``, ``prune``
    the result store: where it is, its code hash; remove other code versions;
``recompute``, ``verify``
    a committed experiment (:data:`copyaverage.experiments.EXPERIMENTS`): run all of it
    again and write its files, or re-run a random sample and compare;
``pack``, ``seed``
    the pack of the book's shared grids (:mod:`copyaverage.grid_pack`): write it; fill the
    result store from it after re-running a sample.

Every option is checked before anything is computed: a bad value ends the command with
argparse's ``error:`` message and exit status 2. Exit statuses: 0 success; 1 a sweep
in which some runs did not converge, or a verification that found a difference; 2 a
usage error; 130 Ctrl-C; 143 SIGTERM.

Ranges of integers are written as in ``1-49`` (inclusive), ``0,2,5`` or
``1-10,20,30-32``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

__all__ = ["main", "parse_range", "MAX_RANGE_VALUES", "MAX_RUNS", "BACKENDS"]

#: Most integers one range option (--k, --n, --seeds) may list.
MAX_RANGE_VALUES = 10_000
#: Most runs one sweep command may ask for (the paper's k = 50 experiment has 980).
MAX_RUNS = 100_000
#: joblib backends ``sweep --backend`` accepts (``dask`` needs ``dask[distributed]``).
BACKENDS = ("loky", "multiprocessing", "threading", "dask")

#: Exit status of a sweep with runs that did not converge, or of a failed verification.
EXIT_FAILED_RUNS = 1
#: Exit status of a usage error (argparse's own).
EXIT_USAGE = 2


def parse_range(text: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7] (inclusive ranges, comma separated).

    At most :data:`MAX_RANGE_VALUES` integers in all (checked before they are listed).

    Raises
    ------
    argparse.ArgumentTypeError
        For an empty or reversed range or too many integers.
    ValueError
        For a part that is not an integer.
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


# ------------------------------------------------------------ argument types --
def _range_of(minimum: int):
    """An argparse type: a range (:func:`parse_range`) of integers >= ``minimum``."""
    def convert(text: str) -> list[int]:
        try:
            values = parse_range(text)
        except ValueError as exc:  # int('x')
            raise argparse.ArgumentTypeError(str(exc)) from None
        low = min(values)
        if low < minimum:
            raise argparse.ArgumentTypeError(f"{low} in {text!r} is below {minimum}")
        return values
    convert.__name__ = "range"  # argparse names the type in "invalid range value"
    return convert


def _positive_float(text: str) -> float:
    """An argparse type: a finite float > 0 (NaN, inf, 0 and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _integer(text: str) -> int:
    """``int(text)``, or the argparse error that names the text."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _jobs(text: str) -> int:
    """An argparse type: a number of workers, >= 1 or -1 (all cores)."""
    value = _integer(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be >= 1, or -1 for all cores; got {value}")
    return value


def _count(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _store_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the store directory must not be empty (an empty path would mean the current "
            "directory); leave --store out for the default, or give '.' explicitly")
    return text


def _output_file(text: str) -> Path:
    """An argparse type: a file to write, whose directory exists and which is no directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the file name must not be empty")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory of {text!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"the directory of {text!r} is not writable")
    return path


def _directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("the directory must not be empty")
    return Path(text).expanduser()


# -------------------------------------------------------------------- parser --
def _store_option(parser) -> None:
    """``--store DIR``, as every command that touches the result store has it."""
    parser.add_argument("--store", type=_store_arg, default=None, metavar="DIR",
                        help="store directory (default: $COPYAVERAGE_STORE or "
                             "<repo>/.cache/store)")


def _jobs_option(parser) -> None:
    """``--jobs N``, as every command that runs flows in parallel has it."""
    parser.add_argument("--jobs", type=_jobs, default=2,
                        help="parallel workers, >= 1, or -1 for all cores (default 2)")


_Formatter = argparse.RawDescriptionHelpFormatter  # keeps the line breaks of epilogs


def _text(*paragraphs: str) -> str:
    """Paragraphs filled to 78 columns, separated by blank lines (for descriptions)."""
    import textwrap

    return "\n\n".join(textwrap.fill(" ".join(par.split()), 78) for par in paragraphs)


_MAIN_EPILOG = """\
examples:
  copyaverage sweep --k 3 --n 1-2 --seeds 0-4           # 10 small runs, erf, Gaussian init
  copyaverage sweep --activation erf relu --k 4-6 --n 1-3 --csv runs.csv
  copyaverage info                                      # where the store is, its code hash
  copyaverage prune --dry-run                           # what prune would remove
  copyaverage verify erf_k50 --runs 5                   # re-run 5 committed k = 50 runs
  copyaverage recompute erf_k50 --jobs 2                # all 980 runs (about 26 min, 2 cores)
  copyaverage seed                                      # the book's grids into the store

exit status: 0 success; 1 runs that did not converge, or a verification that found a
difference; 2 a usage error (nothing was computed); 130 Ctrl-C; 143 SIGTERM.
"""


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .activations import ACTIVATIONS
    from .experiments import EXPERIMENTS, PLANNED
    from .flow import SCHEMES
    from .ode import METHODS

    activations = sorted(ACTIVATIONS)
    p = argparse.ArgumentParser(
        prog="copyaverage", formatter_class=_Formatter, epilog=_MAIN_EPILOG,
        description=_text("Gradient-flow experiments of the living paper 'Copy or average?': "
                          "sweeps through the on-disk result store and the committed "
                          "experiments. 'copyaverage COMMAND --help' describes each command."))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "sweep", formatter_class=_Formatter,
        help="run a grid of gradient flows through the result store",
        description=_text("Run every (activation, k, n, seed, init) combination with a "
                          "unit-orthonormal teacher of k neurons in d = k + 1 dimensions "
                          "(unless --d), loading stored runs and saving new ones; print a "
                          "summary per (activation, k, init, n). Every option is checked "
                          "before any run starts.",
                          "activations: " + ", ".join(activations)),
        epilog="examples:\n"
               "  copyaverage sweep --k 3 --n 2\n"
               "  copyaverage sweep --k 50 --n 1-49 --seeds 0-19 --init glorot --jobs 2\n"
               "  copyaverage sweep --activation relu --k 4 --n 1-3 --seeds 0-9 --csv relu.csv\n"
               "  copyaverage sweep --k 50 --n 1-49 --seeds 0-19 --init glorot \\\n"
               "      --backend dask --scheduler tcp://127.0.0.1:8786 --jobs -1\n\n"
               "exit status: 0 every run converged; 1 some runs did not converge (they are\n"
               "stored and listed all the same); 2 a usage error.")
    s.add_argument("--activation", nargs="+", default=["erf"], choices=activations,
                   metavar="NAME",
                   help="activation name(s), default erf; one of: " + ", ".join(activations))
    s.add_argument("--k", type=_range_of(1), required=True, metavar="RANGE",
                   help="teacher widths, e.g. 50 or 2-12")
    s.add_argument("--n", type=_range_of(1), required=True, metavar="RANGE",
                   help="student widths, e.g. 1-49")
    s.add_argument("--seeds", type=_range_of(0), default=[0], metavar="RANGE",
                   help="seeds of the initialization, e.g. 0-19 (default 0)")
    s.add_argument("--init", nargs="+", default=["gaussian"], choices=list(SCHEMES),
                   help="initialization scheme(s) (default gaussian)")
    s.add_argument("--std", type=_positive_float, default=0.1,
                   help="standard deviation of the gaussian initialization, > 0 (default 0.1)")
    s.add_argument("--d", type=_count, default=None,
                   help="input dimension, at least the largest k (default k + 1)")
    s.add_argument("--include-n-ge-k", action="store_true",
                   help="also run the combinations with n >= k")
    s.add_argument("--tol", type=_positive_float, default=None,
                   help="gradient-norm tolerance (default 1e-12 for erf, 1e-10 for relu)")
    s.add_argument("--method", choices=list(METHODS), default=None,
                   help="ODE method of the flow (default auto)")
    s.add_argument("--max-time", type=_positive_float, default=None, metavar="SECONDS",
                   help="wall-clock seconds per run before it stops unconverged (default 3600)")
    s.add_argument("--record-parameters", action="store_true",
                   help="keep the parameters along each trajectory (large for big n)")
    _jobs_option(s)
    s.add_argument("--backend", choices=BACKENDS, default=None,
                   help="joblib backend (default loky); dask needs dask[distributed]")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (only with "
                        "--backend dask; default: a local cluster)")
    _store_option(s)
    s.add_argument("--recompute", action="store_true", help="ignore stored results")
    s.add_argument("--csv", type=_output_file, default=None, metavar="PATH",
                   help="also write one row per run (the columns of results/*/summary.csv, "
                        "see results/README.md) to PATH, atomically")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    i = sub.add_parser("info", formatter_class=_Formatter,
                       help="print the store directory, the code hash and the version",
                       description=_text("Print the version, the store directory, the code "
                                         "hash under which results are filed, the number of "
                                         "stored runs and the hashed source files."))
    _store_option(i)

    r = sub.add_parser("prune", formatter_class=_Formatter,
                       help="delete the stored results of other code versions",
                       description=_text("Delete the store directories of other code versions "
                                         "(named by 16 hex digits, holding only stored runs) and "
                                         "stray temporary files; nothing else in the store "
                                         "directory is touched."),
                       epilog="example:\n  copyaverage prune --dry-run")
    _store_option(r)
    r.add_argument("--dry-run", action="store_true", help="only list what would be removed")

    names = "\n".join(f"  {e.name:<18} {e.description}" for e in EXPERIMENTS.values())
    planned = "\n".join(f"  {e.name:<18} {e.description}" for e in PLANNED.values())
    c = sub.add_parser("recompute", formatter_class=_Formatter,
                       help="run a committed experiment again and write its files",
                       description=_text("Run every run of a committed experiment (through the "
                                         "result store, so an interrupted run resumes) and write "
                                         "endpoints.npz, summary.csv and meta.json.")
                       + "\n\nexperiments:\n" + names
                       + ("\n\nplanned (defined, results not committed yet):\n" + planned
                          if PLANNED else ""),
                       epilog="examples:\n"
                              "  copyaverage recompute erf_k50 --jobs 2\n"
                              "  copyaverage recompute erf_k50_gaussian --out /tmp/k50g")
    c.add_argument("experiment", choices=list(EXPERIMENTS) + list(PLANNED), metavar="EXPERIMENT",
                   help="one of: " + ", ".join(list(EXPERIMENTS) + list(PLANNED)))
    c.add_argument("--out", type=_directory, default=None, metavar="DIR",
                   help="output directory (default: results/<EXPERIMENT> of the repository "
                        "checkout; outside a checkout --out is required)")
    _jobs_option(c)
    _store_option(c)
    c.add_argument("--no-progress", action="store_true", help="no progress bar")

    v = sub.add_parser("verify", formatter_class=_Formatter,
                       help="re-run a random sample of a committed experiment and compare",
                       description=_text("Re-run randomly chosen runs of a committed experiment "
                                         "and compare them with the stored end points (every "
                                         "weight to --atol, the loss to 1e-10, both converged).")
                       + "\n\nexperiments:\n" + names,
                       epilog="examples:\n"
                              "  copyaverage verify erf_k50\n"
                              "  copyaverage verify erf_k50_gaussian --runs 20 --seed 1\n"
                              "  copyaverage verify erf_k50 --results ~/clone/results/erf_k50\n\n"
                              "exit status: 0 every re-run matches; 1 some differ; 2 a usage error.")
    v.add_argument("experiment", choices=list(EXPERIMENTS), metavar="EXPERIMENT",
                   help="one of: " + ", ".join(EXPERIMENTS))
    v.add_argument("--results", type=_directory, default=None, metavar="DIR",
                   help="directory holding the experiment's files (default: results/<EXPERIMENT> "
                        "of the repository checkout)")
    v.add_argument("--runs", type=_count, default=5, help="how many runs to re-run (default 5)")
    v.add_argument("--seed", type=_seed, default=None,
                   help="seed of the random choice of runs (default: a fresh choice)")
    v.add_argument("--atol", type=_positive_float, default=1e-7,
                   help="largest allowed difference of any weight (default 1e-7)")
    k = sub.add_parser("pack", formatter_class=_Formatter,
                       help="write the pack of the book's shared grids (results/book_grids)",
                       description=_text("Run (through the result store) or load the runs that "
                                         "the book's pages share (erf k = 2..12, ReLU k = 2..10, "
                                         "erf Glorot k = 6, 10; 2,500 runs) and write them to "
                                         "pack.npz and meta.json, which 'copyaverage seed' "
                                         "reads. make book fails when the pack differs from "
                                         "what the build computed; this command refreshes it."),
                       epilog="example:\n  copyaverage pack --jobs 2")
    k.add_argument("--out", type=_directory, default=None, metavar="DIR",
                   help="output directory (default: results/book_grids of the checkout)")
    _jobs_option(k)
    _store_option(k)
    k.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("seed", formatter_class=_Formatter,
                       help="fill the result store from the pack, after re-running a sample",
                       description=_text("Put the packed runs of the book's shared grids into "
                                         "the result store of this code version, so that the "
                                         "pages load them instead of computing them (minutes "
                                         "on one or two cores). First a random sample of "
                                         "--runs packed runs is re-run; unless every re-run "
                                         "agrees with its packed result (same stop, loss and "
                                         "function to 1e-10, weights to 1e-7), nothing is "
                                         "written. Binder's postBuild runs this."),
                       epilog="examples:\n  copyaverage seed\n  copyaverage seed --runs 20"
                              "\n\nexit status: 0 seeded (or nothing was missing); 1 the "
                              "sample disagreed, nothing seeded; 2 a usage error.")
    e.add_argument("--pack", type=_directory, default=None, metavar="DIR",
                   help="directory holding pack.npz and meta.json (default: results/book_grids "
                        "of the checkout)")
    e.add_argument("--runs", type=_count, default=6,
                   help="how many packed runs to re-run first (default 6)")
    e.add_argument("--seed", type=_seed, default=None,
                   help="seed of the random choice of runs (default: a fresh choice)")
    _store_option(e)
    p.subcommands = {"sweep": s, "info": i, "prune": r, "recompute": c, "verify": v,
                     "pack": k, "seed": e}
    return p


# ---------------------------------------------------------------- commands --
def _summary(specs, results) -> str:
    from .classify import classify

    rows: dict = {}
    for s, r in zip(specs, results):
        rows.setdefault((s.activation, s.k, s.init, s.n), []).append((s, r))
    lines = [f"{'act':>6} {'k':>4} {'init':>8} {'n':>4} {'runs':>5} {'conv':>5} "
             f"{'max|g|':>9} {'min loss':>11} {'mean s':>8}  classes"]
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


def _info(args) -> int:
    from . import __version__
    from .store import ResultStore, code_hash, default_store_dir, source_files

    store = ResultStore(args.store)
    print(f"copyaverage:     {__version__}")
    print(f"store directory: {store.root}")
    print(f"code hash:       {code_hash()}  (results in {store.dir})")
    print(f"stored runs:     {len(store.keys())}")
    print("hashed sources:  " + ", ".join(p.name for p in source_files()))
    print(f"(default directory: {default_store_dir()})")
    return 0


def _prune(args) -> int:
    from .store import ResultStore

    store = ResultStore(args.store)
    removed = store.prune(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} item(s) from {store.root}; kept the current code's "
          f"results in {store.dir}")
    return 0


def _sweep(args, parser) -> int:
    from .store import ResultStore, atomic_write
    from .sweep import grid, sweep

    if args.scheduler is not None and args.backend != "dask":
        parser.error("--scheduler needs --backend dask")
    if args.d is not None and args.d < max(args.k):
        parser.error(f"--d {args.d} is below the largest k ({max(args.k)}): the teacher's "
                     "k orthonormal vectors need d >= k")
    if args.backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError:
            parser.error("--backend dask needs dask.distributed: pip install 'dask[distributed]'")
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
        return EXIT_USAGE
    try:
        specs = grid(args.activation, args.k, args.n, args.seeds, args.init, d=args.d,
                     std=args.std, skip_n_ge_k=not args.include_n_ge_k, **opts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not specs:
        print("error: the grid is empty (n >= k everywhere? use --include-n-ge-k)", file=sys.stderr)
        return EXIT_USAGE
    store = ResultStore(args.store)
    try:
        store.check_writable()  # before minutes of computing, not after the first run
    except OSError as exc:
        print(f"error: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    client = None
    if args.backend == "dask":
        client = Client(args.scheduler) if args.scheduler else Client()
    try:
        print(f"{len(specs)} runs; store {store.dir}", flush=True)
        t0 = time.perf_counter()
        results = sweep(specs, store=store, n_jobs=args.jobs, backend=args.backend,
                        progress=not args.no_progress, recompute=args.recompute)
        wall = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
    print(_summary(specs, results))
    conv = sum(r.converged for r in results)
    print(f"{conv}/{len(results)} converged; wall time {wall:.1f} s; "
          f"sum of run times {sum(r.timings.get('total', 0) for r in results):.1f} s")
    if args.csv is not None:
        from .experiments import summarize

        table = summarize(specs, results)
        atomic_write(args.csv, lambda f: f.write(table.to_csv(index=False).encode()))
        print(f"wrote {len(table)} rows to {args.csv}")
    if conv < len(results):
        stops = Counter(str(r.stop) for r in results if not r.converged)
        print(f"copyaverage sweep: {len(results) - conv} of {len(results)} runs did not "
              f"converge ({', '.join(f'{s}: {m}' for s, m in sorted(stops.items()))}); "
              f"exit status {EXIT_FAILED_RUNS}", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return 0


def _given_or_default(args, parser, option: str, default) -> Path:
    """The directory given with ``--<option>``, else ``default()`` (the checkout's); outside
    a checkout, argparse's error asking for the option."""
    given = getattr(args, option)
    if given is not None:
        return given
    try:
        return default()
    except FileNotFoundError as exc:
        parser.error(f"{exc} with --{option} DIR")


def _results_dir(args, parser, option: str) -> Path:
    from .experiments import committed_results_dir

    return _given_or_default(args, parser, option,
                             lambda: committed_results_dir(args.experiment))


def _recompute(args, parser, argv) -> int:
    from .experiments import recompute_experiment

    out = _results_dir(args, parser, "out")
    command = "copyaverage " + " ".join(shlex.quote(a) for a in argv)
    table = recompute_experiment(args.experiment, out, n_jobs=args.jobs, store=args.store,
                                 progress=not args.no_progress, command=command)
    return 0 if table.converged.all() else EXIT_FAILED_RUNS


def _verify(args, parser) -> int:
    from .experiments import verify_sample

    path = _results_dir(args, parser, "results")
    missing = [f for f in ("meta.json", "summary.csv", "endpoints.npz") if not (path / f).is_file()]
    if missing:
        parser.error(f"{path} does not hold the experiment's files (missing: {', '.join(missing)})")
    check = verify_sample(path, m=args.runs, seed=args.seed, atol=args.atol)
    print(check.to_string(index=False))
    bad = int((~check.matches).sum())
    print(f"{len(check) - bad}/{len(check)} re-runs match {path}")
    return EXIT_FAILED_RUNS if bad else 0


def _pack_dir(args, parser, option: str) -> Path:
    from .grid_pack import pack_dir

    return _given_or_default(args, parser, option, pack_dir)


def _pack(args, parser, argv) -> int:
    from .grid_pack import write_pack

    out = _pack_dir(args, parser, "out")
    command = "copyaverage " + " ".join(shlex.quote(a) for a in argv)
    meta = write_pack(out, n_jobs=args.jobs, store=args.store, progress=not args.no_progress,
                      command=command)
    print(f"wrote {meta['runs']} runs to {out} ({meta['elapsed_seconds']:.0f} s, code "
          f"{meta['lib_hash'][:16]})")
    return 0


def _seed_store(args, parser) -> int:
    from .grid_pack import seed_store

    path = _pack_dir(args, parser, "pack")
    try:
        report = seed_store(path, store=args.store, m=args.runs, seed=args.seed)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    if len(report["sample"]):
        print(report["sample"].to_string(index=False))
    if report["reason"]:
        print(f"nothing seeded: {report['reason']}")
        return EXIT_FAILED_RUNS
    print(f"seeded {report['seeded']} runs from {path} (pack of code {report['pack_code']}); "
          f"{report['already']} were in the store already")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``copyaverage`` command line; return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 success, 1 runs that did not converge or a failed verification, 2 a usage
        error found after parsing (argparse's own errors raise ``SystemExit(2)``),
        141 when the reader of the output went away (``| head``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, parser, argv)
    except BrokenPipeError:  # `copyaverage info | head -1`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit
        return 141  # 128 + SIGPIPE, as a shell reports it


def _dispatch(args, parser, argv) -> int:
    if args.command == "info":
        return _info(args)
    if args.command == "prune":
        return _prune(args)
    if args.command == "sweep":
        return _sweep(args, parser.subcommands["sweep"])
    if args.command == "recompute":
        return _recompute(args, parser.subcommands["recompute"], argv)
    if args.command == "pack":
        return _pack(args, parser.subcommands["pack"], argv)
    if args.command == "seed":
        return _seed_store(args, parser.subcommands["seed"])
    return _verify(args, parser.subcommands["verify"])
