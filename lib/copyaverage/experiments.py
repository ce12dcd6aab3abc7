"""Drivers for the paper's gradient-flow experiments (the book's experiment chapters).

Kept out of the core modules: these functions only combine :mod:`copyaverage.sweep`
(runs through the result store), :mod:`copyaverage.classify` and pandas tables.

The k = 50 phase-transition experiment is committed under ``results/erf_k50/``
(end points, a summary table and how they were made). Recompute it all with::

    python -m copyaverage.experiments k50 --out results/erf_k50 --jobs 2
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .classify import CA_OPTIMUM, LABELS, PERTURBED_COPY, classify
from .configurations import copy_average_point
from .loss import population_loss
from .teacher import Teacher
from .store import ResultStore, atomic_write, code_hash
from .flow import gradient_flow
from .sweep import RunSpec, grid, run, sweep

__all__ = [
    "K50_DIR",
    "K50_GAUSSIAN_DIR",
    "erf_grid",
    "summarize",
    "run_grid",
    "k50_specs",
    "export_endpoints",
    "load_endpoints",
    "verify_sample",
    "relabel",
    "first_from",
    "transition_edges",
    "nearest_ca",
    "perturbed_copy_point",
]

#: Where the committed k = 50 end points live (in a checkout of the repository).
K50_DIR = Path(__file__).resolve().parents[2] / "results" / "erf_k50"
#: The same experiment with the Gaussian std-0.1 initialization (beyond the paper).
K50_GAUSSIAN_DIR = Path(__file__).resolve().parents[2] / "results" / "erf_k50_gaussian"

#: A Hessian eigenvalue counts as negative below -NEGATIVE_EIGENVALUE * max |eigenvalue|.
NEGATIVE_EIGENVALUE = 1e-9


def erf_grid(k_values=range(2, 13), seeds=range(20), init="gaussian", activation="erf"):
    """Every (k, n) with 1 <= n < k for the given k, as RunSpecs (std 0.1 for "gaussian")."""
    return [s for k in k_values for s in grid(activation, k, range(1, k), list(seeds), init)]


def _row(spec: RunSpec, result) -> dict:
    teacher = spec.teacher()
    ev = result.hessian_eigenvalues
    scale = float(np.abs(ev).max()) if ev is not None and len(ev) else float("nan")
    n_neg = int(np.sum(ev < -NEGATIVE_EIGENVALUE * scale)) if ev is not None else -1
    row = dict(activation=spec.activation, k=spec.k, n=spec.n, seed=spec.seed, init=spec.init,
               loss=result.loss, grad_norm=result.grad_norm, converged=bool(result.converged),
               status=result.status, min_eigenvalue=result.min_eigenvalue,
               negative_eigenvalues=n_neg, time=result.timings.get("total", float("nan")))
    if result.converged and spec.n < spec.k:
        c = classify(result.a, result.W, teacher, spec.activation, loss=result.loss)
        row.update(label=c.label, ca_optimum_loss=c.ca_optimum_loss,
                   group_sizes=None if c.group_sizes is None else "+".join(map(str, c.group_sizes)),
                   min_copy_cosine=float(np.min(c.copy_cosine)))
    else:
        row.update(label="not converged", ca_optimum_loss=float("nan"), group_sizes=None,
                   min_copy_cosine=float("nan"))
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
    its scale between a_i and |w_i|.

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


def perturbed_copy_point(n: int, teacher: Teacher, activation: str = "erf",
                         noise: float = 1e-3, seed: int = 0):
    """The critical point that gradient flow reaches from n near-copies.

    Starts at a_i = a*_i, w_i = v_i + noise * N(0, I) for i < n (each student neuron
    a copy of its own teacher neuron) and follows the flow to convergence; the end
    point is the "perturbed copy" solution, whatever seed gradient flow from a random
    start would need to find it. Returns the :class:`~copyaverage.flow.FlowResult`.
    """
    if not 1 <= n < teacher.k:
        raise ValueError(f"n must satisfy 1 <= n < k = {teacher.k}, got {n}")
    rng = np.random.default_rng(seed)
    W0 = teacher.V[:n] + noise * rng.standard_normal((n, teacher.d))
    return gradient_flow(teacher.a[:n].copy(), W0, teacher, activation,
                         record_parameters=False)


# ------------------------------------------------------------- k = 50 -----
def k50_specs(n_values=range(1, 50), seeds=range(20), init: str = "glorot"):
    """The paper's phase-transition experiment: erf, k = 50, Glorot initialization.

    ``init="gaussian"`` gives the same grid with the std-0.1 initialization.
    """
    if init not in ("glorot", "gaussian"):
        raise ValueError(f"init must be 'glorot' or 'gaussian', got {init!r}")
    return grid("erf", 50, list(n_values), list(seeds), init)


def export_endpoints(specs, results, out: str | os.PathLike, command: str, elapsed: float):
    """Write end points, summary table and provenance of a sweep to ``out``.

    Files: ``endpoints.npz`` (for run i: ``a_i``, ``W_i``), ``summary.csv``
    (:func:`summarize`, in the order of the end points) and ``meta.json``
    (command, library hash, date, machine, wall-clock time, the run specs).
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
        command=command, lib_hash=code_hash(), date=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        machine=dict(platform=platform.platform(), processor=platform.processor(),
                     cpus=os.cpu_count(), python=platform.python_version(),
                     numpy=np.__version__),
        elapsed_seconds=elapsed, runs=len(specs),
        sum_of_run_seconds=float(sum(r.timings.get("total", 0.0) for r in results)),
        specs=[dict(s.params()) for s in specs],
    )
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return table


