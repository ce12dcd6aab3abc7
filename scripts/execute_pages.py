"""Execute the book's pages, two at a time, into the cache that ``jupyter-book`` reads.

``make book`` runs this before Sphinx. Sphinx (through myst-nb in ``cache`` mode) then
finds every page already executed and only renders it; a page it does not find (its code
changed after this script ran) it executes itself, one at a time.

When is a page executed again?
    jupyter-cache keys an executed page by its code cells alone, so it would not notice a
    change in the library or in the committed results the pages read. This script
    therefore keeps a second key next to the cache, the SHA-256 of everything else a page
    reads (:func:`inputs_digest`: the code of ``lib/`` without docstrings and comments,
    ``results/``, ``benchmarks/results/``, ``book/*.json``, ``pyproject.toml``, the
    Python version and the installed version of every package the project declares,
    :func:`page_packages`). When it differs from the key stored with the cache, the whole cache is
    dropped and every page runs again; otherwise only pages whose code changed run. A
    clean clone (as in CI) has no cache, so every page runs, including the re-runs of
    randomly chosen committed runs that the pages make.

Order
    First the runs several pages share (:func:`copyaverage.experiments.book_grids`) are
    computed into the library's result store, two at a time (pages running at the same
    time would otherwise both compute them). Then pages run two at a time (each may
    itself run two worker processes for its flows), slowest first according to the last
    recorded execution times (without any, the pages in :data:`SLOW_FIRST` first, then
    the order of ``_toc.yml``). The pages in :data:`RUN_LAST` read what the experiment
    chapters compute (through the library's result store) and start only after all the
    others have finished, so that they load those results instead of computing them
    first.

A page that fails is not cached; the script prints its traceback and exits with status 1
after the other pages have run.

Usage: ``python scripts/execute_pages.py [--jobs 2] [--force]`` from the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from importlib.metadata import distributions
from pathlib import Path

import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"
#: Stored next to the cache: the inputs digest and the last execution time of each page.
STAMP = CACHE / "copyaverage-inputs.json"
#: Pages that load what the other pages compute; they start after all the others.
RUN_LAST = ("book/claims",)
#: Without recorded times (a clean clone), these pages start first, slowest first (cold
#: fresh-clone times on 2026-12-02: about 360, 240, 220 and 210 s).
SLOW_FIRST = ("book/distillation", "book/gradient_flow_relu", "book/basins", "book/pruning")
#: Per cell, as in ``_config.yml`` (``execute.timeout``).
TIMEOUT = 1800
#: What the pages read besides their own code (directories are read recursively).
#: Not all of ``lib/``: pip writes ``lib/copyaverage.egg-info`` (README text included) at
#: every editable install, which must not execute every page again.
INPUTS = ("lib/copyaverage", "results", "benchmarks/results", "pyproject.toml")


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The documents listed in ``_toc.yml`` (root first), without suffix."""
    data = yaml.safe_load(toc.read_text())
    pages = [data["root"]]

    def walk(entries):
        for entry in entries or ():
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("chapters"))
            walk(entry.get("sections"))

    for part in data.get("parts", ()):
        walk(part.get("chapters"))
    walk(data.get("chapters"))
    return pages


def inputs_digest() -> str:
    """SHA-256 of what the pages read besides their code (see the module docstring)."""
    h = hashlib.sha256()
    files = []
    for name in INPUTS:
        path = ROOT / name
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        else:
            files.append(path)
    files += sorted((ROOT / "book").glob("*.json"))
    from copyaverage.store import _without_docstrings

    for f in files:
        if "__pycache__" in f.parts:
            continue
        # the library's code without docstrings and comments, as the result store hashes
        # it: editing documentation re-executes no page (the API page is not executed)
        data = _without_docstrings(f) if f.suffix == ".py" else f.read_bytes()
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + data + b"\0")
    h.update(platform.python_version().encode())
    h.update("\n".join(f"{name}=={v}" for name, v in page_packages().items()).encode())
    return h.hexdigest()


def page_packages(pyproject: Path = ROOT / "pyproject.toml") -> dict:
    """Installed version of each package the library and the book declare (the project's
    dependencies and its ``book`` extra), by normalized name; None if not installed.

    Not every installed package: installing the ``browser`` extra for ``make test-book``
    must not make the next build execute every page again.
    """
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads(pyproject.read_text())["project"]
    declared = project.get("dependencies", []) + project.get(
        "optional-dependencies", {}).get("book", [])
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    names = sorted({canonicalize_name(Requirement(r).name) for r in declared})
    return {name: installed.get(name) for name in names}


def write_stamp(digest: str, seconds: dict) -> None:
    """Record the inputs digest and the page times (atomically: never half-written)."""
    tmp = STAMP.with_suffix(".tmp")
    tmp.write_text(json.dumps({"inputs": digest, "seconds": seconds}, indent=1))
    tmp.replace(STAMP)


