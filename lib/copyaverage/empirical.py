"""The empirical loss on a finite sample of Gaussian inputs and its exact derivatives.

Data-free distillation trains a student on Gaussian noise labelled by the teacher. With
a sample X of N inputs x_s ~ N(0, I_d) (the rows of X), the empirical loss is

    L_N(theta) = (1/N) sum_s (f(x_s) - f*(x_s))^2,     f(x) = sum_i a_i sigma(w_i . x),

with no factor 1/2, like the population loss of :mod:`copyaverage.loss`, which is its
expectation over X. Parameters are flattened as theta = pack(a, W) = (a, w_1, ..., w_n).

With r_s = f(x_s) - f*(x_s) and z_si = w_i . x_s the derivatives are sums over the sample:

    dL/da_i   = (2/N) sum_s r_s sigma(z_si)
    dL/dw_i   = (2/N) a_i sum_s r_s sigma'(z_si) x_s
    H         = (2/N) sum_s [ J_s J_s^T + r_s grad^2 f(x_s) ],

J_s the gradient of f(x_s) with respect to theta; grad^2 f(x_s) has only the blocks
d^2 f / da_i dw_i = sigma'(z_si) x_s and d^2 f / dw_i^2 = a_i sigma''(z_si) x_s x_s^T.
For ReLU sigma'' = 0 away from the kinks, which a sample meets with probability 0.

:class:`EmpiricalObjective` offers these to the gradient-flow engine
(``gradient_flow(..., data=X)``); the sums run over chunks of the sample, so that memory
stays bounded for N = 10^6.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf as _erf

from .activations import Activation, get_activation
from .derivatives import Objective
from .loss import check_student, pack
from .teacher import Teacher

__all__ = [
    "EmpiricalObjective",
    "sample_inputs",
    "check_inputs",
    "empirical_loss",
    "empirical_gradient",
    "empirical_hessian",
    "teacher_outputs",
    "batch_sums",
    "DATA_STREAM",
]

#: First entry of the seed of every sample (:func:`sample_inputs`), so that samples and
#: initializations never share a random stream.
DATA_STREAM = 20231

#: Largest number of floats a chunk's Jacobian (chunk rows x parameters) may hold.
_CHUNK_FLOATS = 4_000_000


def _check_int(x, name, minimum):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


def sample_inputs(samples: int, d: int, seed: int = 0) -> np.ndarray:
    """N = ``samples`` Gaussian inputs x_s ~ N(0, I_d), the rows of an (N, d) array.

    Drawn by ``numpy.random.default_rng([DATA_STREAM, seed]).standard_normal((N, d))``:
    a stream of its own, independent of the initialization drawn by
    ``default_rng(seed)`` (:func:`copyaverage.flow.initialize`) with the same seed. The
    first rows of a larger sample are the smaller sample with the same seed.

    Raises
    ------
    ValueError
        For N < 1, d < 1 or seed < 0 (or non-integers).
    """
    samples = _check_int(samples, "samples (N)", 1)
    d = _check_int(d, "d", 1)
    seed = _check_int(seed, "data seed", 0)
    return np.random.default_rng([DATA_STREAM, seed]).standard_normal((samples, d))


def check_inputs(X, d: int) -> np.ndarray:
    """Validate a sample X of inputs for a teacher of input dimension d; return it as floats.

    Raises
    ------
    ValueError
        Unless X is a real, finite (N, d) array with N >= 1.
    """
    if np.iscomplexobj(X):
        raise ValueError("inputs X must be real, got a complex array")
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("inputs X must be a real (N, d) array of numbers") from None
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] != d:
        raise ValueError(f"inputs X must have shape (N, d) = (N >= 1, {d}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("inputs X contain NaN or infinite values")
    return X


def _sigma_derivatives(act: Activation, Z, order: int):
    """[sigma(Z), sigma'(Z), ...] up to ``order`` (0, 1 or 2), elementwise."""
    if act.kind == "erf":
        s = act.scale
        out = [_erf(s * Z)]
        if order >= 1:
            d1 = (2.0 * s / math.sqrt(math.pi)) * np.exp(-(s * Z) ** 2)
            out.append(d1)
        if order >= 2:
            out.append(-2.0 * s * s * Z * d1)
        return out
    if act.kind == "relu":
        out = [np.maximum(Z, 0.0)]
        if order >= 1:
            out.append((Z > 0).astype(float))
        if order >= 2:
            out.append(np.zeros_like(Z))
        return out
    return [np.asarray(act.derivative(j)(Z), dtype=float) for j in range(order + 1)]


def teacher_outputs(teacher: Teacher, activation: Activation, X) -> np.ndarray:
    """f*(x_s) for the rows x_s of X, shape (N,)."""
    return _sigma_derivatives(activation, X @ teacher.V.T, 0)[0] @ teacher.a


def batch_sums(a, W, X, y, activation: Activation):
    """The sums over a batch (X, y = f*(X)) that the loss and its gradient are made of:
    (sum_s r_s^2, sum_s r_s sigma(W x_s) (n,), sum_s r_s sigma'(W x_s) x_s^T (n, d)).

    No checks (the callers check once); ``activation`` is an
    :class:`~copyaverage.activations.Activation`.
    """
    S, S1 = _sigma_derivatives(activation, X @ W.T, 1)
    r = S @ a - y
    return float(r @ r), S.T @ r, (S1 * r[:, None]).T @ X


def _mean_loss_and_gradient(a, sq, ra, rw, N):
    """(L, grad L) from the sums of :func:`batch_sums` over N inputs."""
    scale = 2.0 / N
    return sq / N, np.concatenate([scale * ra, (scale * a[:, None] * rw).ravel()])


class EmpiricalObjective:
    """The empirical loss of an n-neuron student on a fixed sample X, as a function of theta.

    Offers what the gradient-flow engine needs (the interface of
    :class:`copyaverage.derivatives.Objective`): :meth:`loss`, :meth:`loss_and_gradient`,
    :meth:`hessian`, :meth:`split` and ``const``, here the mean squared teacher output
    (1/N) sum_s f*(x_s)^2, the loss of the zero student.

    Parameters
    ----------
    teacher : Teacher
    activation : str or Activation
    n : int, n >= 1
    X : array_like, shape (N, d)
        The inputs, one per row (see :func:`sample_inputs`); real and finite.
    """

    def __init__(self, teacher: Teacher, activation: str | Activation, n: int, X):
        if not isinstance(teacher, Teacher):
            raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
        self.teacher = teacher
        self.act = get_activation(activation)
        self.n = _check_int(n, "n", 1)
        self.d = teacher.d
        self.size = self.n * (1 + self.d)
        self.X = check_inputs(X, self.d)
        self.N = self.X.shape[0]
        self.chunk = max(1, _CHUNK_FLOATS // self.size)
        self.y = np.concatenate([teacher_outputs(teacher, self.act, Xc) for Xc in self._chunks()])
        self.const = float(self.y @ self.y / self.N)

    def _chunks(self, with_index=False):
        for lo in range(0, self.N, self.chunk):
            hi = min(lo + self.chunk, self.N)
            yield (self.X[lo:hi], slice(lo, hi)) if with_index else self.X[lo:hi]

    #: (a, W) views of theta, checked as for the population loss
    #: (:meth:`copyaverage.derivatives.Objective.split`).
    split = Objective.split

    def residuals(self, theta) -> np.ndarray:
        """r_s = f(x_s) - f*(x_s) for every input, shape (N,)."""
        a, W = self.split(theta)
        return np.concatenate([_sigma_derivatives(self.act, Xc @ W.T, 0)[0] @ a - self.y[sl]
                               for Xc, sl in self._chunks(with_index=True)])

    def loss(self, theta) -> float:
        """L_N(theta), a float."""
        r = self.residuals(theta)
        return float(r @ r / self.N)

    def loss_and_gradient(self, theta):
        """(L_N, grad L_N) at theta; the gradient has the shape of theta."""
        a, W = self.split(theta)
        total = [0.0, np.zeros(self.n), np.zeros((self.n, self.d))]
        for Xc, sl in self._chunks(with_index=True):
            for j, part in enumerate(batch_sums(a, W, Xc, self.y[sl], self.act)):
                total[j] += part
        return _mean_loss_and_gradient(a, *total, self.N)

    def gradient(self, theta) -> np.ndarray:
        """grad L_N at theta, shape (n (1 + d),)."""
        return self.loss_and_gradient(theta)[1]

    def hessian(self, theta) -> np.ndarray:
        """The Hessian of L_N at theta, shape (n (1 + d), n (1 + d)), symmetric."""
        a, W = self.split(theta)
        n, d = self.n, self.d
        H = np.zeros((self.size, self.size))
        for Xc, sl in self._chunks(with_index=True):
            S, S1, S2 = _sigma_derivatives(self.act, Xc @ W.T, 2)
            r = S @ a - self.y[sl]
            m = Xc.shape[0]
            J = np.empty((m, self.size))
            J[:, :n] = S
            J[:, n:] = ((a * S1)[:, :, None] * Xc[:, None, :]).reshape(m, n * d)
            H += J.T @ J
            # r_s grad^2 f(x_s): a_i-w_i blocks and w_i-w_i blocks
            aw = (S1 * r[:, None]).T @ Xc  # (n, d)
            ww = np.einsum("si,sa,sb->iab", S2 * r[:, None], Xc, Xc, optimize=True)
            for i in range(n):
                cols = slice(n + i * d, n + (i + 1) * d)
                H[i, cols] += aw[i]
                H[cols, i] += aw[i]
                H[cols, cols] += a[i] * ww[i]
        H *= 2.0 / self.N
        return 0.5 * (H + H.T)


def _objective(a, W, teacher, activation, X):
    a, W = check_student(a, W, teacher)
    return EmpiricalObjective(teacher, activation, a.size, X), pack(a, W)


def empirical_loss(a, W, teacher: Teacher, activation: str | Activation, X) -> float:
    """The empirical loss (1/N) sum_s (f(x_s) - f*(x_s))^2 of the student (a, W) on X.

    Parameters
    ----------
    a : array_like, shape (n,)
        Student outgoing weights.
    W : array_like, shape (n, d)
        Student incoming vectors as rows.
    teacher : Teacher
    activation : str or Activation
    X : array_like, shape (N, d)
        Inputs, one per row (e.g. :func:`sample_inputs`).

    Returns
    -------
    float
        Its expectation over X ~ N(0, I_d) is :func:`copyaverage.population_loss
        <copyaverage.loss.population_loss>`.
    """
    ob, theta = _objective(a, W, teacher, activation, X)
    return ob.loss(theta)


def empirical_gradient(a, W, teacher: Teacher, activation: str | Activation, X) -> np.ndarray:
    """Gradient of :func:`~copyaverage.empirical.empirical_loss` with respect to
    theta = pack(a, W), shape (n (1 + d),)."""
    ob, theta = _objective(a, W, teacher, activation, X)
    return ob.gradient(theta)


def empirical_hessian(a, W, teacher: Teacher, activation: str | Activation, X) -> np.ndarray:
    """Hessian of :func:`~copyaverage.empirical.empirical_loss` with respect to
    theta = pack(a, W), shape (n (1 + d), n (1 + d)), symmetric. For ReLU it is the Hessian
    away from the kinks (where sigma'' = 0), which a sample meets with probability 0."""
    ob, theta = _objective(a, W, teacher, activation, X)
    return ob.hessian(theta)
