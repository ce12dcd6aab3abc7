"""The book's figure style (copyaverage.plots): the check catches what it should.
(tests/test_pages.py checks that every page uses it.)"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from copyaverage import plots  # noqa: E402



@pytest.fixture(autouse=True)
def book_style():
    with matplotlib.rc_context():
        plots.use_book_style()
        yield
    plt.close("all")


def test_a_figure_in_the_style_passes():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="line")
    ax.set(title="title", xlabel="x", ylabel="y")
    ax.legend()
    plots.check_figure(fig)  # no error


def test_too_wide_is_rejected():
    fig, _ = plt.subplots(figsize=(12, 3))
    with pytest.raises(ValueError, match="12.00 in wide"):
        plots.check_figure(fig)


def test_small_text_is_named():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.text(0.5, 0.5, "tiny note", fontsize=6)
    ax.tick_params(labelsize=7)
    with pytest.raises(ValueError, match=r"'tiny note' is 6 pt"):
        plots.check_figure(fig)


def test_invisible_text_does_not_count():
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "hidden", fontsize=6, visible=False)
    plots.check_figure(fig)


def test_overlap_heatmap_keeps_to_the_style():
    import numpy as np

    from copyaverage import Teacher

    teacher = Teacher.orthonormal(3)
    fig, ax = plt.subplots(figsize=(3.5, 2.5))
    plots.overlap_heatmap(ax, np.eye(2, 4), teacher, title="overlaps")
    plots.check_figure(fig)


def test_ordered_overlaps_puts_copies_on_the_diagonal():
    import numpy as np

    U = np.array([[0.1, 0.0, 0.9], [0.95, 0.0, 0.0]])
    V = plots.ordered_overlaps(U)
    assert V[0, 0] == 0.95 and V[1, 1] == 0.9 and V.shape == (2, 3)
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        plots.ordered_overlaps(np.zeros(3))


def test_transition_map_keeps_to_the_style():
    import pandas as pd

    from copyaverage.basins import exact_boundaries

    fig, ax = plt.subplots(figsize=(7, 4))
    switches = pd.DataFrame([dict(k=20, n=12, start="Glorot"), dict(k=20, n=11, start="std 0.1")])
    plots.transition_map(ax, exact_boundaries([10, 20]), switches)
    ax.legend()
    plots.check_figure(fig)
    assert len(ax.lines) == 3 + 2


def test_html_table_has_html_and_a_plain_text_twin():
    import pandas as pd

    from copyaverage.plots import html_table

    t = html_table(pd.DataFrame({"n": [1, 2], "loss": [0.5, 0.25]}), {"loss": "{:.3f}"})
    assert "<table" in t._repr_html_() and "0.250" in t._repr_html_()
    assert repr(t).split() == ["n", "loss", "1", "0.500", "2", "0.250"]  # no index column
