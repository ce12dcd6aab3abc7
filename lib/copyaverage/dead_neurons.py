"""ReLU neurons that die during gradient flow: the second way to treat them.

A ReLU student neuron whose incoming vector reaches w_i = 0 outputs relu(0 . x) = 0 for
every input. The loss has no gradient there (it is 1-homogeneous in w_i at 0), and
gradient flow reaches that point in finite time. Two treatments:

* **stop** (the engine's default, :func:`copyaverage.flow.gradient_flow`): the run ends
  with ``stop == Stop.DYING_NEURON`` and counts as failed. The paper's engine behaves
  alike: its ReLU integrals divide by the norm of w_i and become non-finite there.
* **dead stays dead** (:func:`without_dead_neurons`): the dead neuron contributes nothing
  from then on and the flow cannot move it (any subgradient flow started at w_i = 0
  with a_i relu(w_i . x) = 0 keeps the loss constant along a_i), so it is removed and the
  flow of the surviving neurons continues from where they are. A run fails under this
  treatment only when every neuron dies or the continued flow fails otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import Activation, get_activation
from .flow import gradient_flow
from .ode import DEAD_FRACTION
from .results import FlowResult, Stop
from .teacher import Teacher

__all__ = ["DeadNeuronResult", "dead_neurons", "without_dead_neurons"]


@dataclass(frozen=True)
class DeadNeuronResult:
    """Outcome of :func:`without_dead_neurons`.

    Attributes
    ----------
    result : FlowResult or None
        The last flow, of the surviving neurons only; None when every neuron died.
    alive : tuple of int
        The surviving neurons, as indices into the original student.
    rounds : int
        How many times the flow was restarted after neurons died.
    """

    result: FlowResult | None
    alive: tuple
    rounds: int

    @property
    def status(self) -> str:
        """``"converged"``, ``"not converged"`` or ``"failed"`` (every neuron died, or the
        continued flow failed)."""
        return "failed" if self.result is None else self.result.status

    @property
    def converged(self) -> bool:
        return self.result is not None and self.result.converged


def dead_neurons(result: FlowResult) -> np.ndarray:
    """Indices of the dead neurons of a run that stopped at a dying neuron.

    The engine's test: the norm of w_i below ``DEAD_FRACTION`` (of
    :mod:`copyaverage.ode`) times the scale of the run, the largest norm of a w_j now or
    at the start (known when the trajectory recorded the parameters). Without the start, when all neurons shrank together, no neuron may
    pass the test against the current scale; then the neuron with the smallest norm is
    the one that fired it. Empty for a run that did not stop at a dying neuron.
    """
    if result.stop != Stop.DYING_NEURON:
        return np.array([], dtype=int)
    norms = np.linalg.norm(result.W, axis=1)
    scale = float(norms.max())
    traj = result.trajectory
    if traj is not None and traj.theta is not None and len(traj.theta):
        n = len(result.a)
        scale = max(scale, float(np.linalg.norm(traj.theta[0][n:].reshape(n, -1),
                                                axis=1).max()))
    dead = np.flatnonzero(norms < DEAD_FRACTION * max(scale, 1e-300))
    return dead if dead.size else np.array([int(np.argmin(norms))])


def without_dead_neurons(result: FlowResult, teacher: Teacher,
                         activation: str | Activation = "relu",
                         **options) -> DeadNeuronResult:
    """Continue a ReLU flow that stopped at a dying neuron, treating dead neurons as
    dead: remove them and run gradient flow on the others from where they stopped,
    again after every further death.

    Parameters
    ----------
    result : FlowResult
        A finished run (any stop; a run that did not stop at a dying neuron is returned
        as it is, with every neuron alive).
    teacher : Teacher
    activation : str or Activation
        ReLU (the only activation whose neurons die this way).
    **options
        Passed to :func:`copyaverage.flow.gradient_flow` for every continued flow.

    Returns
    -------
    DeadNeuronResult
    """
    act = get_activation(activation)
    if act.kind != "relu":
        raise ValueError(f"only ReLU neurons die at w = 0; got activation {act.name!r}")
    alive = np.arange(len(result.a))
    rounds = 0
    while result.stop == Stop.DYING_NEURON:
        dead = dead_neurons(result)
        keep = np.setdiff1d(np.arange(len(result.a)), dead)
        alive = alive[keep]
        if keep.size == 0:
            return DeadNeuronResult(None, (), rounds)
        result = gradient_flow(result.a[keep], result.W[keep], teacher, act, **options)
        rounds += 1
    return DeadNeuronResult(result, tuple(int(i) for i in alive), rounds)
