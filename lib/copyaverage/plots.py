"""Figures shared by the book's experiment chapters (matplotlib; no computation here)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .classify import CA_OPTIMUM, OTHER, OTHER_CA, PERTURBED_COPY

__all__ = ["CLASS_COLORS", "weight_space_trajectory", "overlap_heatmap"]

#: One colour per end-point class (:mod:`copyaverage.classify`), the same in every figure.
CLASS_COLORS = {CA_OPTIMUM: "C0", OTHER_CA: "C1", PERTURBED_COPY: "C2", OTHER: "C3"}


def weight_space_trajectory(ax, result, teacher, reference=None, n_marks: int = 8,
                            size_scale: float = 120.0, flip_negative: bool = False):
    """Panel A1 of the paper's Figure 1 on a 3-D axis.

    Each student incoming vector, projected onto span(v_1, v_2, v_3) (the teacher's
    first three vectors as axes), is drawn along the flow; circles at ``n_marks``
    log-spaced times have an area proportional to ``|a_i|``. The end point is a filled
    circle; ``reference`` (a (d,) vector, e.g. the one-neuron solution's w) a star.
    ``flip_negative`` draws neurons that end with a_i < 0 as (-a_i, -w_i), the same
    function for an odd activation.
    """
    n = result.n
    traj = result.trajectory
    signs = np.where(result.a < 0, -1.0, 1.0) if flip_negative else np.ones(n)
    W = signs[None, :, None] * (traj.W(n) @ teacher.V[:3].T)  # (m, n, 3) along v1, v2, v3
    A = np.abs(traj.a(n))
    marks = np.unique(np.geomspace(1, len(traj.t), n_marks).astype(int) - 1)
    for i in range(n):
        color = f"C{i}"
        ax.plot(*W[:, i].T, color=color, lw=1.2, label=f"student neuron {i + 1}")
        ax.scatter(*W[marks, i].T, s=size_scale * A[marks, i], facecolors="none",
                   edgecolors=color, linewidths=0.8)
        ax.scatter(*W[-1, i], s=size_scale * A[-1, i], color=color, edgecolors="k")
    for j in range(3):
        e = np.zeros(3)
        e[j] = 1.0
        ax.plot(*np.stack([np.zeros(3), e]).T, color="0.5", lw=0.8, ls="--")
        ax.text(*(1.08 * e), f"$v_{j + 1}$", color="0.3")
    if reference is not None:
        ref = teacher.V[:3] @ reference
        ax.scatter(*ref, marker="*", s=150, color="k", label="one-neuron solution")
    ax.set(xlabel="$v_1$", ylabel="$v_2$", zlabel="$v_3$")
    return ax


def overlap_heatmap(ax, W, teacher, title="", signs=None):
    """Panel A2: the overlaps ``u_ij = w_i . v_j / |w_i|`` of the end point, annotated.

    ``signs`` (n,) multiplies each row (e.g. the signs of a_i, for odd activations).
    """
    if signs is not None:
        W = np.asarray(signs, dtype=float)[:, None] * W
    norms = np.linalg.norm(W, axis=1)
    U = (W @ teacher.V.T) / np.where(norms > 0, norms, 1.0)[:, None]
    ax.imshow(U, cmap="RdBu_r", vmin=-1, vmax=1)
    for (i, j), u in np.ndenumerate(U):
        ax.text(j, i, f"{u:.3f}", ha="center", va="center", fontsize=9,
                color="w" if abs(u) > 0.6 else "k")
    ax.set_xticks(range(teacher.k), [f"$v_{j + 1}$" for j in range(teacher.k)])
    ax.set_yticks(range(len(W)), [f"$w_{i + 1}$" for i in range(len(W))])
    ax.set_title(title)
    return ax

