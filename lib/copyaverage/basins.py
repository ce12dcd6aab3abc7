"""Which minimum gradient flow reaches, how often, and what decides it.

Used by the book's chapter on basins and its introduction.

Basin statistics: :func:`basin_shares` counts, per student width, the runs that end at
a perturbed copy and at the CA optimum, with 95 % Wilson intervals (:func:`wilson`);
:func:`majority_switch` reads off the smallest width with a perturbed-copy majority;
:func:`exact_boundaries` gives the exact boundaries of the two minima
(:func:`copyaverage.exact_transition.transition`) as fractions of the teacher width.

Predictors: a *feature* is a number read off the student at one flow time
(:data:`FEATURES`); :func:`flow_features` runs the flow of a
:class:`~copyaverage.sweep.RunSpec` up to the largest requested time and reads every
feature at each requested time; :func:`fit_stump` and :func:`stump_accuracy` fit and
score the simplest predictor, a threshold on one feature; :func:`evaluate_predictors`
applies the book's stated protocol (train on seeds below 100, score on the others).
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

from .classify import CA_OPTIMUM, PERTURBED_COPY
from .configurations import signed_cosines
from .flow import gradient_flow
from .loss import unpack
from .store import atomic_write
from .sweep import RunSpec

__all__ = ["wilson", "basin_shares", "majority_switch", "exact_boundaries",
           "FEATURES", "FEATURE_TIMES", "student_features", "flow_features", "feature_table",
           "write_feature_table", "load_feature_table", "Stump", "fit_stump", "stump_accuracy",
           "evaluate_predictors"]

def wilson(successes, total, z: float = 1.96):
    """The Wilson score interval (95 % for ``z = 1.96``) of a binomial proportion.

    ``successes`` and ``total`` are numbers or arrays (``total >= 1``); returns (lo, hi).
    """
    successes = np.asarray(successes, dtype=float)
    total = np.asarray(total, dtype=float)
    if np.any(total < 1) or np.any(successes < 0) or np.any(successes > total):
        raise ValueError("wilson needs 0 <= successes <= total and total >= 1, got "
                         f"{successes!r} of {total!r}")
    p = successes / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / (1 + z**2 / total)
    return centre - half, centre + half


def basin_shares(table: pd.DataFrame) -> pd.DataFrame:
    """Per student width n: converged runs (``total``), how many end at a perturbed copy
    (``pc``) and at the CA optimum (``ca``), the perturbed-copy ``share`` and its 95 %
    Wilson interval (``lo``, ``hi``). ``table`` has columns n, label, converged."""
    conv = table[table.converged]
    counts = conv.groupby("n").label.agg(pc=lambda s: int((s == PERTURBED_COPY).sum()),
                                         ca=lambda s: int((s == CA_OPTIMUM).sum()), total="size")
    lo, hi = wilson(counts.pc.to_numpy(), counts.total.to_numpy())
    return counts.assign(share=counts.pc / counts.total, lo=lo, hi=hi)


def majority_switch(shares: pd.DataFrame):
    """The smallest n of ``shares`` (from :func:`basin_shares`) with a perturbed-copy
    majority (share > 0.5); None if there is none, NaN if the smallest n measured already
    has one (the switch lies below the widths measured)."""
    majority = shares.index[shares.share > 0.5]
    if len(majority) == 0:
        return None
    return float("nan") if majority.min() == shares.index.min() else int(majority.min())


def exact_boundaries(k_values) -> pd.DataFrame:
    """The exact boundaries of :func:`copyaverage.exact_transition.transition` for each teacher width k, as
    fractions n/k: ``pc_minimum`` (from here the perturbed copy is a minimum),
    ``loss_crossing`` (from here it has the lower loss), ``ca_saddle`` (from here the CA
    optimum is a saddle); NaN where a boundary does not exist at that k."""
    from .exact_transition import transition

    rows = []
    for k in k_values:
        at = transition(int(k)).attrs

        def frac(key, last):
            values = at[key]
            return (values[-1] if last else values[0]) / k if len(values) else np.nan

        rows.append(dict(k=int(k), pc_minimum=frac("pc_stability_changes", True),
                         loss_crossing=frac("loss_crossings", True),
                         ca_saddle=frac("ca_stability_changes", False)))
    return pd.DataFrame(rows).set_index("k")


#: Features read off a student (a, W) of a unit-orthonormal teacher, and what they mean.
FEATURES = {
    "max_abs_a": "largest outgoing weight max_i |a_i|",
    "mean_direction_cosine": "largest cosine between a student neuron sign(a_i) w_i and the "
                             "mean teacher direction (v_1 + ... + v_k) / sqrt(k)",
    "copies": "number of distinct teacher neurons that some student neuron copies "
              "(cosine of sign(a_i) w_i with it >= 0.9)",
    "largest_group": "size of the largest group of the nearest CA configuration "
                     "(teacher neuron j goes to argmax_i a_i w_i . v_j)",
    "loss": "population loss",
}
#: Cosine from which a student neuron counts as a copy of a teacher neuron (as in
#: :mod:`copyaverage.classify` for erf).
COPY_COSINE = 0.9
#: Flow times at which the book reads the features (stated before the evaluation runs;
#: notes/basins.md).
FEATURE_TIMES = (0.0, 1.0, 10.0, 100.0, 300.0)


def student_features(a, W, teacher, activation, loss) -> dict:
    """Every feature of :data:`FEATURES` for the student (a, W); ``loss`` is its loss."""
    V = teacher.V
    # erf is odd: (a_i, w_i) and (-a_i, -w_i) are the same neuron, so directions are read
    # with the sign of a_i (as in copyaverage.classify)
    cos = signed_cosines(a, W, teacher)
    W = np.where(a < 0, -1.0, 1.0)[:, None] * W
    norms = np.linalg.norm(W, axis=1)
    mean_dir = V.sum(axis=0) / np.sqrt(len(V))
    copied = np.argmax(cos, axis=1)[cos.max(axis=1) >= COPY_COSINE]
    owner = np.argmax(a[:, None] * (W @ V.T), axis=0)
    return dict(max_abs_a=float(np.abs(a).max()),
                mean_direction_cosine=float(np.max(W @ mean_dir / np.where(norms > 0, norms, 1.0))),
                copies=int(len(set(copied.tolist()))),
                largest_group=int(np.bincount(owner, minlength=len(a)).max()),
                loss=float(loss))


def flow_features(spec: RunSpec, times, per_decade: int = 20) -> pd.DataFrame:
    """The features of :data:`FEATURES` along the gradient flow of ``spec``.

    The flow (same solver and tolerances as the run itself) is integrated up to
    ``max(times)`` with ``per_decade`` recorded points per decade of flow time; at each
    requested time the recorded point nearest in log t is read (t = 0 exactly: the
    initialization).

    Returns
    -------
    DataFrame with one row per requested time: ``t`` (requested), ``t_read`` (the flow
    time of the point read) and one column per feature.
    """
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0 or np.any(~np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"times must be a non-empty list of finite numbers >= 0, got {times!r}")
    if not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"per_decade must be an integer >= 1, got {per_decade!r}")
    teacher = spec.teacher()
    a0, W0 = spec.start()
    t_max = float(times.max()) if times.max() > 0 else 1e-12
    opts = dict(spec.options)
    opts.update(t_max=t_max, trajectory_per_decade=per_decade, record_parameters=True,
                eigenvalues=False)
    tr = gradient_flow(a0, W0, teacher, spec.activation, **opts).trajectory
    n, d = W0.shape
    rows = []
    for t in times:
        if t == 0:
            i = 0
        else:
            positive = np.flatnonzero(tr.t > 0)
            i = int(positive[np.argmin(np.abs(np.log(tr.t[positive] / t)))])
        a, W = unpack(tr.theta[i], n, d)
        rows.append(dict(t=float(t), t_read=float(tr.t[i]),
                         **student_features(a, W, teacher, spec.activation, tr.loss[i])))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Stump:
    """The rule "class 1 if ``sign * (x - threshold) > 0``" on one feature."""

    feature: str
    threshold: float
    sign: int

    def predict(self, x) -> np.ndarray:
        return self.sign * (np.asarray(x, dtype=float) - self.threshold) > 0


def fit_stump(x, y, feature: str = "") -> tuple[Stump, float]:
    """The threshold on ``x`` (either direction) that classifies ``y`` best.

    Thresholds are midpoints between consecutive distinct values of ``x`` (and one
    below all of them). Ties in accuracy go to the first threshold found.

    Returns
    -------
    (Stump, training accuracy)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=bool)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"x and y must be 1-d of the same non-zero length, got {x.shape}, {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"feature {feature!r} has non-finite values")
    values = np.unique(x)
    cuts = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2])
    best = (None, -1.0)
    for c in cuts:
        for sign in (1, -1):
            acc = float(np.mean((sign * (x - c) > 0) == y))
            if acc > best[1]:
                best = (Stump(feature, float(c), sign), acc)
    return best


