"""copyaverage: exact Gaussian-input losses for teacher-student two-layer networks.

The library behind the living paper on *Should Under-parameterized Student
Networks Copy or Average Teacher Weights?* (Simsek, Bendjeddou, Gerstner, Brea,
NeurIPS 2023).
"""

from .activations import ACTIVATIONS, Activation, erf_activation, get_activation
from .gaussian import monte_carlo_pair_interaction, pair_interaction
from .loss import gradient, hessian, monte_carlo_loss, pack, population_loss, unpack
from .teacher import Teacher

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Teacher",
    "erf_activation",
    "get_activation",
    "gradient",
    "hessian",
    "monte_carlo_loss",
    "monte_carlo_pair_interaction",
    "pack",
    "pair_interaction",
    "population_loss",
    "unpack",
]
