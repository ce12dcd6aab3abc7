"""Copy-average configurations: partitions of the teacher neurons into groups.

A copy-average (CA) configuration of an n-neuron student for a k-neuron teacher
is given by a partition of the teacher neurons {0, ..., k-1} into n non-empty
groups. Student neuron i is the optimal one-neuron student of the sub-teacher
made of group i: a group of one is a *copy* (a = a*_j, w = v_j), a larger group
an *average* (w along the sum of the group's v_j).

Range of n. Every partition of k neurons has 1 <= n <= k groups; n = k is the
teacher itself (all copies, loss 0). The paper's regime is n < k, but the
helpers accept 1 <= n <= k and raise ``ValueError`` outside it.

For odd activations (erf, tanh) and an orthonormal teacher, neurons of different
groups are orthogonal, so every cross term of the loss vanishes and the loss of
a CA configuration is the sum of the one-neuron losses of its groups: it
depends only on the group sizes, an integer partition of k
(:func:`copy_average_loss`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .activations import Activation, get_activation
from .critical import analyze_point
from .one_neuron import is_unit_orthonormal, one_neuron_solution, optimal_loss
from .teacher import Teacher

__all__ = [
    "MAX_PARTITIONS",
    "bell_number",
    "ca_optimum_groups",
    "ca_optimum_point",
    "canonical_groups",
    "copy_average_loss",
    "copy_average_point",
    "integer_partitions",
    "iter_set_partitions",
    "nearest_copy_average",
    "optimal_copy_average",
    "signed_cosines",
    "partition_type",
    "set_partitions",
    "stirling2",
    "survey_copy_average",
]


#: Largest number of partitions that :func:`set_partitions`, :func:`integer_partitions`
#: and :func:`survey_copy_average` enumerate (all set partitions of 9 elements, 21,147,
#: fit; of 10, 115,975, do not; the integer partitions of up to 45). Beyond it the lists
#: fill the memory: iterate with :func:`iter_set_partitions` instead.
MAX_PARTITIONS = 100_000


# --------------------------------------------------------------- checks ---
def _check_int(x, name: str, minimum: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {x!r} of type {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    return int(x)


def _check_k_n(k, n):
    k = _check_int(k, "k (number of teacher neurons)", 1)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"n (number of groups) must be an integer, got {n!r}")
        if not 1 <= n <= k:
            raise ValueError(
                f"n (number of groups) must satisfy 1 <= n <= k = {k}, got {n} "
                "(a partition of k neurons has between 1 and k groups)")
        n = int(n)
    return k, n


# ----------------------------------------------------------- partitions ---
def iter_set_partitions(k: int, n: int | None = None) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Iterate over the partitions of {0, ..., k-1} (into exactly n blocks if n is given).

    Each partition is a tuple of blocks, each block a sorted tuple; blocks are
    ordered by their smallest element. Generated as restricted growth strings
    (element i joins one of the blocks opened so far or opens a new one), with
    branches that cannot reach n blocks cut early.

    Raises
    ------
    ValueError
        For a non-integer k or n, k < 1, or n outside 1 <= n <= k.
    """
    k, n = _check_k_n(k, n)
    blocks: list[list[int]] = []

    def rec(i):
        if n is not None and len(blocks) + (k - i) < n:
            return
        if i == k:
            yield tuple(tuple(b) for b in blocks)
            return
        for b in blocks:
            b.append(i)
            yield from rec(i + 1)
            b.pop()
        if n is None or len(blocks) < n:
            blocks.append([i])
            yield from rec(i + 1)
            blocks.pop()

    yield from rec(0)


def _set_partition_count(k: int, n: int | None) -> int:
    """min(number of partitions of k elements (into n blocks), MAX_PARTITIONS + 1), fast.

    Bell numbers grow with k; S(k, n) >= S(k, k - 1) = k (k - 1) / 2 for 1 < n < k
    (Stirling numbers are unimodal in n), so large k are decided without a recurrence.
    """
    cap = MAX_PARTITIONS + 1
    if n is not None and n in (1, k):
        return 1
    if n is not None and k * (k - 1) // 2 > MAX_PARTITIONS:
        return cap
    if n is None:
        row = [1]  # Bell triangle, capped
        for _ in range(k - 1):
            if row[-1] >= cap:
                return cap
            new = [row[-1]]
            for x in row:
                new.append(min(new[-1] + x, cap))
            row = new
        return min(row[-1], cap)
    return min(stirling2(k, n), cap)


def _partition_limit_error(what: str, count: int | None = None) -> ValueError:
    how_many = (f"{count:,} partitions" if count is not None and count <= MAX_PARTITIONS
                else "more partitions")
    return ValueError(f"{what} would enumerate {how_many} than the limit MAX_PARTITIONS = "
                      f"{MAX_PARTITIONS:,} (the list would fill the memory); use fewer teacher "
                      "neurons, fix n, or iterate with iter_set_partitions")


