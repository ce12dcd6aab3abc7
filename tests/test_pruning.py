"""Pruning rules: what each keeps, that merging preserves the function, bad input."""

import numpy as np
import pytest

import copyaverage
from copyaverage import Teacher, population_loss
from copyaverage.pruning import RULES, merge_duplicates, neuron_scores, prune


def _teacher_plus_zero(k=4, at=2):
    """The exact teacher (a = 1, w = e_j) with a silent neuron (a = 0) inserted at ``at``."""
    T = Teacher.orthonormal(k)
    rng = np.random.default_rng(0)
    a = np.insert(T.a.copy(), at, 0.0)
    W = np.insert(T.V.copy(), at, rng.normal(size=T.d), axis=0)
    return T, a, W


@pytest.mark.parametrize("rule", RULES)
def test_teacher_plus_silent_neuron_prunes_to_the_teacher(rule):
    T, a, W = _teacher_plus_zero()
    a_k, W_k = prune(a, W, T.k, rule)
    np.testing.assert_array_equal(a_k, T.a)
    np.testing.assert_array_equal(W_k, T.V)
    assert population_loss(a_k, W_k, T, "erf") < 1e-14


@pytest.mark.parametrize("rule", RULES)
def test_teacher_plus_silent_neuron_relu(rule):
    T, a, W = _teacher_plus_zero(k=3, at=0)
    a_k, W_k = prune(a, W, T.k, rule, activation="relu")
    np.testing.assert_array_equal(W_k, T.V)


