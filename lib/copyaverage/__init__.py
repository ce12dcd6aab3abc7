"""copyaverage: exact Gaussian-input losses for teacher-student two-layer networks.

The library behind the living paper on *Should Under-parameterized Student
Networks Copy or Average Teacher Weights?* (Simsek, Bendjeddou, Gerstner, Brea,
NeurIPS 2023).

Submodules with a function of the same name are not re-exported here, so that
``import copyaverage.sweep`` keeps meaning the module: use
``copyaverage.sweep.sweep`` and ``copyaverage.classify.classify``.
"""

from .activations import ACTIVATIONS, Activation, erf_activation, get_activation
from .configurations import copy_average_point, integer_partitions, set_partitions
from .derivatives import closed_form_gradient, closed_form_hessian
from .empirical import empirical_gradient, empirical_hessian, empirical_loss, sample_inputs
from .exact_transition import perturbed_copy, transition
from .flow import gradient_flow, initialize
from .results import FlowResult, Stop
from .gaussian import monte_carlo_pair_interaction, pair_interaction
from .loss import gradient, hessian, monte_carlo_loss, pack, population_loss, unpack
from .one_neuron import one_neuron_critical_points, one_neuron_solution
from .pruning import prune
from .sgd import train
from .store import ResultStore
from .sweep import RunSpec, grid
from .symmetric import relaxed_copy_average
from .teacher import Teacher



def _version() -> str:
    """The version in the installed package metadata (from ``pyproject.toml``, the one source).

    Falls back to reading ``pyproject.toml`` of a checkout when the package is imported
    without being installed (e.g. ``PYTHONPATH=lib``), and to ``"0+unknown"`` otherwise.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("copyaverage")
    except PackageNotFoundError:
        pass
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.M)
    except OSError:
        match = None
    return match.group(1) if match else "0+unknown"


__version__ = _version()

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "FlowResult",
    "Stop",
    "ResultStore",
    "RunSpec",
    "Teacher",
    "closed_form_gradient",
    "closed_form_hessian",
    "copy_average_point",
    "empirical_gradient",
    "empirical_hessian",
    "empirical_loss",
    "erf_activation",
    "get_activation",
    "gradient",
    "gradient_flow",
    "grid",
    "hessian",
    "initialize",
    "integer_partitions",
    "monte_carlo_loss",
    "monte_carlo_pair_interaction",
    "one_neuron_critical_points",
    "one_neuron_solution",
    "pack",
    "pair_interaction",
    "perturbed_copy",
    "population_loss",
    "prune",
    "relaxed_copy_average",
    "sample_inputs",
    "train",
    "set_partitions",
    "transition",
    "unpack",
]
