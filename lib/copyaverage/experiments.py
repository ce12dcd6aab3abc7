"""Drivers for the paper's gradient-flow experiments (the book's experiment chapters).

Kept out of the core modules: these functions only combine :mod:`copyaverage.sweep`
(runs through the result store), :mod:`copyaverage.classify` and pandas tables.

The k = 50 phase-transition experiment is committed under ``results/erf_k50/``
(end points, a summary table and how they were made). Recompute it all with::

    copyaverage recompute erf_k50 --jobs 2

(:data:`EXPERIMENTS` lists the committed experiments; ``copyaverage verify`` re-runs
a sample of one.)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from .classify import (CA_OPTIMUM, LABELS, NOT_CLASSIFIED, NOT_CONVERGED, PERTURBED_COPY,
                       classify, end_label)
from .configurations import copy_average_point
from .derivatives import closed_form_gradient
from .loss import population_loss
from .teacher import Teacher
from .store import atomic_write, code_hash
from .flow import default_tolerance
from .sweep import RunSpec, StartSpec, grid, run, sweep

__all__ = [
    "EXPERIMENTS",
    "PLANNED",
    "SCALE_EXPERIMENTS",
    "WIDTH_EXPERIMENTS",
    "Experiment",
    "WideExperiment",
    "SampleExperiment",
    "SAMPLE_EXPERIMENT",
    "NOT_CLASSIFIED_SAMPLE",
    "SILENT_OUTGOING",
    "committed_results_dir",
    "find_checkout",
    "results_root",
    "recompute_experiment",
    "K50_DIR",
    "K50_GAUSSIAN_DIR",
    "erf_grid",
    "book_grids",
    "summarize",
    "run_grid",
    "k50_specs",
    "export_endpoints",
    "provenance",
    "file_sha256",
    "CHECKSUMS",
    "write_checksums",
    "check_checksums",
    "load_endpoints",
    "verify_sample",
    "spot_check",
    "quick_checks",
    "QUICK_ENV",
    "QUICK_SECONDS",
    "relabel",
    "first_from",
    "transition_edges",
    "nearest_ca",
    "perturbed_copy_point",
    "perturbed_copy_spec",
]

#: Environment variable naming a directory that holds the committed results (a
#: checkout's ``results/``), for a package installed outside the checkout.
RESULTS_ENV = "COPYAVERAGE_RESULTS"
#: Where this package's files are; an editable install puts them in ``<checkout>/lib/copyaverage``.
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPOSITORY = "https://github.com/copyaverage/living-paper"


def _is_checkout(d: Path) -> bool:
    """A checkout of the repository: its root holds the book's ``_toc.yml`` and ``results/``."""
    return (d / "_toc.yml").is_file() and (d / "results").is_dir()


