"""The population loss E_x[(f(x) - f*(x))^2], x ~ N(0, I_d), and its derivatives.

With the pair interaction g(w, v) = E[sigma(w.x) sigma(v.x)],

    L(a, W) = sum_il a_i a_l g(w_i, w_l) - 2 sum_ij a_i a*_j g(w_i, v_j)
              + sum_jm a*_j a*_m g(v_j, v_m).

No factor 1/2, as in the authors' MLPGradientFlow.jl. Parameters are flattened
as theta = (a_1..a_n, w_1, ..., w_n) (the rows of W one after another).
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import grad as _grad
from autograd import hessian as _hessian

from .activations import Activation, get_activation
from .gaussian import pair_interaction
from .teacher import Teacher, _check_weights, _real_array

__all__ = [
    "population_loss",
    "gradient",
    "hessian",
    "pack",
    "unpack",
    "monte_carlo_loss",
    "check_student",
]


def check_student(a, W, teacher: Teacher):
    """Validate a student (a, W) against a teacher; return float arrays.

    Raises ``ValueError`` for a wrong type of teacher, complex arrays, wrong
    shapes, n < 1, a width mismatch with the teacher's input dimension, NaN/inf
    entries, or entries larger than :data:`copyaverage.teacher.MAX_WEIGHT` (1e50)
    in absolute value.
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a copyaverage.Teacher, got {type(teacher).__name__}")
    a = _real_array(a, "student a")
    W = _real_array(W, "student W")
    if a.ndim != 1 or a.size < 1:
        raise ValueError(f"student a must have shape (n,) with n >= 1, got shape {a.shape}")
    if W.ndim != 2 or W.shape[0] != a.shape[0]:
        raise ValueError(
            f"student W must have shape (n, d) = ({a.shape[0]}, {teacher.d}), got {W.shape}"
        )
    if W.shape[1] != teacher.d:
        raise ValueError(
            f"student W has input dimension {W.shape[1]} but the teacher has d = {teacher.d}"
        )
    _check_weights([a, W], "student weights")
    return a, W


def pack(a, W) -> np.ndarray:
    """Flatten (a, W) into theta = (a, W.ravel())."""
    return np.concatenate([np.ravel(a), np.ravel(W)])


def unpack(theta, n: int, d: int):
    """Inverse of :func:`~copyaverage.loss.pack`: split theta of length n (1 + d) into a (n,)
    and W (n, d)."""
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (n * (1 + d),):
        raise ValueError(f"theta must have shape ({n * (1 + d)},) for n={n}, d={d}; got {theta.shape}")
    return theta[:n], theta[n:].reshape(n, d)


def _teacher_term(teacher: Teacher, act: Activation) -> float:
    G = pair_interaction(teacher.V, teacher.V, act)
    return float(teacher.a @ G @ teacher.a)


def _loss(a, W, teacher: Teacher, act: Activation, const: float):
    Gss = pair_interaction(W, W, act)
    Gst = pair_interaction(W, teacher.V, act)
    return anp.dot(a, anp.dot(Gss, a)) - 2.0 * anp.dot(a, anp.dot(Gst, teacher.a)) + const


def population_loss(a, W, teacher: Teacher, activation: str | Activation) -> float:
    """Exact population loss E_x[(f(x) - f*(x))^2] of the student (a, W).

    Parameters
    ----------
    a : array_like, shape (n,)
        Student outgoing weights.
    W : array_like, shape (n, d)
        Student incoming vectors as rows.
    teacher : Teacher
    activation : str or Activation
        A name from :data:`copyaverage.ACTIVATIONS <copyaverage.activations.ACTIVATIONS>`
        (``"erf"`` is erf(x/sqrt(2))).

    Returns
    -------
    float
    """
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    return float(_loss(a, W, teacher, act, _teacher_term(teacher, act)))


def _flat_loss(teacher, act, n):
    const = _teacher_term(teacher, act)
    d = teacher.d

    def f(theta):
        return _loss(theta[:n], anp.reshape(theta[n:], (n, d)), teacher, act, const)

    return f


def gradient(a, W, teacher: Teacher, activation: str | Activation) -> np.ndarray:
    """Gradient of :func:`~copyaverage.loss.population_loss` with respect to theta = pack(a, W).

    Returns
    -------
    ndarray, shape (n (1 + d),)
    """
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    return np.asarray(_grad(_flat_loss(teacher, act, a.size))(pack(a, W)))


def hessian(a, W, teacher: Teacher, activation: str | Activation) -> np.ndarray:
    """Hessian of :func:`~copyaverage.loss.population_loss` with respect to theta = pack(a, W).

    Returns
    -------
    ndarray, shape (n (1 + d), n (1 + d)), symmetric
    """
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    H = np.asarray(_hessian(_flat_loss(teacher, act, a.size))(pack(a, W)))
    return 0.5 * (H + H.T)


def monte_carlo_loss(a, W, teacher: Teacher, activation: str | Activation,
                     samples: int = 1_000_000, seed: int = 0, batch: int = 200_000):
    """Monte Carlo estimate of the loss from fresh Gaussian inputs.

    ``samples`` (>= 2) inputs are drawn with ``seed`` (>= 0), ``batch`` (>= 1) at a time.

    Returns
    -------
    (mean, standard_error) : tuple of float
    """
    act = get_activation(activation)
    a, W = check_student(a, W, teacher)
    for name, value, lo in [("samples", samples, 2), ("batch", batch, 1), ("seed", seed, 0)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    rng = np.random.default_rng(seed)
    total = total_sq = 0.0
    done = 0
    while done < samples:
        m = min(batch, samples - done)
        X = rng.standard_normal((m, teacher.d))
        err = np.asarray(act(X @ W.T)) @ a - np.asarray(act(X @ teacher.V.T)) @ teacher.a
        sq = err**2
        total += sq.sum()
        total_sq += (sq**2).sum()
        done += m
    mean = total / samples
    var = (total_sq / samples - mean**2) * samples / (samples - 1)
    return float(mean), float(np.sqrt(max(var, 0.0) / samples))
