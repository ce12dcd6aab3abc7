"""The Teacher and its validation."""

import numpy as np
import pytest

from copyaverage import Teacher


def test_orthonormal_teacher_defaults_to_d_equal_k_plus_one():
    T = Teacher.orthonormal(4)
    assert (T.k, T.d) == (4, 5)
    np.testing.assert_array_equal(T.a, np.ones(4))
    np.testing.assert_allclose(T.V @ T.V.T, np.eye(4))
    assert Teacher.orthonormal(3, d=3).d == 3


def test_teacher_arrays_are_read_only():
    T = Teacher.orthonormal(2)
    with pytest.raises(ValueError):
        T.a[0] = 5.0


@pytest.mark.parametrize(
    "k, d, message",
    [(0, None, "k must be an integer >= 1"), (-2, None, "k must be"), (2.5, None, "k must be"),
     (4, 3, "d must be an integer >= k = 4"), (True, None, "k must be")],
)
def test_orthonormal_bad_sizes(k, d, message):
    with pytest.raises(ValueError, match=message):
        Teacher.orthonormal(k, d)


def test_teacher_bad_arrays():
    with pytest.raises(ValueError, match="both equal the number of teacher neurons"):
        Teacher(np.ones(3), np.eye(2, 4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        Teacher(np.ones(2), np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2 dimension"):
        Teacher(np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="empty"):
        Teacher(np.ones(0), np.ones((0, 3)))
    with pytest.raises(ValueError, match="real numbers"):
        Teacher(["a", "b"], np.eye(2))


# ------------------------------------------------------------ issue 15, item 7 --
def test_teacher_copies_its_inputs():
    """The caller's arrays stay writable and the teacher does not change with them."""
    a, V = np.ones(2), np.eye(2, 3)
    T = Teacher(a, V)
    assert a.flags.writeable and V.flags.writeable
    a[0], V[0, 0] = 5.0, 7.0
    np.testing.assert_array_equal(T.a, [1.0, 1.0])
    np.testing.assert_array_equal(T.V, np.eye(2, 3))
    assert not T.a.flags.writeable and not T.V.flags.writeable


def test_teacher_rejects_complex_and_too_large_weights():
    with pytest.raises(ValueError, match="complex"):
        Teacher(np.array([1.0 + 1e-3j, 1.0]), np.eye(2, 3))
    with pytest.raises(ValueError, match="complex"):
        Teacher(np.ones(2), np.eye(2, 3) + 0j)
    with pytest.raises(ValueError, match=r"MAX_WEIGHT = 1e\+50"):
        Teacher(np.ones(2), 1e60 * np.eye(2, 3))
    with pytest.raises(ValueError, match=r"MAX_WEIGHT = 1e\+50"):
        Teacher(np.array([1e155, 1.0]), np.eye(2, 3))