def find_checkout() -> Path | None:
    """The root of the repository checkout that holds the committed results, or None.

    Looked for first among the parents of this package (an editable install, or the
    package imported from ``lib/``), then in the current directory and its parents
    (a normal install used from inside a clone). A checkout is a directory with
    ``_toc.yml`` and ``results/``.
    """
    for start in (_PACKAGE_DIR, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if _is_checkout(d):
                return d
    return None


def results_root(root: str | os.PathLike | None = None) -> Path:
    """The directory that holds the committed experiments (``<checkout>/results``).

    Parameters
    ----------
    root : path, optional
        Use this directory. Else ``$COPYAVERAGE_RESULTS`` if set, else the
        ``results/`` of :func:`find_checkout`.

    Raises
    ------
    FileNotFoundError
        Outside a checkout, with neither ``root`` nor ``$COPYAVERAGE_RESULTS``. (The
        committed results are not part of the installed package: an installed copy
        would find nothing, and writing there would write into the environment.)
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env).expanduser()
    checkout = find_checkout()
    if checkout is None:
        raise FileNotFoundError(
            f"the committed results live in results/ of a checkout of the repository "
            f"({_REPOSITORY}), and none was found: copyaverage is installed at "
            f"{_PACKAGE_DIR}, and neither that nor the current directory {Path.cwd()} is "
            f"inside a checkout (a directory with _toc.yml and results/). Run from inside a "
            f"clone, set {RESULTS_ENV} to its results/ directory, or give the directory "
            f"explicitly")
    return checkout / "results"


def __getattr__(name: str):
    # K50_DIR and K50_GAUSSIAN_DIR are resolved when used (PEP 562), so that an installed
    # package finds the checkout it is used from, or says clearly that there is none.
    if name == "K50_DIR":
        return committed_results_dir("erf_k50")
    if name == "K50_GAUSSIAN_DIR":
        return committed_results_dir("erf_k50_gaussian")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: The environment variable that makes the pages' re-runs quick (:func:`quick_checks`).
QUICK_ENV = "COPYAVERAGE_QUICK"
#: In quick mode a spot check re-runs at most one run, among those that took at most this
#: many seconds when they were committed (none if no run was that fast).
QUICK_SECONDS = 20.0


def quick_checks() -> bool:
    """Whether ``COPYAVERAGE_QUICK=1``: the pages' spot checks of committed experiments
    (:func:`spot_check`) then re-run at most one run of at most :data:`QUICK_SECONDS`
    each, so that a page runs in a minute or two on Binder (whose ``start`` script sets
    it). The book build refuses to run in quick mode: it re-runs every sample in full.

    Raises
    ------
    ValueError
        For a value other than 0, 1 or empty.
    """
    value = os.environ.get(QUICK_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{QUICK_ENV} must be 1 (quick re-runs) or 0 / unset (full re-runs), "
                         f"got {value!r}")
    return value == "1"


#: A Hessian eigenvalue counts as negative below -NEGATIVE_EIGENVALUE * max |eigenvalue|.
NEGATIVE_EIGENVALUE = 1e-9
#: A stored loss must agree with the one recomputed from its end point to this (absolute).
LOSS_ATOL = 1e-10


def erf_grid(k_values=range(2, 13), seeds=range(20), init="gaussian", activation="erf"):
    """Every (k, n) with 1 <= n < k for the given k, as RunSpecs (std 0.1 for "gaussian")."""
    return [s for k in k_values for s in grid(activation, k, range(1, k), list(seeds), init)]


def book_grids():
    """The runs that several pages of the book share, as RunSpecs: erf, k = 2..12, and
    ReLU, k = 2..10 (std-0.1 Gaussian starts), and erf with Glorot starts for k = 6 and
    10; every 1 <= n < k, seeds 0-19.

    ``scripts/execute_pages.py`` runs them into the result store before it executes the
    pages, so that two pages running at the same time do not both compute them.
    """
    return (erf_grid(range(2, 13)) + erf_grid(range(2, 11), activation="relu")
            + erf_grid((6, 10), init="glorot"))


#: The summary label of a converged finite-sample run. Its class is that of the population
#: critical point reached from it (:mod:`copyaverage.distillation`), not of the raw point.
NOT_CLASSIFIED_SAMPLE = "not classified (finite sample)"


def _row(spec: RunSpec, result) -> dict:
    teacher = spec.teacher()
    ev = result.hessian_eigenvalues
    scale = float(np.abs(ev).max()) if ev is not None and len(ev) else float("nan")
    n_neg = int(np.sum(ev < -NEGATIVE_EIGENVALUE * scale)) if ev is not None else -1
    row = dict(activation=spec.activation, k=spec.k, n=spec.n, seed=spec.seed, init=spec.init,
               loss=result.loss, grad_norm=result.grad_norm, converged=bool(result.converged),
               status=result.status, min_eigenvalue=result.min_eigenvalue,
               negative_eigenvalues=n_neg, time=result.timings.get("total", float("nan")))
    if spec.samples is not None:  # a finite-sample end point: see copyaverage.distillation
        row.update(samples=spec.samples, data_seed=spec.data_seed,
                   label=NOT_CONVERGED if not result.converged else NOT_CLASSIFIED_SAMPLE,
                   ca_optimum_loss=float("nan"), group_sizes=None, min_copy_cosine=float("nan"))
    elif result.converged and spec.n < spec.k:
        c = classify(result.a, result.W, teacher, spec.activation, loss=result.loss)
        row.update(label=c.label, ca_optimum_loss=c.ca_optimum_loss,
                   group_sizes=None if c.group_sizes is None else "+".join(map(str, c.group_sizes)),
                   min_copy_cosine=float(np.min(c.copy_cosine)))
    else:  # the classes are defined for n < k only
        row.update(label=NOT_CONVERGED if not result.converged else NOT_CLASSIFIED,
                   ca_optimum_loss=float("nan"), group_sizes=None, min_copy_cosine=float("nan"))
    return row


def summarize(specs, results) -> pd.DataFrame:
    """One row per run: parameters, loss, gradient norm, Hessian signature, class."""
    return pd.DataFrame([_row(s, r) for s, r in zip(specs, results)])


def run_grid(specs, *, n_jobs: int = 2, progress: bool = False, store=None):
    """Run (or load from the result store) every spec; return (results, summary table)."""
    results = sweep(specs, store=store, n_jobs=n_jobs, progress=progress)
    return results, summarize(specs, results)


def nearest_ca(a, W, teacher: Teacher, activation: str):
    """The CA configuration nearest to a student, and how far it is in function space.

    Teacher neuron j goes to the group of the student neuron that contributes most
    along it, argmax_i a_i w_i . v_j; each student neuron then becomes the optimal
    one-neuron student of its group (:func:`copyaverage.configurations.copy_average_point`).
    The distance is the function-space distance E_x[(f(x) - f_CA(x))^2], which,
    unlike a distance between weights, does not depend on how a ReLU neuron splits
    its scale between a_i and ``|w_i|``.

    Returns
    -------
    dict with ``groups`` (None when some student neuron gets no teacher neuron),
    ``distance``, ``ca_loss`` (loss of the CA configuration) and ``loss``.
    """
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    contribution = a[:, None] * (W @ teacher.V.T)  # (n, k)
    owner = np.argmax(contribution, axis=0)
    groups = [tuple(np.flatnonzero(owner == i)) for i in range(len(a))]
    loss = population_loss(a, W, teacher, activation)
    if any(len(g) == 0 for g in groups):
        return dict(groups=None, distance=float("nan"), ca_loss=float("nan"), loss=loss)
    a_ca, W_ca = copy_average_point(groups, teacher, activation)
    distance = population_loss(a, W, Teacher(a_ca, W_ca), activation)
    return dict(groups=groups, distance=distance,
                ca_loss=population_loss(a_ca, W_ca, teacher, activation), loss=loss)


def perturbed_copy_spec(n: int, teacher: Teacher, activation: str = "erf",
                        noise: float = 1e-3, seed: int = 0) -> StartSpec:
    """The gradient-flow run from n near-copies, as a :class:`~copyaverage.sweep.StartSpec`.

    Starts at a_i = a*_i, w_i = v_i + noise * N(0, I) for i < n (each student neuron
    a copy of its own teacher neuron); the end point is the "perturbed copy"
    solution, whatever seed gradient flow from a random start would need to find it.
    """
    if not 1 <= n < teacher.k:
        raise ValueError(f"n must satisfy 1 <= n < k = {teacher.k}, got {n}")
    rng = np.random.default_rng(seed)
    W0 = teacher.V[:n] + noise * rng.standard_normal((n, teacher.d))
    return StartSpec(activation, teacher.a[:n].copy(), W0, teacher,
                     label=f"near copies, noise {noise:g}, seed {seed}")


def perturbed_copy_point(n: int, teacher: Teacher, activation: str = "erf",
                         noise: float = 1e-3, seed: int = 0, store=None):
    """The critical point that gradient flow reaches from n near-copies
    (:func:`perturbed_copy_spec`), through the result store.

    Returns the :class:`~copyaverage.results.FlowResult`.
    """
    spec = perturbed_copy_spec(n, teacher, activation, noise, seed)
    return sweep([spec], store=store, n_jobs=1, progress=False)[0]


# ------------------------------------------------------------- k = 50 -----
def k50_specs(n_values=range(1, 50), seeds=range(20), init: str = "glorot"):
    """The paper's phase-transition experiment: erf, k = 50, Glorot initialization.

    ``init="gaussian"`` gives the same grid with the std-0.1 initialization.
    """
    if init not in ("glorot", "gaussian"):
        raise ValueError(f"init must be 'glorot' or 'gaussian', got {init!r}")
    return grid("erf", 50, list(n_values), list(seeds), init)


def _git_commit() -> str | None:
    """The commit checked out in the repository this library is imported from (with
    ``+changes`` if its files differ from it), or None outside a git checkout."""
    import subprocess

    root = find_checkout()
    if root is None:
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "lib"], check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


def provenance() -> dict:
    """``lib_hash``, ``git_commit`` (None outside a git checkout; ``+changes`` when the
    library's files differ from it), ``date`` (UTC, ISO 8601) and ``machine`` (with the
    versions of Python, NumPy, SciPy and autograd) for a committed result's meta.json."""
    from importlib.metadata import version

    import scipy

    return dict(lib_hash=code_hash(), git_commit=_git_commit(),
                date=_dt.datetime.now(_dt.timezone.utc).isoformat(),
                machine=dict(platform=platform.platform(), processor=platform.processor(),
                             cpus=os.cpu_count(), python=platform.python_version(),
                             numpy=np.__version__, scipy=scipy.__version__,
                             autograd=version("autograd")))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, read in blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_endpoints(specs, results, out: str | os.PathLike, command: str, elapsed: float):
    """Write end points, summary table and provenance of a sweep to ``out``.

    Files: ``endpoints.npz`` (for run i: ``a_i``, ``W_i``), ``summary.csv``
    (:func:`summarize`, in the order of the end points), ``meta.json``
    (command, library hash, git commit, date, machine and versions, wall-clock time, the
    run specs) and ``SHA256SUMS`` (:func:`write_checksums`).
    Each file is written to a temporary name and moved into place.
    """
    out = Path(out)
    arrays = {}
    for i, r in enumerate(results):
        arrays[f"a_{i}"] = r.a
        arrays[f"W_{i}"] = r.W
    atomic_write(out / "endpoints.npz", lambda f: np.savez_compressed(f, **arrays))
    table = summarize(specs, results)
    atomic_write(out / "summary.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    meta = dict(
        command=command, **provenance(), elapsed_seconds=elapsed, runs=len(specs),
        sum_of_run_seconds=float(sum(r.timings.get("total", 0.0) for r in results)),
        specs=[dict(s.params()) for s in specs],
    )
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    write_checksums(out)
    return table


#: The checksum file of a committed experiment, in the format of ``sha256sum``.
CHECKSUMS = "SHA256SUMS"


def write_checksums(path: str | os.PathLike,
                    names=("endpoints.npz", "summary.csv", "meta.json")) -> Path:
    """Write ``path/SHA256SUMS`` for the files ``names`` (``sha256sum -c SHA256SUMS``
    checks them; so does :func:`load_endpoints`)."""
    path = Path(path)
    text = "".join(f"{file_sha256(path / name)}  {name}\n" for name in names)
    return atomic_write(path / CHECKSUMS, lambda f: f.write(text.encode()))


def check_checksums(path: str | os.PathLike) -> None:
    """Raise ValueError, naming the file, if a file listed in ``path/SHA256SUMS`` does not
    have its checksum (nothing to check without the file)."""
    path = Path(path)
    if not (path / CHECKSUMS).is_file():
        return
    for line in (path / CHECKSUMS).read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        found = file_sha256(path / name.lstrip("*"))
        if found != digest:
            raise ValueError(f"{path / name} has SHA-256 {found[:16]}..., but {CHECKSUMS} "
                             f"records {digest[:16]}...: the file changed after it was "
                             "written")


def load_endpoints(path: str | os.PathLike):
    """Read what :func:`export_endpoints` wrote: (specs, end points, summary, meta).

    The three files are checked against each other (and against ``SHA256SUMS``, where
    it exists: :func:`check_checksums`): ``meta.json`` has a
    ``lib_hash`` (64 hex digits) and ``runs`` equal to its number of specs; the
    summary has one row per spec, with the spec's activation, k, n, seed and
    init; ``endpoints.npz`` holds exactly ``a_i`` of shape (n,) and ``W_i`` of
    shape (n, d) for every run i. (Finiteness is not required here: a run that
    failed may have non-finite weights; :func:`verify_sample` and :func:`relabel`
    judge the values.)

    Raises
    ------
    ValueError
        Naming the first file, run or row that does not fit.
    """
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    check_checksums(path)
    table = pd.read_csv(path / "summary.csv")
    specs = []
    for p in meta["specs"]:
        opts = tuple(sorted(p["options"].items()))
        specs.append(RunSpec(p["activation"], p["k"], p["n"], p["seed"], p["init"],
                             None if p["d"] == p["k"] + 1 else p["d"],
                             p["std"] if p["std"] is not None else 0.1, opts,
                             samples=p.get("samples"), data_seed=p.get("data_seed", 0)))
    lib_hash = meta.get("lib_hash")
    if not (isinstance(lib_hash, str) and re.fullmatch(r"[0-9a-f]{64}", lib_hash)):
        raise ValueError(f"{path / 'meta.json'}: lib_hash must be 64 lower-case hex digits "
                         f"(copyaverage.store.code_hash), got {lib_hash!r}")
    if meta.get("runs") != len(specs):
        raise ValueError(f"{path / 'meta.json'}: runs = {meta.get('runs')!r} but it lists "
                         f"{len(specs)} run specs")
    if len(table) != len(specs):
        raise ValueError(f"{path / 'summary.csv'} has {len(table)} rows for {len(specs)} runs")
    for i, (s, row) in enumerate(zip(specs, table.itertuples(index=False))):
        stored = (row.activation, row.k, row.n, row.seed, row.init)
        if stored != (s.activation, s.k, s.n, s.seed, s.init):
            raise ValueError(f"{path / 'summary.csv'}: row {i} is (activation, k, n, seed, init) = "
                             f"{stored}, but run {i} in meta.json is "
                             f"{(s.activation, s.k, s.n, s.seed, s.init)}")
    with np.load(path / "endpoints.npz") as z:
        expected = {f"{x}_{i}" for i in range(len(specs)) for x in "aW"}
        if set(z.files) != expected:
            extra, missing = sorted(set(z.files) - expected), sorted(expected - set(z.files))
            raise ValueError(f"{path / 'endpoints.npz'} must hold a_i and W_i for the {len(specs)} "
                             f"runs; missing {missing[:4]}, unexpected {extra[:4]}")
        ends = [(z[f"a_{i}"], z[f"W_{i}"]) for i in range(len(specs))]
    for i, (s, (a, W)) in enumerate(zip(specs, ends)):
        if a.shape != (s.n,) or W.shape != (s.n, s.dim):
            raise ValueError(f"{path / 'endpoints.npz'}: end point {i} has shapes a {a.shape}, "
                             f"W {W.shape}; run {i} (n = {s.n}, d = {s.dim}) needs "
                             f"({s.n},) and ({s.n}, {s.dim})")
    return specs, ends, table, meta


#: A neuron whose outgoing weight is at most this in absolute value (in both end points
#: compared) is *silent*. The loss does not depend on its incoming vector, which therefore
#: is not determined by the flow's end point (see :func:`verify_sample`).
SILENT_OUTGOING = 1e-9


def _weight_difference(a1, W1, a2, W2) -> float:
    """Largest |difference| over the entries of (a, W) that the end point determines: every
    a_i, and the rows w_i of the neurons that are not silent (``|a_i|`` above
    :data:`SILENT_OUTGOING` in either end point). The loss is flat in the incoming vector
    of a silent neuron, so two runs that differ only by round-off can leave it anywhere
    along that flat direction (seen at the zero-loss end points of students wider than the
    teacher: 6e-5 between two computations of the same run). inf for other shapes, NaN if
    any compared entry is NaN."""
    if np.shape(a1) != np.shape(a2) or np.shape(W1) != np.shape(W2):
        return float("inf")
    a1, a2, W1, W2 = (np.asarray(x, dtype=float) for x in (a1, a2, W1, W2))
    live = ~((np.abs(a1) <= SILENT_OUTGOING) & (np.abs(a2) <= SILENT_OUTGOING))
    diff = np.abs(np.concatenate([np.ravel(a1 - a2), np.ravel((W1 - W2)[live])]))
    return float(np.max(diff))  # np.max propagates NaN (Python's max(x, nan) is x)


def _function_distance(a1, W1, a2, W2, activation: str = "erf") -> float:
    """E[(f_1 - f_2)^2] of two networks (exact; the second as the teacher); NaN for
    non-finite or mismatched weights."""
    try:
        return float(population_loss(a1, W1, Teacher(a2, W2), activation))
    except ValueError:
        return float("nan")


def _weights_determined(spec: RunSpec) -> bool:
    """Whether the end point of ``spec`` determines its weights (up to silent neurons): a
    student narrower than the teacher (n < k), on the population loss or on more samples
    than parameters (see :func:`verify_sample`)."""
    if spec.n >= spec.k:
        return False
    return spec.samples is None or spec.samples > spec.n * (spec.dim + 1)


def verify_sample(path, m: int = 5, seed: int | None = None, atol: float = 1e-7,
                  loss_atol: float = LOSS_ATOL, max_seconds: float | None = None):
    """Re-run ``m`` randomly chosen converged stored runs and compare with what is stored.

    ``max_seconds`` (optional) draws only from runs whose stored wall time (column
    ``time`` of the summary) is at most that many seconds, for experiments whose
    slowest runs would make a build too long; say so wherever the check is reported.
    In quick mode (:func:`quick_checks`) at most one run of at most :data:`QUICK_SECONDS`
    is re-run, and the table is empty if there is none.

    A re-run ``matches`` when it converged, the stored summary says it converged, its
    network function is the stored one (``function_distance`` E[(f_rerun - f_stored)^2]
    at most ``loss_atol``), its loss agrees with the stored loss to ``loss_atol``, and,
    where the end point determines its weights (``weights_compared``), they agree to
    ``atol`` in every entry of (a, W) except the incoming vectors of silent neurons
    (outgoing weight 0 to :data:`SILENT_OUTGOING`; the loss does not depend on them). The
    weights are not compared for students at least as wide as the teacher (n >= k) and for
    flows on at most as many samples as parameters: their end points lie on manifolds of
    equal loss (zero-loss fits; two neurons sharing a teacher neuron can split its outgoing
    weight in any proportion), along which round-off alone moves them (by 3e-7 at k = 8,
    n = 16, with the same function). A NaN or a shape that differs never agrees.

    Returns
    -------
    DataFrame
        One row per re-run: run index, n, seed, ``converged`` (re-run),
        ``stored_converged``, ``max_weight_difference``, ``weights_compared``,
        ``function_distance``, ``loss_difference``, ``matches`` and ``seconds``.
    """
    specs, ends, table, _ = load_endpoints(path)
    rng = np.random.default_rng(seed)
    quick = quick_checks()
    if quick:
        m = min(m, 1)
        max_seconds = QUICK_SECONDS if max_seconds is None else min(max_seconds, QUICK_SECONDS)
    rows = []
    # Runs stored as not converged stopped at a wall-clock limit or a stall: their end
    # points depend on the machine, so the sample is drawn from the converged ones.
    eligible = table.converged.to_numpy(dtype=bool).copy()
    if max_seconds is not None:
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        eligible &= table.time.to_numpy(dtype=float) <= max_seconds
    pool = np.flatnonzero(eligible)
    if pool.size == 0 and quick:
        return pd.DataFrame(columns=_VERIFY_COLUMNS).astype({"matches": bool})
    if pool.size == 0:
        raise ValueError(f"{path}: no converged run to re-run"
                         + (f" among those that took <= {max_seconds} s" if max_seconds else ""))
    picks = sorted(rng.choice(pool, size=min(m, pool.size), replace=False))
    # Re-run as the sweep ran them: in worker processes with one BLAS thread. Threaded BLAS
    # rounds differently, and at degenerate end points (students with n >= k, whose
    # zero-loss minima have flat directions) that moves the end point along them (by
    # 6e-6 at k = 12, n = 36), while one thread gives the stored end point bit for bit.
    with parallel_config(backend="loky", inner_max_num_threads=1):
        reruns = Parallel(n_jobs=2)(delayed(run)(specs[i]) for i in picks)
    for i, r in zip(picks, reruns):
        a, W = ends[i]
        diff = _weight_difference(r.a, r.W, a, W)
        fdist = _function_distance(r.a, r.W, a, W, specs[i].activation)
        loss_diff = abs(r.loss - float(table.loss[i]))
        stored_converged = bool(table.converged[i])
        compared = _weights_determined(specs[i])
        ok = (r.converged and stored_converged and fdist <= loss_atol
              and loss_diff <= loss_atol and (diff <= atol or not compared))
        rows.append(dict(run=int(i), n=specs[i].n, seed=specs[i].seed, converged=r.converged,
                         stored_converged=stored_converged, max_weight_difference=diff,
                         weights_compared=compared, function_distance=fdist,
                         loss_difference=loss_diff, matches=bool(ok),
                         seconds=r.timings["total"]))
    return pd.DataFrame(rows, columns=_VERIFY_COLUMNS)


_VERIFY_COLUMNS = ["run", "n", "seed", "converged", "stored_converged", "max_weight_difference",
                   "weights_compared", "function_distance", "loss_difference", "matches",
                   "seconds"]


def spot_check(path, m: int, *, max_seconds: float | None = None, **options) -> pd.DataFrame:
    """:func:`verify_sample`, then fail unless all ``m`` re-runs match.

    In quick mode (:func:`quick_checks`) it re-runs at most one run of at most
    :data:`QUICK_SECONDS` (none if no run was that fast), prints how many of the ``m``
    re-runs of a build it made, and fails only if one of them does not match.

    Raises
    ------
    AssertionError
        With the table of re-runs, if one does not match (or, outside quick mode, fewer
        than ``m`` were made).
    """
    check = verify_sample(path, m=m, max_seconds=max_seconds, **options)
    if quick_checks():
        print(f"{QUICK_ENV}=1: re-ran {len(check)} of the {m} runs of {Path(path).name} that "
              f"a build re-runs")
    else:
        assert len(check) == m, check
    assert check.matches.all(), check
    return check


def relabel(ends, table: pd.DataFrame, k: int, activation: str = "erf", tol: float | None = None,
            loss_atol: float = LOSS_ATOL):
    """Recompute, from the stored end points, what a summary table says about them.

    For every run: the loss and the gradient norm (closed forms) at the stored end
    point; ``converged`` as gradient norm <= ``tol`` (the stored flag is kept
    when the norm is within 1 % of ``tol``, where the round-off of two
    evaluations could decide); and the class, by this library's classifier with
    the recomputed loss ("not converged" for runs that did not converge, "not
    classified (n >= k)" for converged students at least as wide as the teacher). A
    non-finite end point gets a NaN loss and counts as not converged (a stored
    NaN loss then agrees).

    Parameters
    ----------
    ends : list of (a, W)
        As returned by :func:`load_endpoints`, in the order of ``table``.
    table : DataFrame
        Its summary (columns ``n``, ``converged``, ``loss``, ``grad_norm``, ``label``).
    k : int
        Teacher width (unit-orthonormal teacher, d = k + 1).
    activation : str
    tol : float, optional
        Gradient-norm tolerance; default that of
        :func:`copyaverage.flow.default_tolerance` (1e-12 for erf).
    loss_atol : float
        A stored loss further than this from the recomputed one counts as changed.

    Returns
    -------
    table : DataFrame
        A copy with ``loss``, ``grad_norm``, ``converged`` and ``label`` recomputed.
    changed : int
        How many rows differ from the stored ones in label, converged flag or loss.

    Raises
    ------
    ValueError
        For a different number of end points and rows, or an end point whose
        shapes do not fit its row's n (a (n,), W (n, k + 1)).
    """
    if len(ends) != len(table):
        raise ValueError(f"{len(ends)} end points but {len(table)} table rows")
    teacher = Teacher.orthonormal(k)
    tol = default_tolerance(activation) if tol is None else float(tol)
    losses, norms, flags, labels = [], [], [], []
    for i, ((a, W), n, stored_flag) in enumerate(zip(ends, table.n, table.converged)):
        a, W = np.asarray(a), np.asarray(W)
        if a.shape != (n,) or W.shape != (n, teacher.d):
            raise ValueError(f"end point {i} has shapes a {a.shape}, W {W.shape}; its row says "
                             f"n = {n}, so ({n},) and ({n}, {teacher.d}) (k = {k})")
        if np.all(np.isfinite(a)) and np.all(np.isfinite(W)):
            loss = population_loss(a, W, teacher, activation)
            grad_norm = float(np.linalg.norm(closed_form_gradient(a, W, teacher, activation)))
        else:
            loss = grad_norm = float("nan")
        converged = bool(grad_norm <= tol)
        if abs(grad_norm - tol) <= 0.01 * tol:
            converged = bool(stored_flag)
        label = end_label(a, W, teacher, activation, converged, loss)
        losses.append(loss)
        norms.append(grad_norm)
        flags.append(converged)
        labels.append(label)
    out = table.copy()
    out["loss"], out["grad_norm"], out["converged"], out["label"] = losses, norms, flags, labels
    stored_loss = table.loss.to_numpy(dtype=float)
    new_loss = out.loss.to_numpy()
    loss_changed = ~((np.abs(new_loss - stored_loss) <= loss_atol)
                     | (np.isnan(new_loss) & np.isnan(stored_loss)))
    changed = ((out.label.to_numpy() != table.label.to_numpy())
               | (out.converged.to_numpy() != table.converged.to_numpy(dtype=bool))
               | loss_changed)
    return out, int(changed.sum())


def first_from(mask: pd.Series):
    """The smallest index from which ``mask`` holds at every larger index, or None.

    ``mask`` is a boolean Series on consecutive integers (student widths n).
    """
    values = mask.to_numpy(dtype=bool)
    if len(values) == 0 or not values[-1]:
        return None
    fails = np.flatnonzero(~values)
    return int(mask.index[fails[-1] + 1]) if len(fails) else int(mask.index[0])


def transition_edges(table: pd.DataFrame, ca_loss: pd.Series) -> pd.Series:
    """Where the end points of a sweep at fixed k switch from the CA optimum to perturbed copies.

    Parameters
    ----------
    table : DataFrame
        Converged runs of one k, with columns ``n``, ``label``, ``loss``.
    ca_loss : Series
        Loss of the CA optimum indexed by every n of the sweep.

    Returns
    -------
    Series (entries None where there is no such n), indexed by what each edge means.
    """
    ns = ca_loss.index
    share = (table.groupby("n").label.value_counts(normalize=True).unstack(fill_value=0.0)
             .reindex(index=ns, columns=list(LABELS), fill_value=0.0))
    pc_loss = table[table.label == PERTURBED_COPY].groupby("n").loss.min()
    gap = (pc_loss - ca_loss.reindex(pc_loss.index)).reindex(ns)  # < 0: perturbed copy better
    ca_all, pc, ca_any = share[CA_OPTIMUM] == 1.0, share[PERTURBED_COPY], share[CA_OPTIMUM] > 0
    return pd.Series({
        "every seed ends at the CA optimum, up to n =":
            int(ns[~ca_all.to_numpy()].min()) - 1 if not ca_all.all() else int(ns.max()),
        "first n with a perturbed copy": int(pc_loss.index.min()) if len(pc_loss) else None,
        "first n with a perturbed-copy majority":
            int(ns[(pc > 0.5).to_numpy()].min()) if (pc > 0.5).any() else None,
        "perturbed copies the majority for every n from": first_from(pc > 0.5),
        "every seed ends at a perturbed copy, for every n from": first_from(pc == 1.0),
        "last n with a seed at the CA optimum":
            int(ns[ca_any.to_numpy()].max()) if ca_any.any() else None,
        "the perturbed copy has the lower loss from n =": first_from(gap < 0),
    }, dtype=object)


# ------------------------------------------------- committed experiments -----
@dataclass(frozen=True)
class Experiment:
    """A committed experiment: its runs and the directory of ``results/`` that holds them.

    Attributes
    ----------
    name : str
        Its name on the command line (``copyaverage recompute NAME``), also the
        directory under ``results/``.
    description : str
    init : {"glorot", "gaussian"}
        Initialization scheme (:func:`copyaverage.flow.initialize`).
    k : int
        Teacher neurons (unit-orthonormal teacher, d = k + 1).
    n_values, seeds : tuple of int
        Student widths and seeds; the runs are every combination (erf).
    std : float
        Standard deviation of every initial weight for ``init="gaussian"``.
    activation : str
        "erf" (default) or "relu".
    options : tuple of (name, value) pairs
        Gradient-flow options of every run (``copyaverage.sweep.FLOW_OPTIONS``).
    """

    name: str
    description: str
    init: str
    k: int = 50
    n_values: tuple = tuple(range(1, 50))
    seeds: tuple = tuple(range(20))
    std: float = 0.1
    activation: str = "erf"
    options: tuple = ()

    def specs(self) -> list[RunSpec]:
        return grid(self.activation, self.k, list(self.n_values), list(self.seeds), self.init,
                    std=self.std, **dict(self.options))


def _width_experiment(k: int, n_lo: int, n_hi: int) -> Experiment:
    """Basins across teacher widths: erf, Glorot, 20 seeds, n_lo <= n <= n_hi."""
    return Experiment(f"erf_k{k}", f"erf, k = {k}, n = {n_lo}..{n_hi}, 20 Glorot seeds "
                      f"(basins across teacher widths)", "glorot", k, tuple(range(n_lo, n_hi + 1)))


def _scale_experiment(label: str, std: float) -> Experiment:
    """Basins against the initialization scale: k = 50, n = 15..40, every weight N(0, std^2)."""
    return Experiment(f"erf_k50_s{label}", f"erf, k = 50, n = 15..40, 20 seeds, every initial "
                      f"weight N(0, {label}^2) (basins against initialization scale)", "gaussian",
                      n_values=tuple(range(15, 41)), std=std)


@dataclass(frozen=True)
class WideExperiment:
    """A committed experiment of students at least as wide as the teacher (n >= k).

    Runs: erf, unit-orthonormal teacher (d = k + 1), for every k of ``k_values`` the five
    widths n of :meth:`widths`, every initialization of ``inits`` (std 0.1 for
    "gaussian") and every seed; in that order (k, then n, then
    initialization, then seed). ``n_values`` replaces those five widths for every k.
    ``options`` are gradient-flow options of every run
    (``copyaverage.sweep.FLOW_OPTIONS``).
    """

    name: str
    description: str
    k_values: tuple
    inits: tuple = ("gaussian", "glorot")
    seeds: tuple = tuple(range(20))
    options: tuple = ()
    n_values: tuple | None = None

    def widths(self, k: int) -> list[int]:
        """The widths run for teacher width k: ``n_values`` if given, else k, k + 1,
        ceil(3k/2), 2k and 3k."""
        if self.n_values is not None:
            return sorted(self.n_values)
        return sorted({k, k + 1, -(-3 * k // 2), 2 * k, 3 * k})

    def specs(self) -> list[RunSpec]:
        return [RunSpec("erf", k, n, seed, init, options=self.options) for k in self.k_values
                for n in self.widths(k) for init in self.inits for seed in self.seeds]


@dataclass(frozen=True)
class SampleExperiment:
    """A committed experiment of full-batch flows on finite samples (data-free distillation).

    Runs: erf, unit-orthonormal teacher (d = k + 1), for every cell (k, n) of ``cells``,
    every sample size N of ``sample_sizes`` and every seed: the gradient flow on the
    empirical loss of N inputs drawn with data seed = seed, from the start of that seed
    (``init``, std 0.1 for "gaussian"); in that order (cell, N, seed). The population runs
    from the same starts are :meth:`population_specs`.
    """

    name: str
    description: str
    cells: tuple
    sample_sizes: tuple
    seeds: tuple = tuple(range(20))
    init: str = "gaussian"
    options: tuple = ()

    def specs(self) -> list[RunSpec]:
        return [RunSpec("erf", k, n, seed, self.init, options=self.options, samples=N,
                        data_seed=seed)
                for k, n in self.cells for N in self.sample_sizes for seed in self.seeds]

    def population_specs(self) -> list[RunSpec]:
        """The population runs from the same starts, in the order (cell, seed)."""
        return [RunSpec("erf", k, n, seed, self.init) for k, n in self.cells
                for seed in self.seeds]


def _half_decades(lo: int, hi: int) -> tuple:
    """10^lo, 10^(lo + 1/2), ..., 10^hi, rounded to integers."""
    return tuple(int(round(10 ** (e / 2))) for e in range(2 * lo, 2 * hi + 1))


#: The finite-sample experiment of notes/distillation.md, a key of :data:`EXPERIMENTS`.
SAMPLE_EXPERIMENT = SampleExperiment(
    "erf_samples", "erf, k = 4, 6, 8, 10, 12 with n = k - 1 and n = k / 2, 20 std-0.1 seeds, "
    "full-batch flow on N = 10, 32, 100, ..., 100000 teacher-labelled Gaussian inputs (data "
    "seed = seed); 300 s per run", tuple((k, n) for k in (4, 6, 8, 10, 12) for n in (k // 2, k - 1)),
    _half_decades(1, 5), options=(("max_time", 300.0),))

#: The experiments whose end points are committed under ``results/<name>/``.
EXPERIMENTS = {
    "erf_k50": Experiment("erf_k50", "erf, k = 50, n = 1..49, 20 Glorot seeds (the paper)",
                          "glorot"),
    "erf_k50_gaussian": Experiment("erf_k50_gaussian", "the same 980 runs from Gaussian std-0.1 "
                                   "starts", "gaussian"),
    # basins across k (0.3 k to 0.8 k at least; every n for k <= 30)
    "erf_k20": _width_experiment(20, 1, 19),
    "erf_k30": _width_experiment(30, 1, 29),
    "erf_k40": _width_experiment(40, 12, 32),
    # k = 70: every n would cost too much on two cores, so a window of +-6 around the
    # switch that H1 predicts (pc_minimum_from + 2 = 32), chosen before the runs
    "erf_k70": _width_experiment(70, 26, 38),
    # basins against the scale of the initialization (std 0.1 is erf_k50_gaussian)
    "erf_k50_s1e-3": _scale_experiment("1e-3", 1e-3),
    "erf_k50_s1e-2": _scale_experiment("1e-2", 1e-2),
    # students wider than the teacher, to prune (chapter "Wider than the teacher, then
    # pruned"): five widths from k to 3k, which keeps the k = 12 runs to minutes. At the
    # zero-loss end points of the widest students the gradient's round-off floor is about
    # 1e-12 (k = 12, n = 36, seed 0: loss exactly 0 and |g| = 1.1e-12 after 60 s of
    # stepping), so these runs stop at 1e-11, and at 600 s of wall time
    "erf_wide": WideExperiment(
        "erf_wide", "erf, k = 4, 8, 12, n from k to 3k (k, k + 1, 3k/2, 2k, 3k), 20 seeds, "
        "std-0.1 and Glorot starts (students wider than the teacher); gradient tolerance "
        "1e-11, 600 s per run", (4, 8, 12), options=(("max_time", 600.0), ("tol", 1e-11))),
    # spot checks of students wider than the teacher at the paper's scale (minutes per run)
    "erf_wide_k50": WideExperiment(
        "erf_wide_k50", "erf, k = 50, n = 50, 55, 60, Glorot seeds 0..2 (students wider than "
        "the teacher at the paper's scale); gradient tolerance 1e-11, 1800 s per run", (50,),
        inits=("glorot",), seeds=(0, 1, 2), options=(("max_time", 1800.0), ("tol", 1e-11)),
        n_values=(50, 55, 60)),
    # basin fractions near the switch (n_sw = 24) with binomial half-widths < 0.07
    "erf_k50_seeds200": Experiment(
        "erf_k50_seeds200", "erf, k = 50, n = 23, 24, 25, 200 Glorot seeds (basin fractions "
        "near the switch)", "glorot", n_values=(23, 24, 25), seeds=tuple(range(200))),
    # ReLU at the paper's scale (issue 12): the paper's protocol, n = 1..49, 20 Glorot seeds
    "relu_k50": Experiment("relu_k50", "ReLU, k = 50, n = 1..49, 20 Glorot seeds (the paper's "
                           "protocol for ReLU)", "glorot", activation="relu"),
    # full-batch flows on finite samples (chapter "Distillation from noise")
    "erf_samples": SAMPLE_EXPERIMENT,
    # one more decade of N where it is cheapest (the whole grid at 1e6: ~7 CPU hours)
    "erf_samples_1e6": SampleExperiment(
        "erf_samples_1e6", "erf, k = 4, 6 with n = k / 2 and k - 1, 20 std-0.1 seeds, "
        "full-batch flow on N = 1000000 teacher-labelled Gaussian inputs (data seed = seed); "
        "3000 s per run", tuple((k, n) for k in (4, 6) for n in (k // 2, k - 1)),
        (1_000_000,), options=(("max_time", 3000.0),)),
    # spot checks at the paper's scale, below and above the Glorot switch (n_sw = 24)
    "erf_samples_k50": SampleExperiment(
        "erf_samples_k50", "erf, k = 50, n = 20 and 30, Glorot seeds 0..2 (the starts of "
        "erf_k50), full-batch flow on N = 10000 teacher-labelled Gaussian inputs (data seed "
        "= seed); 1800 s per run", ((50, 20), (50, 30)), (10_000,), seeds=(0, 1, 2),
        init="glorot", options=(("max_time", 1800.0),)),
}

#: Experiments defined (the recompute command runs them) whose results are not committed
#: yet: too long for the sessions so far. The book names them as not computed.
PLANNED = {
    # k = 100: a window of +-6 around the switch that H1 predicts (pc_minimum_from + 2 = 44),
    # chosen before the runs
    "erf_k100": _width_experiment(100, 38, 50),
    "erf_k50_s1": _scale_experiment("1", 1.0),
}

#: Teacher width k -> the experiment of Glorot students at that k that the basins chapter
#: compares across widths (a key of :data:`EXPERIMENTS` or of :data:`PLANNED`).
WIDTH_EXPERIMENTS = {20: "erf_k20", 30: "erf_k30", 40: "erf_k40", 50: "erf_k50",
                     70: "erf_k70", 100: "erf_k100"}

#: Standard deviation s of every initial weight -> the k = 50 experiment with N(0, s^2)
#: starts (a key of :data:`EXPERIMENTS` or of :data:`PLANNED`).
SCALE_EXPERIMENTS = {1.0: "erf_k50_s1", 0.1: "erf_k50_gaussian", 1e-2: "erf_k50_s1e-2",
                     1e-3: "erf_k50_s1e-3"}


def committed_results_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The directory of committed experiment ``name`` (a key of :data:`EXPERIMENTS`, or of
    :data:`PLANNED`: where it will be committed): ``results_root(root) / name`` (see
    :func:`results_root`).

    ``K50_DIR`` and ``K50_GAUSSIAN_DIR`` of this module are
    ``committed_results_dir("erf_k50")`` and ``committed_results_dir("erf_k50_gaussian")``,
    resolved when they are read.

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        Outside a checkout (see :func:`results_root`).
    """
    if name not in EXPERIMENTS and name not in PLANNED:
        raise ValueError(f"unknown experiment {name!r}; known: "
                         f"{', '.join([*EXPERIMENTS, *PLANNED])}")
    return results_root(root) / name


def recompute_experiment(name: str, out: str | os.PathLike, *, n_jobs: int = 2, store=None,
                         progress: bool = True, command: str | None = None) -> pd.DataFrame:
    """Run every run of a committed experiment and write its files to ``out``.

    Runs go through the result store (``store``: a :class:`~copyaverage.store.ResultStore`, a path, or
    None for the default), so an interrupted recomputation resumes. The files are
    written by :func:`export_endpoints`; ``command`` is recorded in ``meta.json``.

    Returns
    -------
    DataFrame
        The summary table (:func:`summarize`).
    """
    experiment = {**EXPERIMENTS, **PLANNED}[name]
    specs = experiment.specs()
    start = time.perf_counter()
    results = sweep(specs, store=store, n_jobs=n_jobs, progress=progress, desc=name)
    elapsed = time.perf_counter() - start
    command = command or f"copyaverage recompute {name}"
    table = export_endpoints(specs, results, out, command, elapsed)
    print(table.groupby("n").label.value_counts().unstack(fill_value=0).to_string())
    print(f"{int(table.converged.sum())}/{len(table)} converged; {elapsed:.0f} s; wrote {out}")
    return table


def _main(argv=None):
    """``python -m copyaverage.experiments k50 [--init ...]``: the older spelling of
    ``copyaverage recompute erf_k50`` (or ``erf_k50_gaussian``), kept for old commands."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m copyaverage.experiments",
                                description="Recompute the committed experiments (same as "
                                            "'copyaverage recompute', which is preferred).")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("k50", help="erf, k = 50, n = 1..49, 20 seeds, Glorot (the paper's Fig. 4 "
                       "setting) or, with --init gaussian, the std-0.1 initialization")
    k.add_argument("--init", choices=("glorot", "gaussian"), default="glorot",
                   help="initialization: glorot -> erf_k50, gaussian -> erf_k50_gaussian")
    k.add_argument("--out", default=None,
                   help="output directory (default: results/erf_k50 or results/erf_k50_gaussian)")
    k.add_argument("--jobs", default="2", help="parallel workers, >= 1, or -1 for all cores")
    k.add_argument("--store", default=None, help="result store directory (default: the library's)")
    args = p.parse_args(argv)
    from .cli import main

    name = "erf_k50" if args.init == "glorot" else "erf_k50_gaussian"
    new = ["recompute", name, "--jobs", args.jobs]
    if args.out is not None:
        new += ["--out", args.out]
    if args.store is not None:
        new += ["--store", args.store]
    return main(new)


if __name__ == "__main__":
    sys.exit(_main())