def set_partitions(k: int, n: int | None = None) -> list[tuple[tuple[int, ...], ...]]:
    """All partitions of {0, ..., k-1}, or those with exactly n blocks (a list).

    There are :func:`bell_number` (k) of them in all and :func:`stirling2` (k, n)
    with n blocks. See :func:`iter_set_partitions`.

    Raises
    ------
    ValueError
        As :func:`iter_set_partitions`, and when there are more than
        :data:`MAX_PARTITIONS` of them (checked before any is built).
    """
    k, n = _check_k_n(k, n)
    if _set_partition_count(k, n) > MAX_PARTITIONS:
        raise _partition_limit_error(f"set_partitions({k}{'' if n is None else f', {n}'})")
    return list(iter_set_partitions(k, n))


def _integer_partition_count(k: int, n: int | None) -> int:
    """min(number of partitions of k (into exactly n parts), MAX_PARTITIONS + 1), fast.

    Partitions of k into n parts correspond to partitions of m = k - n into parts of
    size at most n; counted by the usual recurrence over the largest allowed part,
    stopped as soon as the count passes the limit.
    """
    cap = MAX_PARTITIONS + 1
    m, largest = (k, k) if n is None else (k - n, n)
    largest = min(largest, m)
    if largest >= 2 and m // 2 + 1 >= cap:  # already the partitions into parts 1 and 2
        return cap
    counts = [1] * (m + 1)  # parts of size 1 only
    for j in range(2, largest + 1):
        for x in range(j, m + 1):
            counts[x] = min(counts[x] + counts[x - j], cap)
        if counts[m] >= cap:
            return cap
    return counts[m]


def integer_partitions(k: int, n: int | None = None) -> list[tuple[int, ...]]:
    """Partitions of the integer k (into exactly n positive parts if n is given).

    Each partition is a non-increasing tuple; the list is in reverse
    lexicographic order, so (k,) comes first.

    Raises
    ------
    ValueError
        For a non-integer k or n, k < 1, n outside 1 <= n <= k, or more than
        :data:`MAX_PARTITIONS` partitions (counted before any is built).
    """
    k, n = _check_k_n(k, n)
    count = _integer_partition_count(k, n)
    if count > MAX_PARTITIONS:
        raise _partition_limit_error(f"integer_partitions({k}{'' if n is None else f', {n}'})")

    def rec(rest, largest, parts_left):
        # partitions of rest with parts <= largest (and exactly parts_left parts if not None);
        # only first parts that leave a feasible rest are tried
        if parts_left is None:
            if rest == 0:
                yield ()
            for first in range(min(rest, largest), 0, -1):
                for tail in rec(rest - first, first, None):
                    yield (first,) + tail
            return
        if parts_left == 0:
            if rest == 0:
                yield ()
            return
        smallest_first = -(-rest // parts_left)  # the largest part is at least the mean
        for first in range(min(largest, rest - (parts_left - 1)), smallest_first - 1, -1):
            for tail in rec(rest - first, first, parts_left - 1):
                yield (first,) + tail

    return list(rec(k, k, n))


def stirling2(k: int, n: int) -> int:
    """Stirling number of the second kind: partitions of k elements into n blocks.

    By the recurrence S(k, n) = n S(k-1, n) + S(k-1, n-1) (an independent route
    to the count of :func:`set_partitions`).
    """
    k, n = _check_k_n(k, n)
    S = [[0] * (n + 1) for _ in range(k + 1)]
    S[0][0] = 1
    for i in range(1, k + 1):
        for j in range(1, min(i, n) + 1):
            S[i][j] = j * S[i - 1][j] + S[i - 1][j - 1]
    return S[k][n]


def bell_number(k: int) -> int:
    """Bell number: the number of partitions of k elements, by the Bell triangle."""
    k = _check_int(k, "k", 1)
    row = [1]
    for _ in range(k - 1):
        new = [row[-1]]
        for x in row:
            new.append(new[-1] + x)
        row = new
    return row[-1]


def canonical_groups(groups, k: int) -> tuple[tuple[int, ...], ...]:
    """Check that groups partition {0, ..., k-1}; return them as tuples of ints.

    The order of the groups is kept (it is the order of the student neurons);
    each group is sorted.

    Raises
    ------
    ValueError
        Saying what is wrong: not a sequence of sequences, an empty group, a
        non-integer or out-of-range index, an index used twice, or one missing.
    """
    k = _check_int(k, "k", 1)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty sequence of groups of teacher indices, "
                         f"got {groups!r}")
    out, seen = [], set()
    for g in groups:
        if isinstance(g, (str, bytes)) or not isinstance(g, (Sequence, np.ndarray)):
            raise ValueError(f"each group must be a sequence of teacher indices, got {g!r}")
        if len(g) == 0:
            raise ValueError(f"groups must not be empty, got {groups!r}")
        block = []
        for j in g:
            if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
                raise ValueError(f"teacher indices must be integers, got {j!r} in {groups!r}")
            if not 0 <= j < k:
                raise ValueError(f"teacher index {j} is out of range for k = {k} "
                                 f"(allowed: 0 .. {k - 1})")
            if j in seen:
                raise ValueError(f"teacher index {j} appears in more than one place in {groups!r}; "
                                 "groups must be disjoint")
            seen.add(int(j))
            block.append(int(j))
        out.append(tuple(sorted(block)))
    missing = sorted(set(range(k)) - seen)
    if missing:
        raise ValueError(f"groups must cover every teacher neuron 0 .. {k - 1}; missing {missing}")
    return tuple(out)


