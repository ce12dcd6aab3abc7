"""Finite samples against the population: where the full-batch end points belong.

The raw end point theta_N of a flow on N samples is never *at* a copy-average point (it
is O(1/sqrt(N)) away), so the book gives it the class of the population critical point
that gradient flow on the population loss reaches from theta_N (its *population class*),
and compares that with the population end point from the same start:

* ``label``: the population class of theta_N; ``population_label``: the class of the
  population end point from the same start;
* ``same_point``: the two population critical points are the same function
  (E[(f - f_pop)^2] <= :data:`SAME_POINT`, exact, the population end point as teacher);
* ``distance``: E[(f_N - f_pop)^2], theta_N's function-space distance from the
  population end point; ``population_loss``: L(theta_N), the generalization error;
  ``excess``: L(theta_N) minus the loss of the critical point reached from it.

:func:`class_table` computes these through the result store; :func:`sample_size_threshold`
reads N*, the smallest sample size from which (for every larger N of the grid as well)
at least 90 % of the converged runs have the population end point's class.

From the command line::

    python -m copyaverage.distillation classes erf_samples --out results/erf_samples_classes
    python -m copyaverage.distillation sgd --out results/erf_sgd

The second runs the SGD and Adam experiment (:func:`write_sgd_experiment`): online SGD
and Adam (:func:`copyaverage.sgd.train`) from the starts of the population runs, each run
saved as it finishes (an interrupted run resumes), then classified the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from tqdm import tqdm  # plain text bar: tqdm.auto warns on stderr without ipywidgets

from .classify import end_label
from .flow import initialize
from .loss import population_loss
from .sgd import FINISHED, TrainResult, train
from .store import atomic_write, code_hash, default_store_dir, params_key
from .sweep import RunSpec, StartSpec, sweep
from .teacher import Teacher

__all__ = ["SAME_POINT", "class_table", "sample_size_threshold", "write_class_table",
           "load_class_table", "recheck_rows", "recheck_endpoints", "asymptotic_excess", "SGD_SETTINGS", "SGD_CELLS", "SGDRun",
           "sgd_runs", "run_sgd", "rerun_sgd", "recheck_sgd",
           "ROUND_OFF_SENSITIVE", "NUDGE", "sgd_sweep", "sgd_table", "write_sgd_experiment",
           "load_sgd_experiment", "specialization_time"]

#: Function-space distance below which two critical points count as the same point.
SAME_POINT = 1e-12

_LABEL = "population flow from a finite-sample end point"


def _population_spec(spec: RunSpec) -> RunSpec:
    return RunSpec(spec.activation, spec.k, spec.n, spec.seed, spec.init, spec.d, spec.std)


def _start_spec(spec: RunSpec, a, W) -> StartSpec | None:
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
        return None
    return StartSpec(spec.activation, a, W, spec.teacher(), label=_LABEL)


def _distance(a, W, ref) -> float:
    """E[(f_(a, W) - f_ref)^2], with the result ``ref`` as the teacher."""
    return population_loss(a, W, Teacher(ref.a, ref.W), "erf")


def _row(spec, a, W, converged, pop, q) -> dict:
    teacher = spec.teacher()
    row = dict(k=spec.k, n=spec.n, seed=spec.seed, samples=spec.samples,
               converged=bool(converged), population_label=end_label(
                   pop.a, pop.W, teacher, spec.activation, pop.converged, pop.loss),
               label=None, same_point=False, distance=np.nan, population_loss=np.nan,
               excess=np.nan, reached_loss=np.nan)
    if q is None:
        return row
    L = population_loss(a, W, teacher, spec.activation)
    row.update(label=end_label(q.a, q.W, teacher, spec.activation, q.converged, q.loss),
               distance=_distance(a, W, pop), population_loss=L, reached_loss=q.loss,
               excess=L - q.loss,
               same_point=bool(q.converged and _distance(q.a, q.W, pop) <= SAME_POINT))
    return row


def class_table(specs, ends, converged, *, store=None, n_jobs: int = 2,
                progress: bool = True) -> pd.DataFrame:
    """One row per finite-sample run: its population class and distances (module doc).

    Parameters
    ----------
    specs : list of RunSpec
        Finite-sample runs (``samples`` set), e.g. from
        :func:`copyaverage.experiments.load_endpoints`.
    ends : list of (a, W)
        Their end points.
    converged : sequence of bool
        Whether each finite-sample run converged; the others get ``label`` None and NaN
        distances (they are reported, not classified).
    store, n_jobs, progress
        As for :func:`copyaverage.sweep.sweep` (both the population runs from the same
        starts and the population flows from the end points go through the store).

    Returns
    -------
    DataFrame
        Columns k, n, seed, samples, converged, population_label, label, same_point,
        distance, population_loss, excess, reached_loss.
    """
    if not (len(specs) == len(ends) == len(converged)):
        raise ValueError(f"specs, ends and converged must have the same length, got "
                         f"{len(specs)}, {len(ends)}, {len(converged)}")
    if any(s.samples is None for s in specs):
        raise ValueError("class_table needs finite-sample runs (RunSpec.samples set)")
    pop_specs = sorted({_population_spec(s) for s in specs},
                       key=lambda s: (s.k, s.n, s.seed))
    pop = dict(zip(pop_specs, sweep(pop_specs, store=store, n_jobs=n_jobs, progress=progress,
                                    desc="population runs")))
    starts = [(_start_spec(s, a, W) if ok else None) for s, (a, W), ok
              in zip(specs, ends, converged)]
    todo = [s for s in starts if s is not None]
    reached = iter(sweep(todo, store=store, n_jobs=n_jobs, progress=progress,
                         desc="population flows from end points"))
    rows = [_row(s, a, W, ok, pop[_population_spec(s)], None if st is None else next(reached))
            for s, (a, W), ok, st in zip(specs, ends, converged, starts)]
    return pd.DataFrame(rows)


def sample_size_threshold(table: pd.DataFrame, column: str = "agrees",
                          share: float = 0.9) -> pd.DataFrame:
    """Per cell (k, n): the share of converged runs that agree at every N, and N*.

    ``column``: "agrees" (the population class equals the population end point's) or
    "same_point". N* is the smallest N of the grid such that at that N and every larger
    one at least ``share`` of the converged runs agree; NaN if there is none.

    Returns
    -------
    (shares, thresholds) : DataFrame with columns k, n, samples, runs (converged), agree,
    share; and DataFrame with columns k, n, n_star.
    """
    t = table[table.converged].copy()
    t["agrees"] = t.label == t.population_label
    shares = (t.groupby(["k", "n", "samples"])[column].agg(["size", "sum"])
              .rename(columns={"size": "runs", "sum": "agree"}).reset_index())
    shares["share"] = shares.agree / shares.runs
    rows = []
    for (k, n), cell in shares.groupby(["k", "n"]):
        cell = cell.sort_values("samples")
        ok = (cell.share >= share).to_numpy()
        tail_ok = np.flip(np.cumprod(np.flip(ok))).astype(bool)  # ok here and at every larger N
        n_star = float(cell.samples.to_numpy()[tail_ok][0]) if tail_ok.any() else np.nan
        rows.append(dict(k=k, n=n, n_star=n_star))
    return shares, pd.DataFrame(rows)


def write_class_table(experiment: str, out, *, n_jobs: int = 2, progress: bool = True,
                      command: str | None = None) -> pd.DataFrame:
    """:func:`class_table` of a committed finite-sample experiment (its directory under
    ``results/``); writes ``classes.csv`` and ``meta.json`` (command, code hash, date,
    machine, wall time) to ``out``."""
    from .experiments import committed_results_dir, load_endpoints, provenance

    start = time.perf_counter()
    specs, ends, summary, _ = load_endpoints(committed_results_dir(experiment))
    table = class_table(specs, ends, summary.converged.to_numpy(), n_jobs=n_jobs,
                        progress=progress)
    out = Path(out)
    atomic_write(out / "classes.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    meta = dict(command=command or f"python -m copyaverage.distillation classes {experiment} "
                                   f"--out {out}",
                experiment=experiment, **provenance(), rows=len(table),
                elapsed_seconds=time.perf_counter() - start)
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return table


def load_class_table(path) -> tuple[pd.DataFrame, dict]:
    """``classes.csv`` and ``meta.json`` written by :func:`write_class_table`."""
    path = Path(path)
    table = pd.read_csv(path / "classes.csv")
    table["label"] = table.label.astype(object).where(table.label.notna(), None)
    return table, json.loads((path / "meta.json").read_text())


def asymptotic_excess(a, W, teacher: Teacher, activation: str = "erf", *,
                      samples: int = 200_000, seed: int = 0) -> float:
    """The constant c of the large-sample excess E[L(theta_N) - L(theta*)] ~ c / N at a
    minimum theta* = (a, W) of the population loss: c = tr(H^-1 Sigma) / 2.

    H is the exact population Hessian, Sigma = E[g_s g_s^T] the covariance of the
    per-input gradient g_s = 2 r_s grad f(x_s) (mean zero at a critical point), estimated
    from ``samples`` Gaussian inputs drawn with ``seed``. The minimizer of L_N lies at
    theta* - H^-1 mean(g_s) + O(1/N), whose excess is half the quadratic form of H (the
    classical asymptotics of M-estimators; a pseudo-inverse is used, so flat directions of
    H do not count).
    """
    from scipy.linalg import pinvh

    from .derivatives import closed_form_hessian
    from .empirical import EmpiricalObjective, _sigma_derivatives, sample_inputs

    ob = EmpiricalObjective(teacher, activation, len(a), sample_inputs(samples, teacher.d,
                                                                       seed))
    n, d = ob.n, ob.d
    a, W = ob.split(np.concatenate([np.ravel(a), np.ravel(W)]))
    sigma = np.zeros((ob.size, ob.size))
    for Xc, sl in ob._chunks(with_index=True):
        S, S1 = _sigma_derivatives(ob.act, Xc @ W.T, 1)
        r = S @ a - ob.y[sl]
        J = np.concatenate([S, ((a * S1)[:, :, None] * Xc[:, None, :]).reshape(len(r), n * d)],
                           axis=1)
        G = 2.0 * r[:, None] * J
        sigma += G.T @ G
    sigma /= ob.N
    H = closed_form_hessian(a, W, teacher, activation)
    return float(0.5 * np.trace(pinvh(H) @ sigma))


def recheck_endpoints(specs, ends, summary: pd.DataFrame, rows, *,
                      loss_rtol: float = 1e-9) -> pd.DataFrame:
    """Recompute, at the stored end points of the given rows, the empirical loss and gradient
    norm on each run's own sample, and compare with the stored summary: a row matches when
    the loss agrees to ``loss_rtol`` (relative, plus 1e-20 absolute for interpolating end
    points at loss ~1e-26) and ``converged`` (gradient norm <= the run's tolerance) is the
    same, or the norm is within 1 % of the tolerance, where the round-off of two
    evaluations could decide. Returns one row per checked run."""
    from .empirical import EmpiricalObjective
    from .flow import default_tolerance
    from .loss import pack

    out = []
    for i in rows:
        spec, (a, W), stored = specs[i], ends[i], summary.iloc[i]
        tol = dict(spec.options).get("tol", default_tolerance(spec.activation))
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
            out.append(dict(run=int(i), loss=np.nan, grad_norm=np.nan, converged=False,
                            matches=not bool(stored.converged)))
            continue
        ob = EmpiricalObjective(spec.teacher(), spec.activation, spec.n, spec.data())
        L, g = ob.loss_and_gradient(pack(a, W))
        gn = float(np.linalg.norm(g))
        same_loss = abs(L - stored.loss) <= loss_rtol * abs(stored.loss) + 1e-20
        same_flag = (gn <= tol) == bool(stored.converged) or abs(gn - tol) <= 0.01 * tol
        out.append(dict(run=int(i), samples=spec.samples, loss=L, grad_norm=gn,
                        converged=gn <= tol, matches=bool(same_loss and same_flag)))
    return pd.DataFrame(out)


def recheck_rows(table: pd.DataFrame, specs, ends, converged, rows, *, store=None,
                 loss_atol: float = 1e-10) -> pd.DataFrame:
    """Recompute the given rows of a class table (population flows from the stored end
    points) and compare: a row matches when its label, same_point flag and reached loss
    (to ``loss_atol``) agree. Returns the recomputed rows with a column ``matches``."""
    rows = list(rows)
    again = class_table([specs[i] for i in rows], [ends[i] for i in rows],
                        [bool(converged[i]) for i in rows], store=store, n_jobs=1,
                        progress=False)
    stored = table.iloc[rows].reset_index(drop=True)
    same_label = (again.label.fillna("-") == stored.label.fillna("-"))
    same_flag = again.same_point.astype(bool) == stored.same_point.astype(bool)
    both_nan = again.reached_loss.isna() & stored.reached_loss.isna()
    close = (again.reached_loss - stored.reached_loss).abs() <= loss_atol
    return again.assign(matches=(same_label & same_flag & (close | both_nan)).to_numpy())


# ------------------------------------------------------------- SGD and Adam --
#: The optimizer settings of the SGD experiment of notes/distillation.md, name -> options
#: of :func:`copyaverage.sgd.train`. Every SGD setting runs to flow time lr * steps = 5000.
SGD_SETTINGS = {
    "sgd_0.01_64": dict(optimizer="sgd", lr=0.01, batch=64, steps=500_000),
    "sgd_0.1_64": dict(optimizer="sgd", lr=0.1, batch=64, steps=50_000),
    "sgd_0.1_1": dict(optimizer="sgd", lr=0.1, batch=1, steps=50_000),
    "sgd_0.5_1": dict(optimizer="sgd", lr=0.5, batch=1, steps=10_000),
    # added after a smoke test showed 0.5 and 0.1 at batch 1 diverging at k = 12
    "sgd_0.05_1": dict(optimizer="sgd", lr=0.05, batch=1, steps=100_000),
    "adam_1e-3_64": dict(optimizer="adam", lr=1e-3, batch=64, steps=100_000),
}
#: The cells (k, n) of the SGD experiment.
SGD_CELLS = ((4, 3), (8, 5), (8, 6), (8, 7), (12, 11))
_RECORDS_PER_DECADE = 20


@dataclass(frozen=True)
class SGDRun:
    """One online SGD or Adam run: erf, unit-orthonormal teacher (d = k + 1), std-0.1
    Gaussian start of ``seed``, batches from data seed = ``seed``, a setting of
    :data:`SGD_SETTINGS`."""

    k: int
    n: int
    seed: int
    setting: str

    def __post_init__(self):
        if self.setting not in SGD_SETTINGS:
            raise ValueError(f"unknown SGD setting {self.setting!r}; known: "
                             f"{', '.join(SGD_SETTINGS)}")

    def params(self) -> dict:
        return dict(kind="online-sgd/unit-orthonormal-teacher", activation="erf", k=self.k,
                    n=self.n, d=self.k + 1, seed=self.seed, init="gaussian", std=0.1,
                    data_seed=self.seed, records_per_decade=_RECORDS_PER_DECADE,
                    **SGD_SETTINGS[self.setting])

    def teacher(self) -> Teacher:
        return Teacher.orthonormal(self.k)


def sgd_runs(cells=SGD_CELLS, seeds=range(20), settings=tuple(SGD_SETTINGS)) -> list[SGDRun]:
    """Every (cell, setting, seed), in that order."""
    return [SGDRun(k, n, s, name) for k, n in cells for name in settings for s in seeds]


def run_sgd(run: SGDRun, *, nudge: float = 0.0) -> TrainResult:
    """Compute one SGD run (no cache).

    ``nudge`` > 0 moves every initial weight by ``nudge`` times a standard normal draw
    (a generator of its own, seeded with the run's seed), as round-off would: how far
    that moves the end point tells whether the run can be re-checked bit for bit
    (:func:`recheck_sgd`)."""
    if not (np.isfinite(nudge) and nudge >= 0):
        raise ValueError(f"nudge must be a finite number >= 0, got {nudge!r}")
    T = run.teacher()
    a0, W0 = initialize(run.n, T, "gaussian", run.seed, 0.1)
    if nudge:
        rng = np.random.default_rng([run.seed, 2**20])
        a0 = a0 + nudge * rng.standard_normal(a0.shape)
        W0 = W0 + nudge * rng.standard_normal(W0.shape)
    return train(a0, W0, T, "erf", data_seed=run.seed,
                 records_per_decade=_RECORDS_PER_DECADE, **SGD_SETTINGS[run.setting])


def rerun_sgd(runs, *, nudge: float = 0.0, n_jobs: int = 2) -> list[TrainResult]:
    """Compute SGD runs again (:func:`run_sgd`, no cache) as :func:`sgd_sweep` computed
    them: in worker processes with one BLAS thread each."""
    with parallel_config(backend="loky", inner_max_num_threads=1):
        return Parallel(n_jobs=n_jobs)(delayed(run_sgd)(r, nudge=nudge) for r in runs)


#: A run whose end point moves by more than this when every initial weight is moved by
#: :data:`NUDGE` is *round-off sensitive*: its end point depends on the machine's rounding.
#: (2026-12-02: re-run on another machine of the same type, each of the 60 runs at rate
#: 0.1, batch 1, k = 8 ended 2 to 4 away from its stored end point, in the largest weight
#: difference, and each of the 320 other runs of at most 10 s within 1e-9; a start moved
#: by 1e-12 moved the ends of two of those 60 by 2.4 and 3.4, of four others by 2e-15.)
ROUND_OFF_SENSITIVE = 1e-6
#: The move of the start that :func:`recheck_sgd` makes to measure that.
NUDGE = 1e-12


def recheck_sgd(runs, table: pd.DataFrame, arrays, picks, *, n_jobs: int = 2) -> pd.DataFrame:
    """Re-run the SGD runs ``picks`` (indices into ``runs``, ``table`` and ``arrays`` of
    :func:`load_sgd_experiment`) and compare them with what is stored.

    Each is run twice: as stored, and from a start moved by :data:`NUDGE` (``run_sgd(...,
    nudge=NUDGE)``). If that moves the end point by more than
    :data:`ROUND_OFF_SENSITIVE`, the run is round-off sensitive: its stored end point
    depends on the rounding of the machine that computed it, and only its status is
    compared. Otherwise the end point must equal the stored one to 1e-9 in every weight,
    and the population class of the last parameters (:func:`sgd_table`) the stored class.

    Returns
    -------
    DataFrame
        One row per pick: ``run``, k, n, seed, setting, ``sensitivity`` (how far the
        nudged start's end point lies from the re-run's), ``sensitive``,
        ``end_difference`` (re-run against stored), ``label``, ``stored_label``,
        ``matches``.
    """
    picks = [int(i) for i in picks]
    chosen = [runs[i] for i in picks]
    again = rerun_sgd(chosen, n_jobs=n_jobs)
    nudged = rerun_sgd(chosen, nudge=NUDGE, n_jobs=n_jobs)
    classes = sgd_table(chosen, again, n_jobs=n_jobs, progress=False)
    rows = []
    for i, run, r, q, row in zip(picks, chosen, again, nudged, classes.itertuples()):
        a, W = arrays[i][:2]
        sensitivity = float(max(np.max(np.abs(r.a - q.a)), np.max(np.abs(r.W - q.W))))
        difference = float(max(np.max(np.abs(r.a - a)), np.max(np.abs(r.W - W))))
        sensitive = not sensitivity <= ROUND_OFF_SENSITIVE
        same_status = r.status == table.status[i]
        matches = same_status if sensitive else bool(
            same_status and difference <= 1e-9 and row.label == table.label[i]
            and row.same_point == table.same_point[i])
        rows.append(dict(run=i, k=run.k, n=run.n, seed=run.seed, setting=run.setting,
                         sensitivity=sensitivity, sensitive=sensitive,
                         end_difference=difference, label=row.label,
                         stored_label=table.label[i], matches=matches))
    return pd.DataFrame(rows)


def _to_arrays(r: TrainResult) -> dict:
    meta = dict(status=r.status, steps=r.steps, message=r.message, settings=r.settings,
                seconds=r.seconds)
    return dict(meta=np.array(json.dumps(meta)), a=r.a, W=r.W, record_steps=r.record_steps,
                population_loss=r.population_loss,
                population_grad_norm=r.population_grad_norm)


def _from_arrays(z) -> TrainResult:
    meta = json.loads(str(z["meta"]))
    settings = dict(meta["settings"], betas=tuple(meta["settings"]["betas"]))
    return TrainResult(a=np.array(z["a"]), W=np.array(z["W"]), status=meta["status"],
                       steps=meta["steps"], record_steps=np.array(z["record_steps"]),
                       population_loss=np.array(z["population_loss"]),
                       population_grad_norm=np.array(z["population_grad_norm"]),
                       parameters=None, message=meta["message"], settings=settings,
                       seconds=meta["seconds"])


def _sgd_cache_dir(root=None) -> Path:
    """Where SGD runs are kept: ``<store>/sgd-<hash of the code they depend on>``."""
    root = Path(root) if root is not None else default_store_dir()
    return root / f"sgd-{code_hash(roots=('sgd',))[:16]}"


def sgd_sweep(runs, *, cache=None, n_jobs: int = 2, progress: bool = True) -> list[TrainResult]:
    """Run (or load) every SGD run; each finished run is saved at once (atomically) under
    ``cache`` (default: next to the result store, keyed by the code of
    :mod:`copyaverage.sgd` and what it imports), so an interrupted sweep resumes. Workers
    use one BLAS thread each."""
    folder = _sgd_cache_dir(cache)
    paths = [folder / f"{params_key(r.params())}.npz" for r in runs]
    out: list = [None] * len(runs)
    todo = []
    for i, path in enumerate(paths):
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                out[i] = _from_arrays(z)
        else:
            todo.append(i)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), disable=not progress,
               desc="SGD runs", unit="run")
    with parallel_config(backend="loky", inner_max_num_threads=1):
        par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for i, r in par(delayed(lambda j: (j, run_sgd(runs[j])))(i) for i in todo):
            arrays = _to_arrays(r)
            atomic_write(paths[i], lambda f: np.savez_compressed(f, **arrays))
            out[i] = r
            bar.update()
    bar.close()
    return out


def specialization_time(times, losses, l_one: float, l_end: float) -> float:
    """The first time at which the loss is at most l_one - (l_one - l_end) / 2 (NaN if
    never): the end of the plateau where all student neurons are alike."""
    level = l_one - 0.5 * (l_one - l_end)
    below = np.flatnonzero(np.asarray(losses) <= level)
    return float(np.asarray(times)[below[0]]) if below.size else float("nan")


def sgd_table(runs, results, *, store=None, n_jobs: int = 2, progress: bool = True):
    """One row per SGD run: status, final population loss, the population class of the
    last parameters (the population flow from them, through the result store) and whether
    it is the population end point from the same start (``same_point``), the population
    end point's class and loss, and the specialization times of SGD and of the flow
    (:func:`specialization_time`, with L1 the optimal one-neuron loss)."""
    from .one_neuron import optimal_loss

    pop_specs = sorted({RunSpec("erf", r.k, r.n, r.seed, options=(
        ("trajectory_per_decade", _RECORDS_PER_DECADE),)) for r in runs},
        key=lambda s: (s.k, s.n, s.seed))
    pops = dict(zip([(s.k, s.n, s.seed) for s in pop_specs],
                    sweep(pop_specs, store=store, n_jobs=n_jobs, progress=progress,
                          desc="population runs")))
    starts = [StartSpec("erf", res.a, res.W, run.teacher(), label=_SGD_LABEL)
              if res.status == FINISHED else None for run, res in zip(runs, results)]
    reached = iter(sweep([s for s in starts if s is not None], store=store, n_jobs=n_jobs,
                         progress=progress, desc="population flows from SGD end points"))
    rows = []
    for run, res, st in zip(runs, results, starts):
        pop = pops[(run.k, run.n, run.seed)]
        T = run.teacher()
        l_one = float(optimal_loss(run.k, "erf"))
        row = dict(k=run.k, n=run.n, seed=run.seed, setting=run.setting, status=res.status,
                   steps=res.steps, seconds=res.seconds, final_loss=res.loss,
                   population_label=end_label(pop.a, pop.W, T, "erf", pop.converged, pop.loss),
                   population_end_loss=pop.loss, label=None, same_point=False,
                   reached_loss=np.nan,
                   t_spec_flow=specialization_time(pop.trajectory.t, pop.trajectory.loss,
                                                   l_one, pop.loss),
                   t_spec=specialization_time(res.flow_time, res.population_loss, l_one,
                                              pop.loss))
        if st is not None:
            q = next(reached)
            row.update(label=end_label(q.a, q.W, T, "erf", q.converged, q.loss),
                       reached_loss=q.loss,
                       same_point=bool(q.converged and _distance(q.a, q.W, pop) <= SAME_POINT))
        rows.append(row)
    return pd.DataFrame(rows)


_SGD_LABEL = "population flow from an SGD end point"


def write_sgd_experiment(out, runs=None, *, n_jobs: int = 2, progress: bool = True,
                         command: str | None = None) -> pd.DataFrame:
    """Run the SGD experiment (:func:`sgd_runs`) and write ``runs.npz`` (for run i:
    ``a_i``, ``W_i``, ``steps_i``, ``loss_i``: the recorded steps and population losses),
    ``summary.csv`` (:func:`sgd_table`) and ``meta.json`` (command, code hash, date,
    machine, wall time, the runs) to ``out``."""
    from .experiments import provenance

    runs = sgd_runs() if runs is None else list(runs)
    start = time.perf_counter()
    results = sgd_sweep(runs, n_jobs=n_jobs, progress=progress)
    table = sgd_table(runs, results, n_jobs=n_jobs, progress=progress)
    out = Path(out)
    arrays = {}
    for i, r in enumerate(results):
        arrays.update({f"a_{i}": r.a, f"W_{i}": r.W, f"steps_{i}": r.record_steps,
                       f"loss_{i}": r.population_loss})
    atomic_write(out / "runs.npz", lambda f: np.savez_compressed(f, **arrays))
    atomic_write(out / "summary.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    meta = dict(command=command or f"python -m copyaverage.distillation sgd --out {out}",
                **provenance(), sgd_code_hash=code_hash(roots=("sgd",)),
                elapsed_seconds=time.perf_counter() - start, runs=len(runs),
                run_params=[r.params() for r in runs])
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return table


def load_sgd_experiment(path):
    """What :func:`write_sgd_experiment` wrote: (runs, summary, arrays, meta), with
    ``arrays[i]`` = (a, W, recorded steps, population losses) of run i; checks that the
    three files describe the same runs."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    table = pd.read_csv(path / "summary.csv")
    table["label"] = table.label.astype(object).where(table.label.notna(), None)
    runs = [SGDRun(p["k"], p["n"], p["seed"], _setting_name(p)) for p in meta["run_params"]]
    if len(table) != len(runs) or meta.get("runs") != len(runs):
        raise ValueError(f"{path}: summary.csv has {len(table)} rows, meta.json lists "
                         f"{len(runs)} runs and says runs = {meta.get('runs')}")
    for i, (run, row) in enumerate(zip(runs, table.itertuples(index=False))):
        if (row.k, row.n, row.seed, row.setting) != (run.k, run.n, run.seed, run.setting):
            raise ValueError(f"{path / 'summary.csv'}: row {i} does not match run {i} of "
                             "meta.json")
    with np.load(path / "runs.npz") as z:
        arrays = [tuple(np.array(z[f"{x}_{i}"]) for x in ("a", "W", "steps", "loss"))
                  for i in range(len(runs))]
    return runs, table, arrays, meta


def _setting_name(p: dict) -> str:
    for name, opts in SGD_SETTINGS.items():
        if all(p.get(key) == value for key, value in opts.items()):
            return name
    raise ValueError(f"no SGD setting has the options of {p}")


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m copyaverage.distillation",
                                description="The finite-sample and SGD experiments of the "
                                            "chapter 'Distillation from noise'.")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("classes", help="the population class of every end point of a "
                       "committed finite-sample experiment (classes.csv, meta.json)")
    c.add_argument("experiment", help="a committed finite-sample experiment, e.g. erf_samples")
    g = sub.add_parser("sgd", help="the SGD and Adam experiment (runs.npz, summary.csv, "
                       "meta.json)")
    for q in (c, g):
        q.add_argument("--out", required=True, help="output directory")
        q.add_argument("--jobs", type=int, default=2, help="parallel workers (default 2)")
    args = p.parse_args(argv)
    if args.jobs < 1 and args.jobs != -1:
        p.error(f"--jobs must be >= 1 or -1, got {args.jobs}")
    if args.what == "classes":
        table = write_class_table(args.experiment, args.out, n_jobs=args.jobs)
    else:
        table = write_sgd_experiment(args.out, n_jobs=args.jobs)
    print(f"wrote {len(table)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