def stump_accuracy(stump: Stump, x, y) -> float:
    """Share of ``y`` (bool) that ``stump`` predicts correctly from ``x``."""
    return float(np.mean(stump.predict(x) == np.asarray(y, dtype=bool)))


def evaluate_predictors(features: pd.DataFrame, labels: pd.DataFrame,
                        candidates=None, split_seed: int = 100) -> pd.DataFrame:
    """The book's predictor protocol: at each flow time, the best stump on the training
    seeds (seed < ``split_seed``), scored on the others.

    Parameters
    ----------
    features : DataFrame
        From :func:`feature_table` (columns t, n, seed and the features).
    labels : DataFrame
        One row per run with columns n, seed, label, converged; runs that did not converge
        are left out. The class to predict is "ends at a perturbed copy".
    candidates : list of str
        Columns a stump may use (default: every feature and n).

    Returns
    -------
    DataFrame indexed by t: ``feature``, ``threshold``, ``direction``, ``train_accuracy``,
    ``held_out_accuracy``, ``held_out_baseline`` (always guessing the more frequent class)
    and ``held_out_runs``.
    """
    candidates = list(FEATURES) + ["n"] if candidates is None else list(candidates)
    data = features.join(labels.set_index(["n", "seed"])[["label", "converged"]],
                         on=["n", "seed"])
    if data.label.isna().any():
        raise ValueError("some feature rows have no label (runs missing from labels)")
    data = data[data.converged.astype(bool)]
    data = data.assign(pc=data.label == PERTURBED_COPY)
    rows = []
    for t, at in data.groupby("t"):
        train, test = at[at.seed < split_seed], at[at.seed >= split_seed]
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"t = {t}: need runs on both sides of seed {split_seed}")
        best, best_acc = None, -1.0
        for f in candidates:
            stump, acc = fit_stump(train[f], train.pc, f)
            if acc > best_acc:
                best, best_acc = stump, acc
        rows.append(dict(t=float(t), feature=best.feature, threshold=best.threshold,
                         direction=">" if best.sign > 0 else "<", train_accuracy=best_acc,
                         held_out_accuracy=stump_accuracy(best, test[best.feature], test.pc),
                         held_out_baseline=float(max(test.pc.mean(), 1 - test.pc.mean())),
                         held_out_runs=len(test)))
    return pd.DataFrame(rows).set_index("t")


