"""The 'dead stays dead' treatment of ReLU neurons that reach w = 0."""

import numpy as np
import pytest

from copyaverage import Teacher, gradient_flow, initialize
from copyaverage.dead_neurons import dead_neurons, without_dead_neurons
from copyaverage.results import Stop


def test_a_dead_neuron_is_removed_and_the_others_converge():
    T = Teacher.orthonormal(3)
    r = gradient_flow(*initialize(2, T, "gaussian", seed=0), T, "relu", eigenvalues=False)
    assert r.stop == Stop.DYING_NEURON
    dead = dead_neurons(r)
    assert dead.size == 1
    d = without_dead_neurons(r, T, "relu", eigenvalues=False)
    assert d.converged and d.status == "converged" and d.rounds == 1
    assert d.alive == tuple(i for i in range(2) if i != dead[0])
    np.testing.assert_array_equal(d.result.W.shape, (1, T.d))
    assert d.result.grad_norm <= d.result.tol


@pytest.mark.parametrize("record", [True, False])
def test_when_every_neuron_dies_the_run_fails(record):
    """Also when the trajectory kept no parameters (as in sweeps): the neuron that
    fired the engine's test is then the shortest one."""
    T = Teacher.orthonormal(3)
    r = gradient_flow(*initialize(1, T, "gaussian", 17), T, "relu", max_time=30,
                      eigenvalues=False, record_parameters=record)
    d = without_dead_neurons(r, T, "relu")
    assert d.result is None and d.alive == () and d.status == "failed" and not d.converged


def test_a_run_without_deaths_is_returned_as_it_is():
    T = Teacher.orthonormal(3)
    r = gradient_flow(*initialize(2, T, "gaussian", seed=1), T, "relu", eigenvalues=False)
    assert r.stop != Stop.DYING_NEURON
    d = without_dead_neurons(r, T, "relu")
    assert d.result is r and d.alive == (0, 1) and d.rounds == 0
    assert dead_neurons(r).size == 0


def test_only_relu():
    T = Teacher.orthonormal(3)
    r = gradient_flow(*initialize(2, T, "gaussian", seed=1), T, "erf", eigenvalues=False)
    with pytest.raises(ValueError, match="only ReLU"):
        without_dead_neurons(r, T, "erf")
