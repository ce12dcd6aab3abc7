"""Activation functions, looked up by name.

Every activation is an elementwise function written with ``autograd.numpy``.
Two families have a closed-form Gaussian pair interaction (see
:mod:`copyaverage.gaussian`): the scaled error function and ReLU. The others
are integrated by Gauss-Hermite quadrature.

The name ``"erf"`` means the paper's activation ``sigma(x) = erf(x / sqrt(2))``
(``sigmoid2`` in the authors' MLPGradientFlow.jl); ``"erf_plain"`` is
``erf(x)``. :func:`erf_activation` builds ``erf(scale * x)`` for any scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import autograd.numpy as anp
from autograd import elementwise_grad
from autograd.scipy.special import erf as _erf

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "erf_activation"]


@dataclass(frozen=True)
class Activation:
    """An activation function sigma and what is known about it.

    Attributes
    ----------
    name : str
        Name used in results and error messages.
    fn : callable
        Elementwise sigma, differentiable by autograd.
    odd : bool
        True when sigma(-x) = -sigma(x); then the loss is invariant under
        (a_i, w_i) -> (-a_i, -w_i).
    kind : {"erf", "relu", "quadrature"}
        How the Gaussian pair interaction is computed.
    scale : float
        For ``kind == "erf"``, sigma(x) = erf(scale * x). Unused otherwise.
    description : str
        One line for people.
    strip : float
        For quadrature: sigma(r z) is analytic (and tame) for ``|Im z| < strip / r``;
        the distance to the nearest complex singularity of sigma (pi/2 for tanh,
        pi for the logistic sigmoid and softplus; 1 for the entire GELU, whose
        growth off the real axis plays the same role).
    """

    name: str
    fn: Callable
    odd: bool
    kind: str
    scale: float = 1.0
    description: str = ""
    strip: float = 1.0
    _derivs: list = field(default_factory=list, repr=False, compare=False)

    def __call__(self, x):
        return self.fn(x)

    def derivative(self, order: int) -> Callable:
        """The elementwise derivative of the given order (0 is sigma itself)."""
        if order < 0:
            raise ValueError(f"derivative order must be >= 0, got {order}")
        if not self._derivs:
            self._derivs.append(self.fn)
        while len(self._derivs) <= order:
            self._derivs.append(elementwise_grad(self._derivs[-1]))
        return self._derivs[order]


def erf_activation(scale: float = 1 / math.sqrt(2)) -> Activation:
    """sigma(x) = erf(scale * x); the default scale 1/sqrt(2) is the paper's."""
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"erf scale must be a positive finite number, got {scale!r}")
    if math.isclose(scale, 1 / math.sqrt(2)):
        name, desc = "erf", "erf(x/sqrt(2)), the paper's activation"
    elif scale == 1.0:
        name, desc = "erf_plain", "erf(x)"
    else:
        name, desc = f"erf[{scale:g}]", f"erf({scale:g} x)"
    return Activation(name, lambda x: _erf(scale * x), True, "erf", scale, desc)


def _relu(x):
    return anp.maximum(x, 0.0)


def _sigmoid(x):
    return 0.5 * (1.0 + anp.tanh(0.5 * x))


def _softplus(x):
    return anp.logaddexp(0.0, x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2)))


#: The activations, by name (``"erf"`` is erf(x / sqrt(2)), ``"erf_plain"`` erf(x),
#: ``"relu"``, ``"tanh"``, ``"sigmoid"``, ...): the keys are the names that the
#: functions taking an ``activation`` accept.
#:
#: :meta hide-value:
ACTIVATIONS: dict[str, Activation] = {
    "erf": erf_activation(1 / math.sqrt(2)),
    "erf_plain": erf_activation(1.0),
    "relu": Activation("relu", _relu, False, "relu", description="max(x, 0)"),
    "tanh": Activation("tanh", anp.tanh, True, "quadrature", description="tanh(x)",
                       strip=math.pi / 2),
    "sigmoid": Activation("sigmoid", _sigmoid, False, "quadrature",
                          description="1 / (1 + exp(-x))", strip=math.pi),
    "softplus": Activation("softplus", _softplus, False, "quadrature",
                           description="log(1 + exp(x))", strip=math.pi),
    "gelu": Activation("gelu", _gelu, False, "quadrature",
                       description="x Phi(x), the exact GELU"),
}


def get_activation(activation: str | Activation) -> Activation:
    """Return the :class:`~copyaverage.activations.Activation` for a name (or pass an
    Activation through).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known names.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    known = ", ".join(sorted(ACTIVATIONS))
    raise ValueError(
        f"unknown activation {activation!r}; known activations: {known} "
        "(or an Activation, e.g. erf_activation(scale))"
    )