def partition_type(groups) -> tuple[int, ...]:
    """The group sizes in non-increasing order (an integer partition)."""
    return tuple(sorted((len(g) for g in groups), reverse=True))


# ------------------------------------------------------ CA configurations ---
def copy_average_point(groups, teacher: Teacher, activation: str | Activation):
    """The copy-average configuration for a partition of the teacher neurons.

    Student neuron i is :func:`copyaverage.one_neuron.one_neuron_solution` for
    the sub-teacher made of the neurons in ``groups[i]`` (for a group of one
    neuron of a unit-orthonormal teacher this is the copy a = 1, w = v_j).

    Parameters
    ----------
    groups : sequence of sequences of int
        A partition of range(k) into n = len(groups) groups, 1 <= n <= k.
    teacher : Teacher
        With k neurons in d dimensions.
    activation : str or Activation

    Returns
    -------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, d)

    Raises
    ------
    ValueError
        If groups is not a partition of range(k), or if a group has no optimal
        one-neuron student (GELU).
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    act = get_activation(activation)
    groups = canonical_groups(groups, teacher.k)
    a = np.empty(len(groups))
    W = np.empty((len(groups), teacher.d))
    for i, g in enumerate(groups):
        idx = list(g)
        sub = Teacher(teacher.a[idx], teacher.V[idx])
        a_i, W_i = one_neuron_solution(sub, act)
        a[i], W[i] = a_i[0], W_i[0]
    return a, W


def ca_optimum_groups(k: int, n: int) -> tuple[tuple[int, ...], ...]:
    """The groups of the paper's optimal CA configuration: n - 1 copies and one average.

    Student neuron i < n - 1 copies teacher neuron i; the last one averages teacher
    neurons n - 1, ..., k - 1.

    Raises
    ------
    ValueError
        Unless 1 <= n <= k.
    """
    k, n = _check_k_n(k, n)
    return tuple((j,) for j in range(n - 1)) + (tuple(range(n - 1, k)),)


def ca_optimum_point(n: int, teacher: Teacher, activation: str | Activation):
    """:func:`copy_average_point` for :func:`ca_optimum_groups` (k = teacher.k).

    Returns
    -------
    a : ndarray, shape (n,)
    W : ndarray, shape (n, d)
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    return copy_average_point(ca_optimum_groups(teacher.k, n), teacher, activation)


def copy_average_loss(sizes, activation: str | Activation) -> float:
    """Loss of a CA configuration of a unit-orthonormal teacher from its group sizes.

    Equal to sum over groups of L*(size) -- valid for odd activations only
    (erf of any scale, tanh), where groups do not interact.

    Parameters
    ----------
    sizes : sequence of int
        Group sizes (an integer partition of k, in any order).
    activation : str or Activation
        An odd activation.

    Raises
    ------
    ValueError
        For an activation that is not odd (the decomposition fails, e.g. ReLU),
        or sizes that are not positive integers.
    """
    act = get_activation(activation)
    if not act.odd:
        raise ValueError(f"the loss of a CA configuration splits into group losses only for odd "
                         f"activations; {act.name} is not odd (use population_loss on "
                         "copy_average_point instead)")
    sizes = [_check_int(s, "a group size", 1) for s in sizes]
    if not sizes:
        raise ValueError("sizes must not be empty")
    return float(sum(optimal_loss(s, act) for s in sizes))


def optimal_copy_average(k: int, n: int, activation: str | Activation):
    """The best CA configuration with n groups, by exhaustive search over integer partitions.

    Parameters
    ----------
    k, n : int, 1 <= n <= k
    activation : str or Activation
        An odd activation (see :func:`copy_average_loss`).

    Returns
    -------
    sizes : tuple of int
        The optimal integer partition (non-increasing).
    loss : float
    losses : dict
        The loss of every integer partition of k into n parts.
    """
    k, n = _check_k_n(k, n)
    losses = {p: copy_average_loss(p, activation) for p in integer_partitions(k, n)}
    best = min(losses, key=losses.get)
    return best, losses[best], losses


