"""Mini-batch SGD and Adam on teacher-labelled Gaussian inputs, as practitioners run them.

:func:`train` updates theta = pack(a, W) with the gradient of the batch loss
(1/B) sum_{s in batch} (f(x_s) - f*(x_s))^2 (no factor 1/2, like every loss here):

* ``optimizer="sgd"``: theta <- theta - lr * g, constant learning rate. With the batch
  gradient's mean equal to the population gradient, t = lr * steps is the time of the
  gradient flow d theta / dt = -grad L that small rates follow (online SGD).
* ``optimizer="adam"``: Adam (Kingma & Ba 2015) with bias correction, betas (0.9, 0.999),
  eps 1e-8 by default.

Where batches come from:

* ``samples=None``: online SGD, B fresh inputs x ~ N(0, I_d) every step (one pass over an
  infinite stream; the setting of Saad & Solla 1995);
* ``samples=N``: a fixed sample of N inputs (:func:`copyaverage.empirical.sample_inputs`
  with ``data_seed``), visited in epochs, reshuffled every epoch; batches of B, the last
  batch of an epoch smaller when B does not divide N.

Along the way the *population* loss and its gradient norm (exact, the closed forms of
:mod:`copyaverage.derivatives`) are recorded on a logarithmic grid of steps, so that SGD
can be set against gradient flow on the same axis. A run whose batch loss becomes
non-finite or exceeds ``max_loss`` stops with ``status == "diverged"`` and returns the
last finite parameters; nothing returned is NaN.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, get_activation
from .derivatives import Objective
from .flow import _check_int
from .empirical import (DATA_STREAM, _mean_loss_and_gradient, batch_sums, sample_inputs,
                        teacher_outputs)
from .loss import check_student, pack, unpack
from .teacher import Teacher

__all__ = ["train", "TrainResult", "OPTIMIZERS", "FINISHED", "DIVERGED"]

OPTIMIZERS = ("sgd", "adam")
FINISHED = "finished"
DIVERGED = "diverged"

#: Second entry of the seed of the batch stream (online draws or epoch shuffles), so that
#: it never shares a stream with a sample or an initialization.
BATCH_STREAM = 1


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    a, W : ndarray, shapes (n,) and (n, d)
        The last parameters (the last finite ones if the run diverged).
    status : {"finished", "diverged"}
    steps : int
        Updates taken.
    record_steps : ndarray of int
        Steps at which the population loss was recorded (0 and the last step included).
    population_loss, population_grad_norm : ndarray
        Exact population loss and its gradient norm at ``record_steps``.
    parameters : ndarray or None
        theta = pack(a, W) at ``record_steps`` (rows), if asked for.
    message : str
    settings : dict
        optimizer, lr, batch, samples, data_seed, betas, eps.
    seconds : float
        Wall time.
    """

    a: np.ndarray
    W: np.ndarray
    status: str
    steps: int
    record_steps: np.ndarray
    population_loss: np.ndarray
    population_grad_norm: np.ndarray
    parameters: np.ndarray | None
    message: str
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def flow_time(self) -> np.ndarray:
        """lr * record_steps: the gradient-flow time that SGD with small rates tracks."""
        return self.settings["lr"] * self.record_steps.astype(float)

    @property
    def loss(self) -> float:
        """The population loss at the last parameters."""
        return float(self.population_loss[-1])


def _record_grid(steps: int, per_decade: int) -> np.ndarray:
    """0, the last step, and ``per_decade`` log-spaced steps per decade in between."""
    if steps == 0:
        return np.array([0])
    m = max(2, int(math.ceil(per_decade * math.log10(max(steps, 10)))) + 1)
    grid = np.unique(np.round(np.logspace(0, math.log10(steps), m)).astype(int))
    return np.unique(np.concatenate([[0], grid, [steps]]))


def _check_number(x, name, lo=0.0, hi=math.inf, open_lo=True):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {x!r}")
    x = float(x)
    bad = not math.isfinite(x) or x > hi or (x <= lo if open_lo else x < lo)
    if bad:
        side = ">" if open_lo else ">="
        raise ValueError(f"{name} must be a finite number {side} {lo:g}"
                         + (f" and <= {hi:g}" if math.isfinite(hi) else "") + f", got {x!r}")
    return x


class _Batches:
    """Yields (X, y) batches: fresh Gaussian draws (online) or epochs over a fixed sample."""

    def __init__(self, teacher, act, batch, samples, data_seed):
        self.teacher, self.act, self.batch = teacher, act, batch
        self.rng = np.random.default_rng([DATA_STREAM, data_seed, BATCH_STREAM])
        self.online = samples is None
        if not self.online:
            self.X = sample_inputs(samples, teacher.d, data_seed)
            self.y = teacher_outputs(teacher, act, self.X)
            self.order, self.pos = self.rng.permutation(samples), 0

    def next(self):
        if self.online:
            X = self.rng.standard_normal((self.batch, self.teacher.d))
            return X, teacher_outputs(self.teacher, self.act, X)
        if self.pos >= self.order.size:
            self.order, self.pos = self.rng.permutation(self.order.size), 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return self.X[idx], self.y[idx]


