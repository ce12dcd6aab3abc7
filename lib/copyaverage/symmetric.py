"""Critical points that keep a symmetry of the student: relaxed copy-average points and
perturbed copies, for any activation (ReLU included).

Why a small problem suffices. For a unit-orthonormal teacher the population loss is
invariant under a permutation of the teacher neurons (acting on the inputs by permuting
the v_j and fixing their orthogonal complement) and under orthogonal maps of that
complement. If such a group G fixes a student theta_0, it fixes the gradient there too (G
acts by orthogonal maps), so gradient flow from theta_0 never leaves the fixed subspace
F = {theta : g theta = theta for all g in G}, and a critical point of the loss restricted
to F is a critical point of the full loss (Palais' principle of symmetric criticality).
With an orthonormal basis B of F (theta = B phi), the flow in phi,
phi' = -B^T grad L(B phi), *is* the full gradient flow from theta_0, in a handful of
coordinates.

Two subspaces are used:

``relaxed copy average`` (:func:`relaxed_copy_average`)
    G permutes the teacher neurons within each group of a partition (G_1, ..., G_n), and
    groups of equal size together with their student neurons. Its fixed students have
    w_i = sum_l c_il s_l / norm(s_l) with s_l = sum_{j in G_l} v_j, a_i and c_il depending
    only on group sizes (:func:`relaxed_basis`; 7 coordinates for the CA optimum at any
    k). The copy-average configuration of the partition lies in F. For erf it
    is a critical point and stays put; for ReLU it is not critical, and the flow from it
    ends at the *relaxed* copy-average point, which keeps the symmetry.
``symmetric perturbed copy`` (:func:`symmetric_perturbed_copy`)
    G = S_n x S_{k-n} permutes student neuron i together with teacher neuron i (i < n)
    and the other k - n teacher neurons among themselves. Its fixed students are
    a_i = a, w_i = alpha v_i + beta sum_{j < n, j != i} v_j + gamma sum_{j >= n} v_j:
    four coordinates (the family of :mod:`copyaverage.exact_transition`, for any
    activation). The flow within F starts from n exact copies (a_i = a*_i, w_i = v_i).

Both return the end point as a :class:`~copyaverage.critical.CriticalPoint` (exact loss,
full gradient norm, full Hessian signature), after integrating the reduced flow with
:func:`scipy.integrate.solve_ivp` (BDF, exact reduced Jacobian -B^T H B) until the
reduced gradient is below 1e-9, then Newton's method in phi (least-squares steps, so the
flat rescaling directions of ReLU do not matter) to round-off.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from .activations import Activation, get_activation
from .configurations import canonical_groups, copy_average_point, partition_type
from .critical import CriticalPoint, analyze_point
from .derivatives import Objective
from .loss import pack, unpack
from .one_neuron import is_unit_orthonormal
from .teacher import Teacher

__all__ = ["relaxed_basis", "perturbed_copy_basis", "symmetric_flow",
           "relaxed_copy_average", "symmetric_perturbed_copy", "SymmetricFlowError",
           "symmetric_points", "match_symmetric", "symmetric_classes", "SAME_FUNCTION",
           "SAME_LOSS", "SYMMETRIC_CLASSES", "symmetric_transition"]

#: The classes of :func:`symmetric_classes`, in the order the book shows them.
SYMMETRIC_CLASSES = ("relaxed CA optimum", "other relaxed CA", "perturbed copy", "neither")

#: Function-space distance E[(f - f_point)^2] at most which an end point *is* a symmetric
#: point (criterion C5b of the book).
SAME_FUNCTION = 1e-8
#: Relative loss difference at most which an end point *is* a symmetric point (C5b).
SAME_LOSS = 1e-8

#: Reduced gradient norm at which the flow hands over to Newton's method.
HANDOVER = 1e-9


class SymmetricFlowError(RuntimeError):
    """The flow within the fixed subspace did not reach a critical point (a ReLU
    neuron died, or it did not converge in the allowed time)."""


def _check_teacher(teacher) -> Teacher:
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    if not is_unit_orthonormal(teacher):
        raise ValueError("the symmetry argument needs a unit-orthonormal teacher (orthonormal "
                         "v_j, all a*_j = 1), e.g. Teacher.orthonormal(k)")
    return teacher


def relaxed_basis(groups, teacher: Teacher) -> np.ndarray:
    """Orthonormal basis (columns) of the students fixed by the symmetry of the CA
    configuration of ``groups``: permutations within each group, and permutations of
    groups of equal size together with their student neurons.

    With s_l = sum_{j in G_l} v_j / sqrt(m_l) (m_l the size of group l), a fixed student has w_i = sum_l c_il s_l,
    where a_i depends only on the size of group i and c_il only on the sizes of groups i
    and l and on whether l = i: for the CA optimum (sizes k - n + 1, 1, ..., 1) that is 7
    coordinates for any k and 3 <= n < k (6 for n = 2, 2 for n = 1). Shape (n (1 + d), r).
    """
    teacher = _check_teacher(teacher)
    groups = canonical_groups(groups, teacher.k)
    n, d = len(groups), teacher.d
    S = np.array([teacher.V[list(g)].sum(axis=0) / math.sqrt(len(g)) for g in groups])
    size = [len(g) for g in groups]
    columns = {}
    for i in range(n):
        col = columns.setdefault(("a", size[i]), np.zeros(n * (1 + d)))
        col[i] = 1.0
        for l in range(n):
            col = columns.setdefault(("c", size[i], size[l], i == l), np.zeros(n * (1 + d)))
            col[n + i * d: n + (i + 1) * d] += S[l]
    B = np.stack(list(columns.values()), axis=1)
    return B / np.linalg.norm(B, axis=0)


def perturbed_copy_basis(n: int, teacher: Teacher) -> np.ndarray:
    """Orthonormal basis (columns) of the perturbed-copy family for n students: shape
    (n (1 + d), 4), coordinates proportional to (a, alpha, beta, gamma)."""
    teacher = _check_teacher(teacher)
    k, d = teacher.k, teacher.d
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < k:
        raise ValueError(f"n must be an integer with 1 <= n < k = {k}, got {n!r}")
    V = teacher.V
    cols = np.zeros((4, n, 1 + d))
    cols[0, :, 0] = 1.0
    for i in range(n):
        cols[1, i, 1:] = V[i]
        cols[2, i, 1:] = V[:n].sum(axis=0) - V[i]
        cols[3, i, 1:] = V[n:].sum(axis=0)
    B = np.stack([pack(c[:, 0], c[:, 1:]) for c in cols], axis=1)
    norms = np.linalg.norm(B, axis=0)
    keep = norms > 0  # n = 1: no beta direction
    return B[:, keep] / norms[keep]


def symmetric_flow(B: np.ndarray, theta0, teacher: Teacher, activation: str | Activation, *,
                   label: str = "", t_max: float = 1e9, tol: float = 1e-13,
                   max_newton: int = 50, signature: bool = True) -> CriticalPoint:
    """Gradient flow from ``theta0`` within the subspace spanned by the orthonormal
    columns of ``B`` (which must be invariant under the flow: module docstring), then
    Newton's method to a critical point.

    Parameters
    ----------
    B : ndarray, shape (P, r)
        Orthonormal columns spanning a flow-invariant subspace that contains theta0.
    theta0 : array_like, shape (P,)
        pack(a, W) of the start.
    teacher, activation
        The loss.
    label : str
        The label of the returned point.
    t_max : float
        Longest flow time.
    tol : float
        Reduced gradient norm at which Newton's method stops.
    signature : bool
        False leaves out the full Hessian's eigenvalues (see
        :func:`copyaverage.critical.analyze_point`).

    Returns
    -------
    CriticalPoint
        Full loss, full gradient norm and full Hessian signature at the end point.

    Raises
    ------
    ValueError
        If theta0 is not in the span of B (relative residual above 1e-10).
    SymmetricFlowError
        If a ReLU neuron dies (w_i = 0) or the flow does not reach a critical point.
    """
    act = get_activation(activation)
    theta0 = np.asarray(theta0, dtype=float)
    P = B.shape[0]
    d = teacher.d
    n = P // (1 + d)
    if theta0.shape != (P,) or n * (1 + d) != P:
        raise ValueError(f"theta0 must have shape ({P},) = (n (1 + d),), got {theta0.shape}")
    phi = B.T @ theta0
    if np.linalg.norm(B @ phi - theta0) > 1e-10 * max(1.0, np.linalg.norm(theta0)):
        raise ValueError("theta0 is not in the subspace spanned by B")

    ob = Objective(teacher, act, n)  # closed-form derivatives for erf and ReLU

    def reduced_gradient(p):
        return B.T @ ob.gradient(B @ p)

    def rhs(t, p):
        return -reduced_gradient(p)

    def jac(t, p):
        return -B.T @ ob.hessian(B @ p) @ B

    def settled(t, p):
        return np.linalg.norm(rhs(t, p)) - HANDOVER

    settled.terminal = True
    try:
        if np.linalg.norm(rhs(0.0, phi)) > HANDOVER:
            sol = solve_ivp(rhs, (0.0, t_max), phi, method="BDF", jac=jac, events=settled,
                            rtol=1e-10, atol=1e-12)
            phi = sol.y[:, -1]
        for _ in range(max_newton):
            g = reduced_gradient(phi)
            if np.linalg.norm(g) <= tol:
                break
            phi = phi - np.linalg.lstsq(-jac(0.0, phi), g, rcond=1e-12)[0]
    except ValueError as err:  # the ReLU gradient at a dead neuron
        raise SymmetricFlowError(f"{label or 'symmetric flow'}: {err}") from err
    a, W = unpack(B @ phi, n, d)
    point = analyze_point(a, W, teacher, act, label=label, signature=signature)
    if not np.isfinite(point.loss) or point.grad_norm > 1e3 * tol:
        raise SymmetricFlowError(f"{label or 'symmetric flow'}: no critical point reached "
                                 f"(gradient norm {point.grad_norm:.1e})")
    return point


def relaxed_copy_average(groups, teacher: Teacher, activation: str | Activation = "relu",
                         **options) -> CriticalPoint:
    """The critical point gradient flow reaches from the copy-average configuration of
    ``groups``, computed within its symmetric subspace (module docstring).

    For erf (and any activation whose CA points are critical) it is the CA configuration
    itself; for ReLU it is the *relaxed* CA point. ``options`` go to
    :func:`symmetric_flow`.

    Parameters
    ----------
    groups : sequence of sequences of int
        A partition of range(k) into n groups (student i belongs to the i-th group of
        :func:`copyaverage.configurations.canonical_groups`).
    teacher : Teacher
        Unit-orthonormal.
    activation : str or Activation

    Returns
    -------
    CriticalPoint
        Labelled "relaxed CA " + the group sizes, e.g. "relaxed CA 3+1+1".
    """
    teacher = _check_teacher(teacher)
    groups = canonical_groups(groups, teacher.k)
    a0, W0 = copy_average_point(groups, teacher, activation)
    label = "relaxed CA " + "+".join(map(str, partition_type(groups)))
    return symmetric_flow(relaxed_basis(groups, teacher), pack(a0, W0), teacher, activation,
                          label=label, **options)


def symmetric_perturbed_copy(n: int, teacher: Teacher, activation: str | Activation = "relu",
                             **options) -> CriticalPoint:
    """The critical point that gradient flow within the perturbed-copy family reaches from
    n exact copies (a_i = 1, w_i = v_i, i < n).

    Parameters
    ----------
    n : int
        Student width, 1 <= n < k.
    teacher : Teacher
        Unit-orthonormal.
    activation : str or Activation

    Returns
    -------
    CriticalPoint
        Labelled "perturbed copy". It may be a saddle: the Hessian signature says.
    """
    B = perturbed_copy_basis(n, teacher)
    theta0 = pack(np.ones(n), teacher.V[:n])
    return symmetric_flow(B, theta0, teacher, activation, label="perturbed copy", **options)


def _optimum_label(k: int, n: int) -> str:
    """The label of the relaxed CA optimum (group sizes k - n + 1, 1, ..., 1)."""
    return f"relaxed CA {k - n + 1}" + "+1" * (n - 1)


def _block_groups(sizes) -> tuple:
    """Consecutive blocks of teacher indices with the given sizes."""
    out, start = [], 0
    for m in sizes:
        out.append(tuple(range(start, start + m)))
        start += m
    return tuple(out)


def symmetric_points(k: int, n: int, activation: str | Activation = "relu",
                     types: str = "all", signature: bool = True) -> dict:
    """The relaxed CA point of every group-size type of k teacher neurons into n groups,
    and the perturbed copy, for Teacher.orthonormal(k).

    ``types="optimum"`` keeps, of the relaxed CA points, only the relaxed CA optimum
    (sizes k - n + 1, 1, ..., 1): at large k the partitions into n parts are too many.
    ``signature=False`` leaves out the Hessian eigenvalues of every point (see
    :func:`symmetric_flow`).

    Returns
    -------
    dict
        Label -> CriticalPoint: "relaxed CA 3+1+1" (groups of consecutive teacher
        neurons, sizes in decreasing order) for every integer partition of k into n
        parts, and "perturbed copy" (students copy teacher neurons 0..n-1) when n < k.
        A flow that fails (:class:`SymmetricFlowError`) leaves its entry out.
    """
    from .configurations import integer_partitions

    if types not in ("all", "optimum"):
        raise ValueError(f"types must be 'all' or 'optimum', got {types!r}")
    teacher = Teacher.orthonormal(k)
    points = {}
    every = integer_partitions(k, n) if types == "all" else [(k - n + 1,) + (1,) * (n - 1)]
    for sizes in every:
        sizes = tuple(sorted(sizes, reverse=True))
        try:
            point = relaxed_copy_average(_block_groups(sizes), teacher, activation,
                                         signature=signature)
        except SymmetricFlowError:
            continue
        points[point.label] = point
    if n < k:
        try:
            points["perturbed copy"] = symmetric_perturbed_copy(n, teacher, activation,
                                                                signature=signature)
        except SymmetricFlowError:
            pass
    return points


def _permuted(point: CriticalPoint, teacher: Teacher, perm) -> np.ndarray:
    """W of ``point`` with teacher neuron j moved to perm[j] (the complement kept)."""
    C = point.W @ teacher.V.T
    Q = point.W - C @ teacher.V
    Cp = np.empty_like(C)
    Cp[:, perm] = C
    return Cp @ teacher.V + Q


def match_symmetric(a, W, teacher: Teacher, activation: str | Activation, points: dict, *,
                    same_function: float = SAME_FUNCTION, same_loss: float = SAME_LOSS):
    """Which point of ``points`` (from :func:`symmetric_points`) a student *is*, up to
    permutations of the teacher and student neurons.

    Relaxed CA points: teacher neuron j goes to the student that contributes most along
    it (argmax_i a_i w_i . v_j); the groups found, ordered by decreasing size, are mapped
    onto the blocks of the point of that type. Perturbed copy: student i's teacher neuron
    is its argmax; when these are distinct, they are mapped onto 0..n-1. A student
    matches when its loss is within ``same_loss`` (relative) of the point's and the
    function-space distance E[(f - f_point)^2] is at most ``same_function``.

    Returns
    -------
    dict
        ``label`` (the key of the matched point, or None), ``distance`` and ``loss_gap``
        (relative) to the nearest candidate tried (NaN when none could be tried).
    """
    from .loss import population_loss

    act = get_activation(activation)
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    k = teacher.k
    loss = population_loss(a, W, teacher, act)
    contribution = a[:, None] * (W @ teacher.V.T)
    candidates = []
    owner = np.argmax(contribution, axis=0)
    groups = [np.flatnonzero(owner == i) for i in range(len(a))]
    if all(len(g) for g in groups):
        groups.sort(key=len, reverse=True)
        label = "relaxed CA " + "+".join(str(len(g)) for g in groups)
        if label in points:
            candidates.append((label, np.concatenate(groups)))
    copied = np.argmax(contribution, axis=1)
    if "perturbed copy" in points and len(set(copied)) == len(a):
        rest = [j for j in range(k) if j not in set(copied)]
        candidates.append(("perturbed copy", np.concatenate([copied, rest])))
    best = dict(label=None, distance=float("nan"), loss_gap=float("nan"))
    for label, perm in candidates:
        point = points[label]
        dist = population_loss(a, W, Teacher(point.a, _permuted(point, teacher, perm)), act)
        gap = abs(loss - point.loss) / max(abs(point.loss), 1e-300)
        if dist <= same_function and gap <= same_loss:
            return dict(label=label, distance=dist, loss_gap=gap)
        if not dist >= best["distance"]:  # NaN-safe: the first candidate or a nearer one
            best = dict(label=None, distance=dist, loss_gap=gap)
    return best


def symmetric_classes(specs, results, activation: str | Activation = "relu",
                      types: str = "all", points: dict | None = None,
                      n_jobs: int = 1) -> list:
    """The symmetric class of each converged end point of a grid of runs (the C5b test).

    ``types``: as for :func:`symmetric_points` ("optimum": an end point at another relaxed
    CA point counts as "neither"). ``points``: optional dict (k, n) -> the
    :func:`symmetric_points` of that cell, computed already (missing cells are computed
    and added to it, ``n_jobs`` cells at a time in worker processes).

    Parameters
    ----------
    specs : sequence of RunSpec
        Runs on unit-orthonormal teachers (``spec.k``, ``spec.n``, ``spec.teacher()``).
    results : sequence of FlowResult
        Their end points.
    activation : str or Activation

    Returns
    -------
    list
        Per run: None if it did not converge, else one of :data:`SYMMETRIC_CLASSES`:
        "relaxed CA optimum" (the relaxed point of group sizes k - n + 1, 1, ..., 1),
        "other relaxed CA" (other group sizes), "perturbed copy", or "neither"
        (:func:`match_symmetric` against :func:`symmetric_points` of the run's cell).
    """
    from joblib import Parallel, delayed

    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1, got {n_jobs!r}")
    points = {} if points is None else points
    specs, results = list(specs), list(results)
    missing = sorted({(s.k, s.n) for s, r in zip(specs, results) if r.converged} - set(points))
    found = Parallel(n_jobs=n_jobs)(delayed(symmetric_points)(k, n, activation, types)
                                    for k, n in missing)
    points.update(zip(missing, found))
    out = []
    for spec, result in zip(specs, results):
        if not result.converged:
            out.append(None)
            continue
        cell = (spec.k, spec.n)
        found = match_symmetric(result.a, result.W, spec.teacher(), activation,
                                points[cell])["label"]
        optimum = _optimum_label(spec.k, spec.n)
        if found is None:
            out.append("neither")
        elif found == "perturbed copy":
            out.append("perturbed copy")
        else:
            out.append("relaxed CA optimum" if found == optimum else "other relaxed CA")
    return out


def symmetric_transition(k: int, activation: str | Activation = "relu"):
    """The relaxed CA optimum and the perturbed copy for every student width n = 1..k - 1
    (the ReLU counterpart of :func:`copyaverage.exact_transition.transition`).

    Both points are computed within their symmetric subspaces (:func:`symmetric_points`
    with ``types="optimum"``); their Hessian signatures from the dense Hessian, so the
    cost grows like (n k)^3: k = 50 takes minutes.

    Returns
    -------
    pandas.DataFrame
        One row per n: ``n``, ``ca_loss``, ``pc_loss`` (the relaxed CA optimum's and the
        perturbed copy's; NaN where its flow failed), ``ca_negative``, ``pc_negative``,
        ``ca_zero``, ``pc_zero`` (Hessian eigenvalue counts), ``ca_min_eigenvalue``,
        ``pc_min_eigenvalue`` and ``lower`` ("perturbed copy" or "CA optimum").
        ``attrs``: ``loss_crossings`` (integer n at which ``lower`` differs from n - 1),
        ``pc_minimum_from`` (the smallest n from which the perturbed copy has no negative
        eigenvalue at every larger n; None if there is none) and ``ca_saddle_from``
        (the smallest n from which the relaxed CA optimum is a saddle at every larger n;
        None if there is none).
    """
    import pandas as pd

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    rows = []
    for n in range(1, k):
        points = symmetric_points(k, n, activation, "optimum")
        row = dict(n=n)
        for key, label in (("ca", _optimum_label(k, n)),
                           ("pc", "perturbed copy")):
            p = points.get(label)
            row.update({f"{key}_loss": np.nan if p is None else p.loss,
                        f"{key}_negative": -1 if p is None else p.n_negative,
                        f"{key}_zero": -1 if p is None else p.n_zero,
                        f"{key}_min_eigenvalue": np.nan if p is None else
                        float(p.eigenvalues[0])})
        row["lower"] = "perturbed copy" if row["pc_loss"] < row["ca_loss"] else "CA optimum"
        rows.append(row)
    table = pd.DataFrame(rows)

    def from_on(flags):
        """Smallest n from which every flag is True; None if the last is False."""
        flags = list(flags)
        if not flags or not flags[-1]:
            return None
        i = len(flags) - 1
        while i > 0 and flags[i - 1]:
            i -= 1
        return int(table.n.iloc[i])

    lower = table.lower.to_numpy()
    table.attrs["loss_crossings"] = [int(n) for n, a, b in
                                     zip(table.n[1:], lower[:-1], lower[1:]) if a != b]
    table.attrs["pc_minimum_from"] = from_on(table.pc_negative == 0)
    table.attrs["ca_saddle_from"] = from_on(table.ca_negative > 0)
    return table