def feature_table(specs, times=FEATURE_TIMES, *, n_jobs: int = 2, progress: bool = True,
                  per_decade: int = 20) -> pd.DataFrame:
    """:func:`flow_features` of every spec (in parallel), with columns ``n`` and ``seed``."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    def one(spec):
        return flow_features(spec, times, per_decade).assign(n=spec.n, seed=spec.seed)

    parts = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(one)(s) for s in specs)
    parts = list(tqdm(parts, total=len(specs), disable=not progress, desc="features", unit="run"))
    return pd.concat(parts, ignore_index=True)


def write_feature_table(experiment: str, out, *, n_jobs: int = 2, progress: bool = True,
                        command: str | None = None) -> pd.DataFrame:
    """Compute :func:`feature_table` for the runs of committed experiment ``experiment``
    and write ``features.csv`` and ``meta.json`` (command, code hash, date, machine,
    wall time) to ``out``, each atomically."""
    from .experiments import EXPERIMENTS, PLANNED, provenance

    known = {**EXPERIMENTS, **PLANNED}
    if experiment not in known:
        raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(known)}")
    specs = known[experiment].specs()
    start = time.perf_counter()
    table = feature_table(specs, n_jobs=n_jobs, progress=progress)
    elapsed = time.perf_counter() - start
    out = Path(out)
    atomic_write(out / "features.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    meta = dict(command=command or f"python -m copyaverage.basins {experiment}",
                experiment=experiment, times=list(FEATURE_TIMES), per_decade=20,
                **provenance(), elapsed_seconds=elapsed, runs=len(specs))
    atomic_write(out / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return table


def load_feature_table(path) -> tuple[pd.DataFrame, dict]:
    """``features.csv`` and ``meta.json`` written by :func:`write_feature_table`."""
    path = Path(path)
    return pd.read_csv(path / "features.csv"), json.loads((path / "meta.json").read_text())


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m copyaverage.basins",
                                description="Features along the flow of every run of a committed "
                                            "experiment (the book's basin predictors).")
    p.add_argument("experiment", help="a committed experiment, e.g. erf_k50_seeds200")
    p.add_argument("--out", required=True, help="directory for features.csv and meta.json")
    p.add_argument("--jobs", type=int, default=2, help="parallel workers (>= 1)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    argv = sys.argv[1:] if argv is None else argv
    write_feature_table(args.experiment, args.out, n_jobs=args.jobs,
                        command="python -m copyaverage.basins " + " ".join(argv))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
