"""Classify end points of gradient flow by their order parameters.

For a unit-orthonormal teacher (v_j orthonormal, a*_j = 1) and a student with
n < k neurons, an end point (a, W) is described by the cosines
``u_ij = w_i . v_j / |w_i|`` of each student neuron with each teacher neuron, the
norms ``|w_i|`` and the outgoing weights a_i. :func:`classify` puts it in one of
four classes (the labels are module constants):

``CA_OPTIMUM`` ("CA optimum")
    A copy-average (CA) configuration -- the student neurons split the teacher
    neurons into groups, each student neuron pointing exactly along the sum of
    its group (equal cosines 1/sqrt(m) with the m teacher neurons of its
    group, none with the others) -- with n - 1 groups of one (copies) and one
    group of k - n + 1 (the average), *and* a loss equal to the loss of the
    optimal such configuration (every neuron the optimal one-neuron student of
    its group).
``OTHER_CA`` ("other CA")
    A CA configuration with other group sizes, or with the right sizes but a
    different loss (a neuron at a non-optimal one-neuron critical point).
``PERTURBED_COPY`` ("perturbed copy")
    Not CA, but every student neuron mostly copies its own teacher neuron:
    its largest absolute cosine is at least ``copy_cosine`` and these teacher neurons
    are all different.
``OTHER`` ("other")
    Anything else.

Groups. Neuron i *adds* teacher neuron j to its output when the signed cosine
s_ij = sign(a_i) u_ij is positive (invariant under the (a_i, w_i) ->
(-a_i, -w_i) symmetry of odd activations). Its best group S_i is the set of
its m largest s_ij, with m chosen to maximise the cosine between sign(a_i) w_i
and the group direction sum_{j in S_i} v_j / sqrt(m), which is
sum of the m largest s_ij / sqrt(m). The CA residual is the largest
1 - (that cosine) over the student neurons; an end point is CA when the
residual is at most ``ca_tol`` and the groups partition the teacher neurons.

Thresholds (all arguments of :func:`classify`, defaults in
:data:`DEFAULT_THRESHOLDS` per activation):

``ca_tol``
    1e-6 for erf: there the CA configurations are exact critical points, and
    end points converged to ``|grad| <= 1e-12`` are CA to ~1e-12 or clearly not
    (perturbed copies have residuals above 1e-4). 0.1 for ReLU, whose CA
    configurations are *not* critical points: gradient flow ends nearby (the
    paper's "or nearby"), with the averaging neuron at cosines ~0.9-0.99 with
    its group direction and small negative overlaps with the copied neurons.
``loss_rtol``
    Relative agreement of the loss with the loss of the optimal CA
    configuration, required for ``CA_OPTIMUM``: 1e-8 for erf. None (not
    compared) for ReLU, where the nearby critical point has a clearly lower
    loss than the (non-critical) CA configuration.
``copy_cosine``
    0.9 (above 1/sqrt(2), so an average of two or more teacher neurons never
    passes for a copy).

The groups are those of :func:`copyaverage.configurations.nearest_copy_average`;
the optimal CA configuration is
:func:`copyaverage.configurations.ca_optimum_point`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, get_activation
from .configurations import ca_optimum_point, nearest_copy_average, signed_cosines
from .loss import check_student, population_loss
from .one_neuron import is_unit_orthonormal
from .teacher import Teacher

__all__ = [
    "CA_OPTIMUM",
    "OTHER_CA",
    "PERTURBED_COPY",
    "OTHER",
    "LABELS",
    "DEFAULT_THRESHOLDS",
    "Classification",
    "classify",
    "ca_optimum_loss",
    "NOT_CONVERGED",
    "NOT_CLASSIFIED",
    "end_label",
]

CA_OPTIMUM = "CA optimum"
OTHER_CA = "other CA"
PERTURBED_COPY = "perturbed copy"
OTHER = "other"
#: The four class labels, in the order above.
LABELS = (CA_OPTIMUM, OTHER_CA, PERTURBED_COPY, OTHER)

#: Default thresholds by activation kind (see the module docstring).
DEFAULT_THRESHOLDS = {
    "erf": dict(ca_tol=1e-6, loss_rtol=1e-8, copy_cosine=0.9),
    "relu": dict(ca_tol=0.1, loss_rtol=None, copy_cosine=0.9),
    "quadrature": dict(ca_tol=1e-6, loss_rtol=1e-6, copy_cosine=0.9),
}


@dataclass
class Classification:
    """What :func:`classify` found.

    Attributes
    ----------
    label : str
        One of :data:`LABELS`.
    reason : str
        Why, in words.
    cosines : ndarray (n, k)
        ``u_ij = w_i . v_j / |w_i|``.
    norms : ndarray (n,)
        ``|w_i|``.
    groups : list of tuple of int, or None
        The teacher neurons of each student neuron when the end point is CA
        (in student order), else None.
    group_sizes : tuple of int, or None
        Sorted sizes of the groups.
    ca_residual : float
        max_i (1 - cosine of w_i with its best group direction).
    copy_cosine : ndarray (n,)
        Largest ``|u_ij|`` of each student neuron.
    loss : float
    ca_optimum_loss : float
        Loss of the optimal CA configuration (n - 1 copies, one average).
    thresholds : dict
    """

    label: str
    reason: str
    cosines: np.ndarray
    norms: np.ndarray
    groups: list | None
    group_sizes: tuple | None
    ca_residual: float
    copy_cosine: np.ndarray
    loss: float
    ca_optimum_loss: float
    thresholds: dict = field(default_factory=dict)


def _check_unit_orthonormal(teacher: Teacher):
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    if not is_unit_orthonormal(teacher):
        raise ValueError("classification is defined for a unit-orthonormal teacher "
                         "(orthonormal v_j and every a*_j = 1)")


def ca_optimum_loss(n: int, teacher: Teacher, activation: str | Activation) -> float:
    """Loss of the CA configuration with n - 1 copies and one average of k - n + 1.

    Each neuron is the optimal one-neuron student of its group
    (:func:`copyaverage.configurations.ca_optimum_point`); the loss is the full
    population loss, so it is right for ReLU as well, whose groups interact.
    """
    k = teacher.k
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < k:
        raise ValueError(f"n must be an integer with 1 <= n < k = {k}, got {n!r}")
    a, W = ca_optimum_point(n, teacher, activation)
    return population_loss(a, W, teacher, activation)


def classify(a, W, teacher: Teacher, activation: str | Activation, *,
             ca_tol: float | None = None, loss_rtol: float | None = None,
             copy_cosine: float | None = None, loss: float | None = None) -> Classification:
    """Classify a student (a, W) as CA optimum, other CA, perturbed copy or other.

    Parameters
    ----------
    a : array_like (n,), W : array_like (n, d)
        The student, n < k.
    teacher : Teacher
        Unit-orthonormal.
    activation : str or Activation
    ca_tol, loss_rtol, copy_cosine : float, optional
        Thresholds (module docstring); defaults from :data:`DEFAULT_THRESHOLDS`.
    loss : float, optional
        The loss at (a, W) if already known.

    Returns
    -------
    Classification

    Raises
    ------
    ValueError
        For a teacher that is not unit-orthonormal, n >= k, bad shapes or
        thresholds outside (0, 1).
    """
    _check_unit_orthonormal(teacher)
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    n, k = a.size, teacher.k
    if n >= k:
        raise ValueError(f"classification needs fewer student than teacher neurons, got n={n}, k={k}")
    th = dict(DEFAULT_THRESHOLDS.get(act.kind, DEFAULT_THRESHOLDS["quadrature"]))
    for name, val in [("ca_tol", ca_tol), ("loss_rtol", loss_rtol), ("copy_cosine", copy_cosine)]:
        if val is not None:
            if not (isinstance(val, (int, float)) and 0 < val < 1):
                raise ValueError(f"{name} must be a number in (0, 1), got {val!r}")
            th[name] = float(val)
    L = population_loss(a, W, teacher, act) if loss is None else float(loss)
    L_opt = ca_optimum_loss(n, teacher, act)

    norms = np.linalg.norm(W, axis=1)
    U = (W @ teacher.V.T) / np.where(norms > 0, norms, 1.0)[:, None]
    S = signed_cosines(a, W, teacher)
    S[a == 0] = 0.0  # a silent neuron adds nothing: it copies no teacher neuron
    copy_cos = S.max(axis=1)
    best_teacher = S.argmax(axis=1)
    alive = bool(np.all(norms > 0) and np.all(a != 0))
    if alive:
        groups, group_cos = nearest_copy_average(a, W, teacher)
        ca_residual = float(np.max(1.0 - group_cos))
    else:  # a silent neuron points nowhere: not CA
        groups, ca_residual = None, float("inf")
    partition = alive and sorted(j for g in groups for j in g) == list(range(k))

    def result(label, reason, is_ca):
        return Classification(
            label=label, reason=reason, cosines=U, norms=norms,
            groups=groups if is_ca else None,
            group_sizes=tuple(sorted(len(g) for g in groups)) if is_ca else None,
            ca_residual=ca_residual, copy_cosine=copy_cos, loss=L, ca_optimum_loss=L_opt,
            thresholds=th)

    if alive and partition and ca_residual <= th["ca_tol"]:
        sizes = sorted(len(g) for g in groups)
        optimal_sizes = [1] * (n - 1) + [k - n + 1]
        rel = abs(L - L_opt) / max(abs(L_opt), 1e-300)
        if sizes == optimal_sizes and th["loss_rtol"] is None:
            return result(CA_OPTIMUM, f"n-1 copies and one average of {k - n + 1} (cosines within "
                          f"{ca_residual:.1e}; loss not compared for {act.name})", True)
        if sizes == optimal_sizes and rel <= th["loss_rtol"]:
            return result(CA_OPTIMUM, f"n-1 copies and one average of {k - n + 1}, "
                          f"loss within {rel:.1e} of the CA optimum", True)
        if sizes == optimal_sizes:
            return result(OTHER_CA, f"CA with optimal group sizes, but loss differs from the "
                          f"CA optimum by {rel:.1e} (relative)", True)
        return result(OTHER_CA, f"CA with group sizes {tuple(sizes)}", True)
    if (alive and np.all(copy_cos >= th["copy_cosine"])
            and len(set(best_teacher.tolist())) == n):
        return result(PERTURBED_COPY, f"every neuron copies its own teacher neuron "
                      f"(smallest cosine {copy_cos.min():.4f})", False)
    why = []
    if not alive:
        why.append("a neuron is silent (a_i = 0 or w_i = 0)")
    if ca_residual > th["ca_tol"]:
        why.append(f"not CA (residual {ca_residual:.1e})")
    elif not partition:
        why.append("groups do not partition the teacher neurons")
    if copy_cos.min() < th["copy_cosine"]:
        why.append(f"smallest copy cosine {copy_cos.min():.3f} < {th['copy_cosine']}")
    elif len(set(best_teacher.tolist())) < n:
        why.append("two neurons copy the same teacher neuron")
    return result(OTHER, "; ".join(why) or "no class fits", False)


#: Label of a run that did not converge (its end point is not classified).
NOT_CONVERGED = "not converged"
#: Label of a converged student at least as wide as the teacher (the classes need n < k).
NOT_CLASSIFIED = "not classified (n >= k)"


def end_label(a, W, teacher: Teacher, activation: str | Activation, converged: bool,
              loss: float | None = None) -> str:
    """The label the book gives an end point: :data:`NOT_CONVERGED` if the run did not
    converge, :data:`NOT_CLASSIFIED` if the student has n >= k neurons, else the class of
    :func:`classify` (``loss``: the loss at (a, W) if known)."""
    if not converged:
        return NOT_CONVERGED
    if np.shape(a)[0] >= teacher.k:
        return NOT_CLASSIFIED
    return classify(a, W, teacher, activation, loss=loss).label