def train(a0, W0, teacher: Teacher, activation: str | Activation, *, lr: float, steps: int,
          batch: int = 1, optimizer: str = "sgd", samples: int | None = None,
          data_seed: int = 0, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
          records_per_decade: int = 10, record_parameters: bool = False,
          max_loss: float = 1e8) -> TrainResult:
    """Train the student (a0, W0) by mini-batch SGD or Adam on teacher-labelled noise.

    Parameters
    ----------
    a0 : array_like (n,), W0 : array_like (n, d)
        Initial student (e.g. :func:`copyaverage.initialize <copyaverage.flow.initialize>`).
    teacher : Teacher
    activation : str or Activation
    lr : float, > 0
        Learning rate (constant).
    steps : int, >= 0
        Number of updates.
    batch : int, >= 1
        Batch size B (at most ``samples`` when that is given).
    optimizer : {"sgd", "adam"}
    samples : int or None
        None: online (fresh inputs every step). N >= 1: epochs over a fixed sample of N.
    data_seed : int, >= 0
        Seed of the sample and of the batch stream (independent of the initialization).
    betas, eps : Adam's decay rates (each in [0, 1)) and epsilon (> 0).
    records_per_decade : int, >= 1
        Population-loss records per decade of steps.
    record_parameters : bool
        Keep theta at every record.
    max_loss : float
        A batch loss above this (or not finite) ends the run as diverged.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For a bad student or teacher, an unknown optimizer, lr <= 0 or not finite,
        batch < 1, batch > samples, samples < 1, steps < 0, or bad Adam constants.
    """
    t0 = time.perf_counter()
    act = get_activation(activation)
    a, W = check_student(a0, W0, teacher)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
    lr = _check_number(lr, "lr")
    steps = _check_int(steps, "steps", 0)
    batch = _check_int(batch, "batch", 1)
    data_seed = _check_int(data_seed, "data_seed", 0)
    records_per_decade = _check_int(records_per_decade, "records_per_decade", 1)
    max_loss = _check_number(max_loss, "max_loss")
    if samples is not None:
        samples = _check_int(samples, "samples (N)", 1)
        if batch > samples:
            raise ValueError(f"batch = {batch} must be at most samples = {samples} (a batch is "
                             "drawn from the fixed sample); use samples=None for online SGD")
    try:
        beta1, beta2 = (_check_number(b, f"betas[{j}]", 0.0, 1.0, open_lo=False)
                        for j, b in enumerate(betas))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"betas must be two numbers in [0, 1): {exc}") from None
    if max(beta1, beta2) >= 1.0:
        raise ValueError(f"betas must be in [0, 1), got {tuple(betas)!r}")
    eps = _check_number(eps, "eps")

    n, d = W.shape
    population = Objective(teacher, act, n)
    batches = _Batches(teacher, act, batch, samples, data_seed)
    record_at = _record_grid(steps, records_per_decade)
    theta = pack(a, W)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rec_steps, rec_loss, rec_grad, rec_theta = [], [], [], []

    def record(step, th):
        L, g = population.loss_and_gradient(th)
        rec_steps.append(step)
        rec_loss.append(L)
        rec_grad.append(float(np.linalg.norm(g)))
        if record_parameters:
            rec_theta.append(th.copy())

    record(0, theta)
    next_rec = 1
    status, message, step = FINISHED, f"{steps} steps of {optimizer}", 0
    for step in range(1, steps + 1):
        a, W = theta[:n], theta[n:].reshape(n, d)
        X, y = batches.next()
        with np.errstate(all="ignore"):
            L, g = _mean_loss_and_gradient(a, *batch_sums(a, W, X, y, act), X.shape[0])
            if optimizer == "sgd":
                new = theta - lr * g
            else:
                m = beta1 * m + (1 - beta1) * g
                v = beta2 * v + (1 - beta2) * g * g
                mhat = m / (1 - beta1**step)
                vhat = v / (1 - beta2**step)
                new = theta - lr * mhat / (np.sqrt(vhat) + eps)
        if not (math.isfinite(L) and L <= max_loss and np.all(np.isfinite(new))):
            status = DIVERGED
            message = (f"diverged at step {step}: batch loss {L:.3g} "
                       f"(max_loss {max_loss:.3g}); the parameters before that step are kept")
            step -= 1
            break
        theta = new
        if next_rec < record_at.size and step == record_at[next_rec]:
            record(step, theta)
            next_rec += 1
    if rec_steps[-1] != step:
        record(step, theta)
    a, W = unpack(theta, n, d)
    settings = dict(optimizer=optimizer, lr=lr, batch=batch, samples=samples,
                    data_seed=data_seed, betas=(beta1, beta2), eps=eps)
    return TrainResult(a=a.copy(), W=W.copy(), status=status, steps=step,
                       record_steps=np.array(rec_steps), population_loss=np.array(rec_loss),
                       population_grad_norm=np.array(rec_grad),
                       parameters=np.array(rec_theta) if record_parameters else None,
                       message=message, settings=settings,
                       seconds=time.perf_counter() - t0)