def read_page(path: Path):
    """The page as myst-nb reads it (so that the cache keys agree with Sphinx's)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = config.get("parse", {}).get("myst_enable_extensions", ())
    md_config = MdParserConfig(enable_extensions=set(extensions))
    return read_myst_markdown_notebook(
        path.read_text(), config=md_config, add_source_map=True, path=str(path)
    )


def execute(page: str, blas_threads: int | None = None):
    """Execute one page in its own directory; returns (page, notebook, seconds, error).

    ``blas_threads`` caps the BLAS threads of the page's kernel (it inherits this
    process's environment): with two pages at a time, two-threaded BLAS in each would
    oversubscribe the two cores. Worker processes that pages start for their flows
    already use one thread each (joblib).
    """
    from jupyter_cache.executors.utils import single_nb_execution

    if blas_threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(blas_threads)

    path = ROOT / f"{page}.md"
    nb = read_page(path)
    result = single_nb_execution(
        nb, cwd=str(path.parent), timeout=TIMEOUT, allow_errors=False, meta_override=True
    )
    error = result.exc_string if result.err is not None else None
    return page, nb, result.time, error


def pack_matches(specs) -> bool:
    """Whether the committed pack of the grids (``copyaverage seed`` reads it on Binder)
    holds every run of ``specs`` and agrees with what this build computed or loaded;
    prints what differs otherwise."""
    from copyaverage.grid_pack import compare_with_store, pack_dir

    try:
        check = compare_with_store(pack_dir(), specs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"execute_pages: {exc}", file=sys.stderr)
        return False
    bad = check[~check.agrees]
    if len(check) == len(specs) and bad.empty:
        print(f"execute_pages: all {len(check)} runs agree with {pack_dir()}", flush=True)
        return True
    print(f"execute_pages: the pack {pack_dir()} is out of date: {len(bad)} of {len(check)} "
          f"runs differ or are missing (first: {bad.head(3).to_dict('records')}), "
          f"{len(specs) - len(check)} not in the store; write it again with "
          f"`copyaverage pack` and commit it", file=sys.stderr)
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="pages run at once (>= 1)")
    parser.add_argument("--force", action="store_true", help="drop the cache first")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    from copyaverage.experiments import QUICK_ENV, quick_checks

    try:
        quick = quick_checks()
    except ValueError as exc:
        parser.error(str(exc))
    if quick:
        parser.error(f"{QUICK_ENV}=1 (quick re-runs, for Binder) is set: the book build re-runs "
                     f"the full samples of the committed experiments; unset {QUICK_ENV}")

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    digest = inputs_digest()
    stamp = json.loads(STAMP.read_text()) if STAMP.is_file() else {}
    seconds = stamp.get("seconds", {})
    if args.force or stamp.get("inputs") != digest:
        reason = "--force" if args.force else "the library, results or packages changed"
        if CACHE.exists():
            print(f"execute_pages: dropping the page cache ({reason})", flush=True)
        shutil.rmtree(CACHE, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(CACHE))
    write_stamp(digest, seconds)

    from myst_nb.core.read import is_myst_markdown_notebook

    pages = [p for p in toc_pages()
             if is_myst_markdown_notebook((ROOT / f"{p}.md").read_text())]
    todo = []
    for page in pages:
        try:
            cache.match_cache_notebook(read_page(ROOT / f"{page}.md"))
        except KeyError:
            todo.append(page)
    first = [p for p in todo if p not in RUN_LAST]
    known = seconds or {p: len(SLOW_FIRST) - i for i, p in enumerate(SLOW_FIRST)}
    first.sort(key=lambda p: -known.get(p, 0.0))  # stable: toc order for the rest
    last = [p for p in todo if p in RUN_LAST]
    print(f"execute_pages: {len(pages) - len(todo)} of {len(pages)} pages cached, "
          f"running {len(todo)} with {args.jobs} at a time", flush=True)

    start = time.perf_counter()
    if todo:
        # the grids several pages share, computed once (loaded where stored already)
        from copyaverage.experiments import book_grids
        from copyaverage.sweep import sweep

        specs = book_grids()
        print(f"execute_pages: the shared grids ({len(specs)} runs, through the store)",
              flush=True)
        sweep(specs, n_jobs=args.jobs, progress=True)
        print(f"execute_pages: grids ready at {time.perf_counter() - start:.0f} s",
              flush=True)
        if not pack_matches(specs):
            return 1
    failed = {}
    bar = tqdm(total=len(todo), unit="page", desc="pages")
    with bar, ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for batch in (first, last):
            threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
            running = {pool.submit(execute, p, threads) for p in batch}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    page, nb, secs, error = future.result()
                    elapsed = time.perf_counter() - start
                    bar.update()
                    if error is not None:
                        failed[page] = error
                        bar.write(f"  FAILED {page} after {secs:.0f} s")
                        continue
                    cache.cache_notebook_bundle(
                        CacheBundleIn(nb, str(ROOT / f"{page}.md"),
                                      data={"execution_seconds": secs}),
                        check_validity=False, overwrite=True,
                    )
                    seconds[page] = secs
                    write_stamp(digest, seconds)
                    bar.write(f"  {page}: {secs:.0f} s (at {elapsed:.0f} s)")
    for page, error in failed.items():
        print(f"\n---- {page} failed ----\n{error}", file=sys.stderr)
    print(f"execute_pages: done in {time.perf_counter() - start:.0f} s"
          + (f", {len(failed)} failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
