"""Committed packs of stored runs: the book's shared grids without computing them.

The pages of the book share about 2,500 gradient-flow runs
(:func:`copyaverage.experiments.book_grids`). The build computes them into the result
store; a reader who opens a page on Binder (one or two cores, an empty store) would wait
minutes for them. A *pack* is one
file holding those runs exactly as the store keeps them (end point, loss, gradient norm,
Hessian eigenvalues, why the run stopped, solver statistics, options, timings), committed
under ``results/book_grids/``. Only the trajectory is cut: a packed run keeps its first
and last samples (t = 0 and the end), not the ten per decade between them, which no page
reads for these runs and which would treble the file.

``copyaverage pack``
    computes (through the store) or loads the runs and writes ``pack.npz`` and
    ``meta.json`` (command, code hash, date, machine, wall time, SHA-256 of the pack);
``copyaverage seed``
    puts the packed runs into the result store of this code version, after re-running a
    random sample of them and finding every one equal to its packed result
    (:func:`seed_store`; Binder's ``postBuild`` runs it). If the sample differs, or the
    pack is missing, nothing is seeded and the pages compute the runs as before.

So the pack is never trusted blindly: the runs seeded are vouched for by re-runs under the
current code, and ``make book`` compares every run of the store with the pack
(:func:`compare_with_store`) and fails if one differs, naming the command that refreshes
it. The pack is a cache of results, not a result: CI builds the book from a clean clone,
whose empty store makes the build compute every run itself.

Two results *agree* (:func:`agree`) when they stopped for the same reason and, if they
converged, their losses differ by at most ``LOSS_ATOL`` (1e-10, of
:mod:`copyaverage.experiments`), their network functions by at most that in mean squared difference, and, where the end
point determines the weights (n < k on the population loss: every run here), every weight
that is not that of a silent neuron by at most ``atol`` (1e-7), as in
:func:`~copyaverage.experiments.verify_sample`. Of two runs that did not converge (a ReLU
neuron died, a time limit) only the reason is compared: where a run gives up depends on the
solver's steps, which round-off on another machine can change (for the same reason
:func:`~copyaverage.experiments.verify_sample` re-runs only converged runs).
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from .experiments import (LOSS_ATOL, _function_distance, _weight_difference,
                          _weights_determined, book_grids, file_sha256, provenance,
                          results_root)
from .results import FlowResult, Trajectory
from .store import ResultStore, atomic_write, params_key, result_from_arrays, result_to_arrays
from .sweep import run, sweep

__all__ = [
    "PACK_NAME",
    "pack_dir",
    "write_pack",
    "read_pack",
    "agree",
    "compare_with_store",
    "seed_store",
]

#: The directory under ``results/`` that holds the pack of
#: :func:`~copyaverage.experiments.book_grids`.
PACK_NAME = "book_grids"
_ARRAY_FIELDS = ("a", "W", "eigenvalues", "traj_t", "traj_loss", "traj_grad_norm",
                 "traj_param_norm")


def _ends_only(trajectory: Trajectory) -> Trajectory:
    """The first and last samples of a trajectory (no recorded parameters)."""
    ends = [0, len(trajectory.t) - 1] if len(trajectory.t) > 1 else [0] * len(trajectory.t)
    pick = (lambda x: None if x is None or not len(x) else np.asarray(x)[ends])
    return Trajectory(pick(trajectory.t), pick(trajectory.loss), pick(trajectory.grad_norm),
                      None, pick(trajectory.param_norm))


def pack_dir(root: str | os.PathLike | None = None) -> Path:
    """``results/book_grids`` of the checkout (or of ``root``; see
    :func:`copyaverage.experiments.results_root`)."""
    return results_root(root) / PACK_NAME


def write_pack(out: str | os.PathLike, specs=None, *, n_jobs: int = 2, store=None,
               progress: bool = True, command: str = "copyaverage pack") -> dict:
    """Run (or load from the store) ``specs`` and write ``pack.npz`` and ``meta.json`` to ``out``.

    ``specs`` defaults to :func:`~copyaverage.experiments.book_grids`. Both files are
    written through a temporary file and a rename. Each trajectory keeps its first and
    last samples only (module docstring).

    Returns
    -------
    dict
        The contents of ``meta.json``.
    """
    specs = list(book_grids() if specs is None else specs)
    if not specs:
        raise ValueError("a pack needs at least one run spec")
    out = Path(out)
    start = time.perf_counter()
    results = sweep(specs, store=store, n_jobs=n_jobs, progress=progress, desc="pack")
    elapsed = time.perf_counter() - start
    runs = []
    for spec, result in zip(specs, results):
        result = replace(result, trajectory=_ends_only(result.trajectory))
        runs.append(result_to_arrays(result, spec.params()))
    # One array per field over all runs (with each run's length): 2,500 runs of eight small
    # arrays each cost more in zip headers than in numbers.
    arrays = dict(meta=np.array(json.dumps([json.loads(str(r["meta"])) for r in runs])))
    for name in _ARRAY_FIELDS:
        arrays[name] = np.concatenate([np.ravel(r[name]) for r in runs])
        arrays[f"{name}_len"] = np.array([np.size(r[name]) for r in runs])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(out / "pack.npz", lambda f: f.write(buffer.getvalue()))
    meta = dict(command=command, **provenance(), elapsed_seconds=elapsed, runs=len(specs),
                sum_of_run_seconds=float(sum(r.timings.get("total", 0.0) for r in results)),
                sha256=file_sha256(out / "pack.npz"))
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return meta


def read_pack(path: str | os.PathLike) -> tuple[dict, dict]:
    """The runs of a pack directory: (meta, {store key: FlowResult}).

    Raises
    ------
    FileNotFoundError
        If ``pack.npz`` or ``meta.json`` is missing.
    ValueError
        If the pack's SHA-256 is not the one ``meta.json`` records, or the number of runs
        differs between the two files.
    """
    path = Path(path)
    for name in ("pack.npz", "meta.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} holds no {name}: write it with `copyaverage pack`")
    meta = json.loads((path / "meta.json").read_text())
    digest = file_sha256(path / "pack.npz")
    if digest != meta.get("sha256"):
        raise ValueError(f"{path / 'pack.npz'} has SHA-256 {digest[:16]}..., but meta.json "
                         f"records {str(meta.get('sha256'))[:16]}...: the files do not belong "
                         "together; write them again with `copyaverage pack`")
    results = {}
    with np.load(path / "pack.npz", allow_pickle=False) as z:
        metas = json.loads(str(z["meta"]))
        columns = {name: np.split(z[name], np.cumsum(z[f"{name}_len"])[:-1])
                   for name in _ARRAY_FIELDS}
    if not meta.get("runs") == len(metas) == len(columns["a"]):
        raise ValueError(f"{path}: meta.json counts {meta.get('runs')} runs, pack.npz holds "
                         f"{len(metas)}")
    for i, run_meta in enumerate(metas):
        fields = {name: columns[name][i] for name in _ARRAY_FIELDS}
        fields["W"] = fields["W"].reshape(len(fields["a"]), -1)
        fields["meta"] = np.array(json.dumps(run_meta))
        results[params_key(run_meta["params"])] = result_from_arrays(fields)
    return meta, results


def agree(spec, mine: FlowResult, theirs: FlowResult, atol: float = 1e-7,
          loss_atol: float = LOSS_ATOL) -> bool:
    """Whether two results of ``spec`` are the same run (module docstring)."""
    if mine.stop != theirs.stop or mine.converged != theirs.converged:
        return False
    if not mine.converged:  # where a run gave up depends on the machine (verify_sample)
        return True
    if not abs(mine.loss - theirs.loss) <= loss_atol:
        return False
    distance = _function_distance(mine.a, mine.W, theirs.a, theirs.W, spec.activation)
    if not distance <= loss_atol:
        return False
    return not _weights_determined(spec) or _weight_difference(
        mine.a, mine.W, theirs.a, theirs.W) <= atol


def compare_with_store(path: str | os.PathLike, specs=None, store=None) -> pd.DataFrame:
    """Compare every run of ``specs`` (default :func:`~copyaverage.experiments.book_grids`)
    that the store holds for this code with its packed result.

    Returns
    -------
    DataFrame
        One row per run the store holds: activation, k, n, seed, init, ``in_pack`` and
        ``agrees`` (:func:`agree`; False for a run the pack lacks).
    """
    specs = list(book_grids() if specs is None else specs)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    _, packed = read_pack(path)
    rows = []
    for spec in specs:
        mine = store.load(spec.params())
        if mine is None:
            continue
        theirs = packed.get(params_key(spec.params()))
        rows.append(dict(activation=spec.activation, k=spec.k, n=spec.n, seed=spec.seed,
                         init=spec.init, in_pack=theirs is not None,
                         agrees=theirs is not None and agree(spec, mine, theirs)))
    return pd.DataFrame(rows, columns=["activation", "k", "n", "seed", "init", "in_pack",
                                       "agrees"])


def seed_store(path: str | os.PathLike, specs=None, store=None, *, m: int = 6,
               seed: int | None = None, n_jobs: int = 2) -> dict:
    """Put the packed runs of ``specs`` that the store lacks into the store, if a random
    sample of ``m`` of them, re-run now, agrees with the pack (:func:`agree`).

    Returns
    -------
    dict
        ``seeded`` (runs written), ``already`` (runs the store had), ``sample`` (the
        re-runs: DataFrame with ``agrees`` and ``seconds``), ``pack_code`` (16 hex digits
        of the code the pack was computed with) and ``reason`` (why nothing was seeded,
        or None).
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"m (runs to re-run) must be a positive integer, got {m!r}")
    specs = list(book_grids() if specs is None else specs)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    meta, packed = read_pack(path)
    missing = [s for s in specs if s.params() not in store]
    report = dict(seeded=0, already=len(specs) - len(missing), sample=pd.DataFrame(),
                  pack_code=meta["lib_hash"][:16], reason=None)
    absent = [s for s in missing if params_key(s.params()) not in packed]
    if absent:
        report["reason"] = (f"{len(absent)} of the runs asked for are not in the pack "
                            f"(first: {absent[0]}); write it again with `copyaverage pack`")
        return report
    if not missing:
        return report
    rng = np.random.default_rng(seed)
    picks = [missing[i] for i in sorted(rng.choice(len(missing), size=min(m, len(missing)),
                                                   replace=False))]
    # One BLAS thread per worker, as the sweeps that made the pack ran.
    with parallel_config(backend="loky", inner_max_num_threads=1):
        reruns = Parallel(n_jobs=n_jobs)(delayed(run)(s) for s in picks)
    report["sample"] = pd.DataFrame([
        dict(activation=s.activation, k=s.k, n=s.n, seed=s.seed, init=s.init,
             agrees=agree(s, r, packed[params_key(s.params())]),
             seconds=r.timings.get("total", float("nan")))
        for s, r in zip(picks, reruns)])
    if not report["sample"].agrees.all():
        report["reason"] = ("a re-run differs from its packed result: the pack was computed "
                            "by other code; the pages will compute the runs")
        return report
    store.check_writable()
    for s, r in zip(picks, reruns):  # what was just computed is stored as computed
        store.save(s.params(), r)
    done = {params_key(s.params()) for s in picks}
    for s in missing:
        key = params_key(s.params())
        if key in done:
            continue
        result = packed[key]
        result.message += (f" [seeded from the pack of code {report['pack_code']}, "
                           f"{meta['date'][:10]}]")
        store.save(s.params(), result)
    report["seeded"] = len(missing)
    return report
