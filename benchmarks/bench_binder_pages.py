"""How long a reader waits for a page on Binder: each page executed alone, as Binder runs
it, against the same page without Binder's set-up (the baseline), in the same run.

Binder-style: a result store that holds only what ``copyaverage seed`` puts in it (the
committed pack of the shared grids, after its sample of re-runs), and
``COPYAVERAGE_QUICK=1`` (the ``start`` script's setting). Baseline: an empty store and
the build's full re-runs, as a Binder session had before the pack existed. Every page
runs in its own kernel with the machine's cores (one page at a time), from a fresh copy
of its store, so no page profits from another's runs.

    .venv/bin/python benchmarks/bench_binder_pages.py                  # every page
    .venv/bin/python benchmarks/bench_binder_pages.py --pages distillation basins \\
        --baseline distillation

Writes ``benchmarks/results/binder_pages.json``; the introduction reads it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write_results  # noqa: E402

#: The pages that run gradient flows or re-run committed experiments.
EXPERIMENT_PAGES = ("distillation", "gradient_flow_relu", "pruning", "basins", "phase_k50",
                    "claims", "transition_exact", "phase_diagram", "gradient_flow_erf",
                    "explore", "copy_average", "one_neuron")


def execute(page: str, env: dict) -> tuple[float, str | None]:
    """Run ``book/<page>.md`` in a fresh kernel with ``env`` added to the environment;
    (seconds, None) or (seconds, the error)."""
    import jupytext
    import nbclient

    path = ROOT / "book" / f"{page}.md"
    nb = jupytext.read(path)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    start = time.perf_counter()
    try:
        nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
        error = None
    except Exception as exc:  # noqa: BLE001 - a failing page is reported, not fatal
        error = f"{type(exc).__name__}: {str(exc)[-300:]}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.perf_counter() - start, error


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="+", default=list(EXPERIMENT_PAGES),
                        help="pages (names in book/) to time Binder-style")
    parser.add_argument("--baseline", nargs="*", default=["distillation"],
                        help="pages to time also without the pack and quick mode")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/binder_pages.json"))
    args = parser.parse_args(argv)
    for page in {*args.pages, *args.baseline}:
        if not (ROOT / "book" / f"{page}.md").is_file():
            parser.error(f"no page book/{page}.md")

    from copyaverage.grid_pack import pack_dir, seed_store
    from copyaverage.store import ResultStore

    work = Path(tempfile.mkdtemp(prefix="binder-bench-"))
    try:
        start = time.perf_counter()
        report = seed_store(pack_dir(), store=ResultStore(work / "seeded"))
        seed_seconds = time.perf_counter() - start
        if report["reason"]:
            print(f"the store could not be seeded: {report['reason']}", file=sys.stderr)
            return 1
        print(f"seed: {report['seeded']} runs in {seed_seconds:.1f} s", flush=True)
        rows = []
        for page in args.pages:
            store = work / "store"
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(work / "seeded", store)
            seconds, error = execute(page, {"COPYAVERAGE_STORE": str(store),
                                            "COPYAVERAGE_QUICK": "1"})
            rows.append(dict(page=page, setting="binder", seconds=seconds, error=error))
            print(f"{page:<20} binder   {seconds:6.0f} s {error or ''}", flush=True)
        for page in args.baseline:
            store = work / "empty"
            shutil.rmtree(store, ignore_errors=True)
            seconds, error = execute(page, {"COPYAVERAGE_STORE": str(store),
                                            "COPYAVERAGE_QUICK": "0"})
            rows.append(dict(page=page, setting="baseline", seconds=seconds, error=error))
            print(f"{page:<20} baseline {seconds:6.0f} s {error or ''}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    binder = [r for r in rows if r["setting"] == "binder" and r["error"] is None]
    slowest = max(binder, key=lambda r: r["seconds"]) if binder else None
    ratios = {r["page"]: r["seconds"] / b["seconds"] for r in rows if r["setting"] == "baseline"
              for b in binder if b["page"] == r["page"]}
    write_results(args.out, command=" ".join(["benchmarks/bench_binder_pages.py", *(argv or
                  sys.argv[1:])]), seed_seconds=seed_seconds, pages=rows,
                  slowest=slowest, baseline_over_binder=ratios,
                  load_average=os.getloadavg())
    for page, ratio in ratios.items():
        print(f"{page}: baseline / binder = {ratio:.1f}")
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