def test_merging_two_identical_neurons_preserves_the_function():
    T = Teacher.orthonormal(3)
    # teacher neuron 1 split into two identical neurons with outgoing weights 0.3 and 0.7
    a = np.array([0.3, 1.0, 0.7, 1.0])
    W = np.stack([T.V[0], T.V[1], T.V[0], T.V[2]])
    a_m, W_m, groups = merge_duplicates(a, W, "erf")
    assert groups == [[0, 2], [1], [3]]
    np.testing.assert_allclose(a_m, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(W_m, T.V)
    assert population_loss(a_m, W_m, T, "erf") < 1e-14
    # and through prune, keeping all three merged neurons
    a_p, W_p = prune(a, W, 3, "merge")
    assert population_loss(a_p, W_p, T, "erf") < 1e-14


def test_merge_uses_oddness_of_erf_but_not_of_relu():
    T = Teacher.orthonormal(2)
    # erf is odd: a sigma(w.x) + b sigma(-w.x) = (a - b) sigma(w.x)
    a = np.array([1.5, 0.5, 1.0])
    W = np.stack([T.V[0], -T.V[0], T.V[1]])
    a_m, W_m, groups = merge_duplicates(a, W, "erf")
    assert groups == [[0, 1], [2]]
    np.testing.assert_allclose(a_m, [1.0, 1.0])
    assert population_loss(a_m, W_m, T, "erf") == pytest.approx(
        population_loss(a, W, T, "erf"), abs=1e-14)
    _, _, groups_relu = merge_duplicates(a, W, "relu")
    assert groups_relu == [[0], [1], [2]]


def test_merge_of_nearby_neurons_is_first_order_accurate():
    T = Teacher.orthonormal(3)
    rng = np.random.default_rng(1)
    eps = 1e-4
    a = np.array([0.4, 0.6, 1.0, 1.0])
    W = np.stack([T.V[0] + eps * rng.normal(size=T.d), T.V[0] + eps * rng.normal(size=T.d),
                  T.V[1], T.V[2]])
    a_m, W_m, _ = merge_duplicates(a, W)
    # E[(f_merged - f)^2] with f the unmerged network (as the teacher): the difference of
    # the functions is second order in the spread eps, its square fourth order
    unmerged = Teacher(a, W)
    assert population_loss(a_m, W_m, unmerged, "erf") < 1e-14
    assert population_loss(a_m, W_m, T, "erf") > 1e-10  # both are eps away from the teacher


def test_spectral_prefers_distinct_neurons_over_duplicates():
    T = Teacher.orthonormal(3)
    # neuron 0 and 1 are the same function (half the weight each); 2 and 3 distinct
    a = np.array([0.5, 0.5, 1.0, 1.0])
    W = np.stack([T.V[0], T.V[0], T.V[1], T.V[2]])
    s = neuron_scores(a, W, "spectral", "erf", n_keep=3)
    np.testing.assert_allclose(s, [0.5, 0.5, 1.0, 1.0], atol=1e-12)
    a_p, W_p = prune(a, W, 3, "spectral")
    np.testing.assert_array_equal(W_p, W[[0, 2, 3]])  # a tie between 0 and 1: lower index


def test_magnitude_ranks_by_outgoing_times_incoming_norm():
    a = np.array([1.0, -3.0, 0.5])
    W = np.array([[1.0, 0.0], [0.1, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(neuron_scores(a, W, "magnitude"), [1.0, 0.3, 2.0])
    a_p, W_p = prune(a, W, 2)
    np.testing.assert_array_equal(a_p, [1.0, 0.5])  # original order kept


def test_public_in_the_package():
    # the function, not the module (which is copyaverage.pruning)
    assert copyaverage.prune is prune


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_keep=0), "n_keep must be an integer in 1..3"),
        (dict(n_keep=4), "n_keep must be an integer in 1..3"),
        (dict(n_keep=2.0), "n_keep must be an integer"),
        (dict(n_keep=True), "n_keep must be an integer"),
        (dict(n_keep=2, rule="random"), "unknown pruning rule 'random'; known: magnitude"),
        (dict(n_keep=2, activation="swish"), "unknown activation"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    a = np.ones(3)
    W = np.eye(3)
    with pytest.raises(ValueError, match=message):
        prune(a, W, **kwargs)


def test_bad_arrays_are_named():
    with pytest.raises(ValueError, match="must be finite"):
        prune(np.array([1.0, np.nan]), np.eye(2), 1)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        prune(np.ones(3), np.eye(2), 1)
    with pytest.raises(ValueError, match="rtol must lie in"):
        merge_duplicates(np.ones(2), np.eye(2), rtol=1.0)
    with pytest.raises(ValueError, match="spectral scores need n_keep"):
        neuron_scores(np.ones(2), np.eye(2), "spectral")


def test_anatomy_of_a_split_teacher_with_a_silent_neuron():
    from copyaverage.pruning import anatomy, neuron_roles

    T = Teacher.orthonormal(3)
    # teacher neuron 0 split in two halves, neuron 2 copied with both signs flipped
    # (erf is odd), a silent neuron pointing anywhere
    a = np.array([0.5, 0.5, 1.0, -1.0, 0.0])
    W = np.vstack([T.V[0], T.V[0], T.V[1], -T.V[2], np.ones(T.d)])
    assert population_loss(a, W, T, "erf") < 1e-14
    roles = neuron_roles(a, W, T)
    assert list(roles.role) == ["on teacher"] * 4 + ["silent"]
    assert list(roles.teacher_neuron[:4]) == [0, 0, 1, 2]
    assert anatomy(a, W, T) == dict(silent=1, on_teacher=4, elsewhere=0, shared=1,
                                    uncovered=0, diverging_pairs=0, max_abs_a=1.0)


def test_anatomy_sees_a_diverging_pair_and_an_uncovered_teacher_neuron():
    from copyaverage.pruning import anatomy

    T = Teacher.orthonormal(2)
    a = np.array([20.0, -19.0])
    W = np.vstack([T.V[0], T.V[0] * 1.001])
    got = anatomy(a, W, T)
    assert got["diverging_pairs"] == 1 and got["uncovered"] == 1 and got["shared"] == 1


def test_pruned_start_shares_its_key_across_rules_that_keep_the_same_neurons():
    from copyaverage.pruning import pruned_start

    T, a, W = _teacher_plus_zero()
    keys = {pruned_start(a, W, T, T.k, rule).params()["start"] for rule in RULES}
    assert len(keys) == 1


def test_prune_and_retrain_rows_and_reuse(tmp_path):
    from copyaverage.pruning import prune_and_retrain
    from copyaverage.sweep import RunSpec

    spec = RunSpec("erf", 3, 4, 0)  # labels the rows; its teacher is Teacher.orthonormal(3)
    T, a, W = _teacher_plus_zero(k=3, at=1)
    table = prune_and_retrain([(spec, (a, W))], lambda k: [2], store=tmp_path, n_jobs=1)
    assert list(table.rule) == list(RULES) and (table.n_keep == 2).all()
    assert (table.kept == 2).all()
    # two exact copies and one teacher neuron uncovered: loss 1/3 before retraining
    np.testing.assert_allclose(table.pruned_loss, 1 / 3, rtol=1e-12)
    assert table.converged.all() and (table.grad_norm <= 1e-12).all()
    assert (table.loss < 1 / 3).all()  # retraining lowers it
    # magnitude and merge keep the same two neurons (spectral breaks the three-way tie of
    # equal teacher neurons in its own way): one retraining run, bit-identical end points
    assert table.loss[0] == table.loss[2]
    np.testing.assert_allclose(table.loss, table.loss[0], rtol=1e-12)