def load_endpoints(path: str | os.PathLike):
    """Read what :func:`export_endpoints` wrote: (specs, end points, summary, meta)."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    table = pd.read_csv(path / "summary.csv")
    specs = []
    for p in meta["specs"]:
        opts = tuple(sorted(p["options"].items()))
        specs.append(RunSpec(p["activation"], p["k"], p["n"], p["seed"], p["init"],
                             None if p["d"] == p["k"] + 1 else p["d"],
                             p["std"] if p["std"] is not None else 0.1, opts))
    with np.load(path / "endpoints.npz") as z:
        ends = [(z[f"a_{i}"], z[f"W_{i}"]) for i in range(len(specs))]
    return specs, ends, table, meta


def verify_sample(path, m: int = 5, seed: int | None = None, atol: float = 1e-7):
    """Re-run ``m`` randomly chosen stored runs and compare the end points.

    Returns a table with, per re-run, the largest absolute difference in
    (a, W) and in the loss; ``matches`` says whether the end point agrees to ``atol``.
    """
    specs, ends, table, _ = load_endpoints(path)
    rng = np.random.default_rng(seed)
    rows = []
    for i in sorted(rng.choice(len(specs), size=min(m, len(specs)), replace=False)):
        r = run(specs[i])
        a, W = ends[i]
        diff = max(float(np.abs(r.a - a).max()), float(np.abs(r.W - W).max()))
        rows.append(dict(run=int(i), n=specs[i].n, seed=specs[i].seed, converged=r.converged,
                         max_weight_difference=diff,
                         loss_difference=abs(r.loss - float(table.loss[i])),
                         matches=bool(r.converged and diff <= atol), seconds=r.timings["total"]))
    return pd.DataFrame(rows)


def relabel(ends, table: pd.DataFrame, k: int, activation: str = "erf"):
    """Classify stored end points again with this library's classifier.

    Parameters
    ----------
    ends : list of (a, W)
        As returned by :func:`load_endpoints`, in the order of ``table``.
    table : DataFrame
        Its summary (columns ``converged``, ``loss``, ``label``).
    k : int
        Teacher width (unit-orthonormal teacher, d = k + 1).

    Returns
    -------
    table : DataFrame
        A copy with ``label`` recomputed ("not converged" for runs that did not).
    changed : int
        How many labels differ from the stored ones.
    """
    if len(ends) != len(table):
        raise ValueError(f"{len(ends)} end points but {len(table)} table rows")
    teacher = Teacher.orthonormal(k)
    labels = [classify(a, W, teacher, activation, loss=loss).label if ok else "not converged"
              for (a, W), ok, loss in zip(ends, table.converged, table.loss)]
    out = table.copy()
    out["label"] = labels
    return out, int((out.label.to_numpy() != table.label.to_numpy()).sum())


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


def _main(argv=None):
    p = argparse.ArgumentParser(prog="python -m copyaverage.experiments",
                                description="Recompute the committed experiments.")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("k50", help="erf, k = 50, n = 1..49, 20 seeds, Glorot (the paper's Fig. 4 "
                       "setting) or, with --init gaussian, the std-0.1 initialization")
    k.add_argument("--init", choices=("glorot", "gaussian"), default="glorot")
    k.add_argument("--out", default=None,
                   help=f"output directory (default: {K50_DIR} for glorot, {K50_GAUSSIAN_DIR} for gaussian)")
    k.add_argument("--jobs", type=int, default=2)
    k.add_argument("--store", default=None, help="result store directory (default: the library's)")
    args = p.parse_args(argv)
    specs = k50_specs(init=args.init)
    out = args.out or (K50_DIR if args.init == "glorot" else K50_GAUSSIAN_DIR)
    start = time.perf_counter()
    results = sweep(specs, store=ResultStore(args.store) if args.store else None,
                    n_jobs=args.jobs, progress=True, desc=f"erf k=50 {args.init}")
    elapsed = time.perf_counter() - start
    command = "python -m copyaverage.experiments " + " ".join(argv if argv is not None else sys.argv[1:])
    table = export_endpoints(specs, results, out, command, elapsed)
    print(table.groupby("n").label.value_counts().unstack(fill_value=0).to_string())
    print(f"{int(table.converged.sum())}/{len(table)} converged; {elapsed:.0f} s")


if __name__ == "__main__":
    _main()
