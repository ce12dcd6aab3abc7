"""Pruning a student network to fewer neurons.

A student wider than the teacher (n >= k) can fit it exactly; compression then removes
neurons. This module holds the three rules the book compares (:data:`RULES`), each a
function of the student alone (the teacher is never consulted):

``"magnitude"``
    Keep the neurons with the largest ``|a_i|`` ``|w_i|`` (outgoing times incoming weight norm).
``"spectral"``
    Keep the neurons with the largest leverage in the top ``n_keep`` eigenspace of the
    neurons' output Gram matrix K_ij = a_i a_j E[sigma(w_i.x) sigma(w_j.x)] (exact, from
    :func:`~copyaverage.gaussian.pair_interaction`): with K = U diag(lambda) U^T, eigenvalues
    in decreasing order, the score of neuron i is sum_{r <= n_keep} U_ir^2. This is the
    leverage score of column subset selection, applied to the neurons' output functions.
    It is *in the spirit of* the spectral pruning of Giambagli et al. (NeurIPS 2023), not
    the same: they train a spectral parametrization and rank nodes by its trained
    eigenvalues, which a network trained in the usual parameters does not have.
``"merge"``
    First merge neurons that compute the same function up to the sign of an odd
    activation (:func:`merge_duplicates`), then rank by magnitude.

Every rule returns the kept neurons in their original order, with their weights unchanged
(``"merge"``: merged neurons carry the summed outgoing weight), and never more than
``n_keep`` of them (``"merge"`` may leave fewer when merging leaves fewer neurons).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .activations import Activation, get_activation
from .classify import end_label
from .configurations import signed_cosines
from .gaussian import pair_interaction
from .loss import population_loss
from .sweep import StartSpec, sweep
from .teacher import Teacher

__all__ = ["RULES", "RECOVERED_LOSS", "prune", "neuron_scores", "merge_duplicates", "pruned_start",
           "neuron_roles", "anatomy", "prune_and_retrain"]

#: The pruning rules :func:`prune` knows.
RULES = ("magnitude", "spectral", "merge")

#: End loss at or below which a student counts as having recovered the teacher (the book's
#: chapter on pruning; the teacher's own output has E[f*^2] = k/3).
RECOVERED_LOSS = 1e-10


def _check_student(a, W):
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    if a.ndim != 1 or W.ndim != 2 or W.shape[0] != a.shape[0] or a.size == 0:
        raise ValueError("a must have shape (n,) and W shape (n, d) with n >= 1; "
                         f"got {a.shape} and {W.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(W))):
        raise ValueError("a and W must be finite")
    return a, W


def _check_rule(rule):
    if rule not in RULES:
        raise ValueError(f"unknown pruning rule {rule!r}; known: {', '.join(RULES)}")


def neuron_scores(a, W, rule: str, activation: str | Activation = "erf",
                  n_keep: int | None = None) -> np.ndarray:
    """The score of every neuron under ``rule`` ("magnitude" or "spectral"; higher is kept
    first). ``n_keep`` (needed for "spectral") is the dimension of the eigenspace.

    Raises
    ------
    ValueError
        For bad shapes, non-finite weights, an unknown rule, "merge" (which is not a
        ranking), or "spectral" without ``n_keep`` in 1..n.
    """
    a, W = _check_student(a, W)
    _check_rule(rule)
    if rule == "magnitude":
        return np.abs(a) * np.linalg.norm(W, axis=1)
    if rule == "merge":
        raise ValueError('"merge" merges before ranking; its ranking is "magnitude"')
    n = a.size
    if n_keep is None or isinstance(n_keep, bool) or not isinstance(n_keep, (int, np.integer)) \
            or not 1 <= n_keep <= n:
        raise ValueError(f"spectral scores need n_keep, an integer in 1..{n}; got {n_keep!r}")
    K = a[:, None] * a[None, :] * pair_interaction(W, W, activation)
    _, U = np.linalg.eigh(0.5 * (K + K.T))  # ascending eigenvalues
    top = U[:, n - n_keep:]
    return np.einsum("ir,ir->i", top, top)


def merge_duplicates(a, W, activation: str | Activation = "erf", rtol: float = 0.1):
    """Merge neurons that compute (nearly) the same function.

    Neurons i and j are joined when ``|w_i - s w_j|`` <= rtol max(``|w_i|``, ``|w_j|``),
    with s = 1, or s = -1 too when the activation is odd (then
    s sigma(w_j.x) = sigma(s w_j.x)). Groups are formed greedily: each neuron not yet in
    a group leads a new one and takes in every later free neuron near it (so a group
    lies within rtol of its leader, and no chain of near neighbours can grow it further).
    A group becomes one neuron with outgoing weight A = sum_j s_j a_j and incoming vector
    the ``|a|``-weighted mean of the s_j w_j (a neuron alone keeps its own, bit for bit),
    which computes exactly the group's function when its w_j coincide (and to first
    order in their spread otherwise). Groups keep the position of their leader.

    Returns
    -------
    a, W : ndarrays
        The merged network.
    groups : list of lists of int
        The original neurons of each merged neuron.

    Raises
    ------
    ValueError
        For bad shapes, non-finite weights, an unknown activation, or rtol outside [0, 1).
    """
    a, W = _check_student(a, W)
    act = get_activation(activation)
    if not 0.0 <= rtol < 1.0:
        raise ValueError(f"rtol must lie in [0, 1), got {rtol!r}")
    n = a.size
    norms = np.linalg.norm(W, axis=1)
    scale = np.maximum(norms[:, None], norms[None, :])
    signs = (1.0, -1.0) if act.odd else (1.0,)
    near = {s: np.linalg.norm(W[:, None, :] - s * W[None, :, :], axis=2) <= rtol * scale
            for s in signs}
    leader = np.full(n, -1)
    sign_of = np.ones(n)  # sign relative to the group's leader
    for i in range(n):
        if leader[i] >= 0:
            continue
        leader[i] = i
        for j in range(i + 1, n):
            for s in signs:
                if leader[j] < 0 and near[s][i, j]:
                    leader[j], sign_of[j] = i, s
    groups = {int(i): [int(j) for j in np.flatnonzero(leader == i)] for i in np.unique(leader)}
    merged_a, merged_W, members = [], [], []
    for first in sorted(groups):
        idx = groups[first]
        s = sign_of[idx]
        weights = np.abs(a[idx])
        if len(idx) == 1 or weights.sum() == 0:
            w = s[0] * W[first]  # a neuron alone is kept bit for bit
        else:
            w = weights @ (s[:, None] * W[idx]) / weights.sum()
        merged_a.append(float(s @ a[idx]))
        merged_W.append(w)
        members.append(idx)
    return np.array(merged_a), np.array(merged_W), members


def prune(a, W, n_keep: int, rule: str = "magnitude", *,
          activation: str | Activation = "erf", merge_rtol: float = 0.1):
    """Prune the student (a, W) to at most ``n_keep`` neurons by ``rule``.

    The rules are those of :data:`~copyaverage.pruning.RULES`; the module docstring
    describes each.

    Parameters
    ----------
    a : array_like (n,), W : array_like (n, d)
    n_keep : int
        Neurons to keep, 1 <= n_keep <= n.
    rule : {"magnitude", "spectral", "merge"}
    activation : str or Activation
        Used by "spectral" (the Gram matrix) and "merge" (whether sigma is odd).
    merge_rtol : float
        ``rtol`` of :func:`merge_duplicates` for "merge".

    Returns
    -------
    a, W : ndarrays of shapes (m,) and (m, d), m <= n_keep
        The kept neurons in their original order (ties in the score broken by index).

    Raises
    ------
    ValueError
        For bad shapes, non-finite weights, an unknown rule or activation, or n_keep not an
        integer in 1..n.
    """
    a, W = _check_student(a, W)
    _check_rule(rule)
    get_activation(activation)
    n = a.size
    if isinstance(n_keep, bool) or not isinstance(n_keep, (int, np.integer)) \
            or not 1 <= n_keep <= n:
        raise ValueError(f"n_keep must be an integer in 1..{n} (the student's width), "
                         f"got {n_keep!r}")
    if rule == "merge":
        a, W, _ = merge_duplicates(a, W, activation, merge_rtol)
        rule = "magnitude"
        n_keep = min(n_keep, a.size)
    scores = neuron_scores(a, W, rule, activation, n_keep)
    order = np.lexsort((np.arange(a.size), -scores))  # descending score, then index
    keep = np.sort(order[:n_keep])
    return a[keep].copy(), W[keep].copy()


def pruned_start(a, W, teacher: Teacher, n_keep: int, rule: str,
                 activation: str = "erf") -> StartSpec:
    """The gradient-flow run that retrains the pruned student ``prune(a, W, n_keep, rule)``
    (default flow options). Its label is the same for every rule, so two rules that keep
    the same neurons share one stored result."""
    a_p, W_p = prune(a, W, n_keep, rule, activation=activation)
    return StartSpec(activation, a_p, W_p, teacher, label="pruned student")


def neuron_roles(a, W, teacher: Teacher, activation: str | Activation = "erf", *,
                 silent: float = 1e-4, cosine: float = 0.999) -> pd.DataFrame:
    """What each neuron of a student does, relative to the teacher.

    Its output size r_i = ``|a_i|`` sqrt(E[sigma(w_i.x)^2]) (exact) is compared with that of
    the teacher's largest neuron, r_T: the neuron is ``"silent"`` if r_i <= silent r_T;
    otherwise ``"on teacher"`` if its largest ``|cos(w_i, v_j)|`` over teacher neurons j is at
    least ``cosine``, else ``"elsewhere"``.

    Returns
    -------
    DataFrame
        One row per student neuron: ``a``, ``norm`` (``|w_i|``), ``output`` (r_i / r_T),
        ``teacher_neuron`` (the j of largest ``|cos|``), ``cosine`` (that cosine, signed by
        a_i as in :func:`~copyaverage.configurations.signed_cosines`) and
        ``role``.
    """
    a, W = _check_student(a, W)
    if W.shape[1] != teacher.d:
        raise ValueError(f"W has {W.shape[1]} columns, the teacher's input dimension is "
                         f"{teacher.d}")
    own = np.sqrt(np.maximum(np.diag(pair_interaction(W, W, activation)), 0.0))
    teacher_own = np.abs(teacher.a) * np.sqrt(np.diag(pair_interaction(teacher.V, teacher.V,
                                                                       activation)))
    output = np.abs(a) * own / teacher_own.max()
    norms = np.linalg.norm(W, axis=1)
    cos = signed_cosines(a, W, teacher) / np.linalg.norm(teacher.V, axis=1)[None, :]
    j = np.argmax(np.abs(cos), axis=1)
    best = cos[np.arange(a.size), j]
    role = np.where(output <= silent, "silent",
                    np.where(np.abs(best) >= cosine, "on teacher", "elsewhere"))
    return pd.DataFrame(dict(a=a, norm=norms, output=output, teacher_neuron=j, cosine=best,
                             role=role))


def anatomy(a, W, teacher: Teacher, activation: str | Activation = "erf", *,
            diverging: float = 10.0, **role_options) -> dict:
    """Counts of :func:`neuron_roles` for one student: ``silent``, ``on_teacher``,
    ``elsewhere`` neurons; ``shared``, the teacher neurons with two or more non-silent
    student neurons on them; ``uncovered``, the teacher neurons with none;
    ``diverging_pairs``, shared teacher neurons with two of their neurons at
    ``|a|`` > ``diverging``; and ``max_abs_a``."""
    roles = neuron_roles(a, W, teacher, activation, **role_options)
    on = roles[roles.role == "on teacher"]
    per_teacher = on.groupby("teacher_neuron").size().reindex(range(teacher.k), fill_value=0)
    big = on[on.a.abs() > diverging].groupby("teacher_neuron").size()
    return dict(silent=int((roles.role == "silent").sum()), on_teacher=len(on),
                elsewhere=int((roles.role == "elsewhere").sum()),
                shared=int((per_teacher >= 2).sum()), uncovered=int((per_teacher == 0).sum()),
                diverging_pairs=int((big >= 2).sum()), max_abs_a=float(np.abs(roles.a).max()))


def prune_and_retrain(students, n_keep_values, rules=RULES, *, activation: str = "erf",
                      store=None, n_jobs: int = 2, progress: bool = False) -> pd.DataFrame:
    """Prune every student to every width and retrain it by gradient flow.

    Parameters
    ----------
    students : iterable of (spec, (a, W))
        Wide students and the runs that made them (RunSpec: its ``k``, ``n``, ``seed``,
        ``init`` label the rows; the teacher is ``spec.teacher()``).
    n_keep_values : callable
        ``n_keep_values(k)`` gives the widths n' to prune to for teacher width k.
    rules : sequence of str
        Rules of :data:`RULES`.
    store, n_jobs, progress
        As for :func:`copyaverage.sweep.sweep` (the retraining runs go through the store;
        runs whose pruned start is the same are computed once).

    Returns
    -------
    DataFrame
        One row per (student, n', rule): ``k``, ``init``, ``seed``, ``n_wide``, ``n_keep``,
        ``rule``, ``kept`` (neurons kept), ``pruned_loss`` (before retraining), and of the
        retrained end point ``loss``, ``grad_norm``, ``converged``, ``min_eigenvalue`` (of
        the Hessian) and ``label``
        (:func:`copyaverage.classify.classify`; "not converged" otherwise).
    """
    rows, specs = [], []
    for spec, (a, W) in students:
        teacher = spec.teacher()
        for n_keep in n_keep_values(spec.k):
            for rule in rules:
                start = pruned_start(a, W, teacher, int(n_keep), rule, activation)
                rows.append(dict(k=spec.k, init=spec.init, seed=spec.seed, n_wide=spec.n,
                                 n_keep=int(n_keep), rule=rule, kept=start.n,
                                 pruned_loss=population_loss(start.a0, start.W0, teacher,
                                                             activation)))
                specs.append(start)
    keys = [s.params()["start"] for s in specs]
    unique = {key: i for i, key in enumerate(keys)}
    results = sweep([specs[i] for i in unique.values()], store=store, n_jobs=n_jobs,
                    progress=progress, desc="pruned students")
    by_key = dict(zip(unique, results))
    for row, spec, key in zip(rows, specs, keys):
        r = by_key[key]
        label = end_label(r.a, r.W, spec.teacher(), activation, r.converged, r.loss)
        row.update(loss=r.loss, grad_norm=r.grad_norm, converged=bool(r.converged),
                   min_eigenvalue=r.min_eigenvalue, label=label)
    return pd.DataFrame(rows)
