"""Whether two end points are the same network up to the symmetries of the erf loss.

The loss does not change when the student neurons are permuted, nor when one neuron
flips sign, (a_i, w_i) -> (-a_i, -w_i) (erf is odd). The distance between two end
points is the smallest Euclidean distance between their parameter vectors over these
symmetries: neuron i of one is matched to neuron j of the other with cost
min(|u_i - u'_j|^2, |u_i + u'_j|^2), u_i = (a_i, w_i), by an optimal assignment.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

#: End points closer than this are "the same point".
SAME_POINT = 1e-6


def neurons(theta, n: int) -> np.ndarray:
    """The rows (a_i, w_i), shape (n, 1 + d), of theta = pack(a, W)."""
    theta = np.asarray(theta, dtype=float)
    d = theta.size // n - 1
    return np.column_stack([theta[:n], theta[n:].reshape(n, d)])


def symmetric_distance(theta1, theta2, n: int) -> float:
    """Distance between two end points up to neuron order and the sign flip."""
    X, Y = neurons(theta1, n), neurons(theta2, n)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        return math.inf
    cost = np.minimum(cdist(X, Y, "sqeuclidean"), cdist(X, -Y, "sqeuclidean"))
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].sum()))


def verdict(distance: float) -> str:
    """``"same point"`` if distance <= :data:`SAME_POINT`, else ``"different point"``."""
    return "same point" if distance <= SAME_POINT else "different point"
