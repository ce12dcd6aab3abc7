"""The teacher network f*(x) = sum_j a_j sigma(v_j . x)."""

from __future__ import annotations

import numpy as np

__all__ = ["Teacher", "MAX_WEIGHT"]

#: Largest absolute value accepted for a weight (teacher or student). The pair
#: interactions multiply the squared norms of two neurons (``|w|^2 |v|^2``), which
#: overflows the float range (1.8e308) for norms near 1e77; the limit keeps a wide
#: margin, and no gradient-flow end point comes anywhere near it.
MAX_WEIGHT = 1e50


def _real_array(x, name, copy=False):
    """x as a float array; ValueError for complex input or entries that are not numbers."""
    try:
        raw = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers: {exc}") from None
    if np.iscomplexobj(raw):
        raise ValueError(f"{name} must be real, got a complex array (dtype {raw.dtype}); "
                         "pass its real part (np.real) if that is what you mean")
    try:
        return np.array(raw, dtype=float) if copy else np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of real numbers: {exc}") from None


def _check_weights(arrays, name):
    """ValueError for NaN/inf entries or entries beyond MAX_WEIGHT in any of the arrays."""
    if not all(np.all(np.isfinite(x)) for x in arrays):
        raise ValueError(f"{name} contain NaN or infinite values")
    largest = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in arrays)
    if largest > MAX_WEIGHT:
        raise ValueError(f"{name} must be at most MAX_WEIGHT = {MAX_WEIGHT:.0e} in absolute "
                         f"value (beyond it the pair interactions lose their accuracy and "
                         f"then overflow); the largest is {largest:.3g}")


def _finite_array(x, name, ndim):
    arr = _real_array(x, name, copy=True)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    _check_weights([arr], name)
    return arr


class Teacher:
    """A teacher with outgoing weights ``a`` (k,) and incoming vectors ``V`` (k, d).

    Parameters
    ----------
    a : array_like, shape (k,)
        Outgoing weights a*_j.
    V : array_like, shape (k, d)
        Incoming vectors v_j as rows.

    Notes
    -----
    The arrays are copied (and the copies made read-only): the caller's arrays
    stay writable, and changing them does not change the teacher.

    Raises
    ------
    ValueError
        For wrong dimensions, mismatched k, empty, complex or non-finite arrays,
        or entries larger than :data:`MAX_WEIGHT` in absolute value.
    """

    def __init__(self, a, V):
        a = _finite_array(a, "teacher outgoing weights a", 1)
        V = _finite_array(V, "teacher incoming weights V", 2)
        if V.shape[0] != a.shape[0]:
            raise ValueError(
                f"teacher a has {a.shape[0]} entries but V has {V.shape[0]} rows; "
                "they must both equal the number of teacher neurons k"
            )
        self.a = a
        self.V = V
        self.a.setflags(write=False)
        self.V.setflags(write=False)

    @classmethod
    def orthonormal(cls, k: int, d: int | None = None) -> "Teacher":
        """The unit-orthonormal teacher: v_j = e_j in R^d, a_j = 1.

        Parameters
        ----------
        k : int, k >= 1
            Number of teacher neurons.
        d : int, optional
            Input dimension, d >= k; default k + 1 as in the authors' scripts
            (teacher matrix [I_k 0]).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        d = k + 1 if d is None else d
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < k:
            raise ValueError(
                f"d must be an integer >= k = {k} (k orthonormal vectors need "
                f"d >= k dimensions), got {d!r}"
            )
        return cls(np.ones(k), np.eye(k, d))

    @property
    def k(self) -> int:
        """Number of teacher neurons."""
        return self.V.shape[0]

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.V.shape[1]

    def __repr__(self) -> str:
        return f"Teacher(k={self.k}, d={self.d})"