def signed_cosines(a, W, teacher: Teacher) -> np.ndarray:
    """The cosines ``sign(a_i) w_i . v_j / |w_i|``, shape (n, k).

    Signed by the outgoing weight (a_i = 0 counts as positive), so that a positive entry
    means that neuron i adds teacher neuron j to its output; for an odd activation
    (a_i, w_i) and (-a_i, -w_i) are the same neuron and get the same row. A neuron with
    w_i = 0 has a row of zeros.
    """
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    norms = np.linalg.norm(W, axis=1)
    U = (W @ teacher.V.T) / np.where(norms > 0, norms, 1.0)[:, None]
    return np.where(a < 0, -1.0, 1.0)[:, None] * U


def nearest_copy_average(a, W, teacher: Teacher):
    """The group of teacher neurons each student neuron points to, and how well.

    For student neuron i take the signed cosines ``s_ij = sign(a_i) w_i.v_j / |w_i|``
    (the sign makes the answer invariant under (a_i, w_i) -> (-a_i, -w_i)). Its
    group is the set of its m largest s_ij, with m chosen to maximise the cosine
    between sign(a_i) w_i and the group direction sum_{j in group} v_j / sqrt(m),
    which is (sum of the m largest s_ij) / sqrt(m).

    Parameters
    ----------
    a : array_like, shape (n,)
    W : array_like, shape (n, d)
    teacher : Teacher
        Unit-orthonormal.

    Returns
    -------
    groups : list of tuple of int
        One sorted group per student neuron, in student order (not necessarily
        a partition: two neurons may point to overlapping groups).
    cosines : ndarray, shape (n,)
        The cosine of each neuron with its group direction (1 at a CA point).
    """
    if not isinstance(teacher, Teacher) or not is_unit_orthonormal(teacher):
        raise ValueError("nearest_copy_average needs a unit-orthonormal copyaverage.Teacher")
    a = np.asarray(a, dtype=float)
    W = np.asarray(W, dtype=float)
    if a.ndim != 1 or W.shape != (a.size, teacher.d):
        raise ValueError(f"need a of shape (n,) and W of shape (n, {teacher.d}); "
                         f"got {a.shape} and {W.shape}")
    norms = np.linalg.norm(W, axis=1)
    if np.any(norms == 0):
        raise ValueError("a student neuron with w = 0 points nowhere")
    S = signed_cosines(a, W, teacher)
    groups, cosines = [], np.empty(a.size)
    for i, row in enumerate(S):
        order = np.argsort(-row, kind="stable")
        c = np.cumsum(row[order]) / np.sqrt(np.arange(1, row.size + 1))
        m = int(np.argmax(c)) + 1
        groups.append(tuple(sorted(int(j) for j in order[:m])))
        cosines[i] = c[m - 1]
    return groups, cosines


def survey_copy_average(k: int, activation: str | Activation, n: int | None = None,
                        teacher: Teacher | None = None) -> list[dict]:
    """Loss, gradient norm and Hessian signature of every CA configuration of k neurons.

    Parameters
    ----------
    k : int
        Number of teacher neurons.
    activation : str or Activation
    n : int, optional
        Only partitions into n groups (default: all, 1 <= n <= k).
    teacher : Teacher, optional
        Default ``Teacher.orthonormal(k)`` (d = k + 1).

    Returns
    -------
    list of dict
        One record per set partition with keys ``groups``, ``type`` (sorted
        group sizes), ``n``, ``loss``, ``grad_norm`` (exact gradient from
        :func:`copyaverage.gradient <copyaverage.loss.gradient>`), ``n_negative``,
        ``n_zero``, ``n_positive`` (Hessian eigenvalues, see
        :func:`copyaverage.critical.hessian_signature`) and ``min_abs_eigenvalue``.

    Raises
    ------
    ValueError
        For more than :data:`MAX_PARTITIONS` partitions (checked before any is analysed).
    """
    k, n = _check_k_n(k, n)
    if _set_partition_count(k, n) > MAX_PARTITIONS:
        raise _partition_limit_error(f"survey_copy_average({k}{'' if n is None else f', n={n}'})")
    T = Teacher.orthonormal(k) if teacher is None else teacher
    if T.k != k:
        raise ValueError(f"the teacher has {T.k} neurons, not k = {k}")
    act = get_activation(activation)
    rows = []
    for groups in iter_set_partitions(k, n):
        p = analyze_point(*copy_average_point(groups, T, act), T, act)
        rows.append(dict(groups=groups, type=partition_type(groups), n=len(groups),
                         loss=p.loss, grad_norm=p.grad_norm,
                         n_negative=p.n_negative, n_zero=p.n_zero, n_positive=p.n_positive,
                         min_abs_eigenvalue=float(np.min(np.abs(p.eigenvalues)))))
    return rows
