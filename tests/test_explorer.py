"""copyaverage.explorer: the data the explorer page embeds, and its HTML."""

from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import copyaverage as ca
from copyaverage.configurations import ca_optimum_point
from copyaverage.explorer import explorer_data, explorer_html
from copyaverage.sweep import RunSpec


def _runs():
    """Two erf runs (k = 4, n = 2) that end exactly at the CA optimum."""
    specs = [RunSpec("erf", 4, 2, seed) for seed in (0, 1)]
    a, W = ca_optimum_point(2, ca.Teacher.orthonormal(4), "erf")
    results = [SimpleNamespace(a=a, W=W), SimpleNamespace(a=-a, W=-W)]  # same function
    table = pd.DataFrame(dict(k=[4, 4], n=[2, 2], seed=[0, 1], label=["CA optimum"] * 2,
                              loss=[0.04, 0.04], converged=[True, False]))
    return specs, results, table


def test_cosines_are_signed_and_row_major():
    specs, results, table = _runs()
    data = explorer_data(specs, results, table)
    assert data["k"] == [4, 4] and data["n"] == [2, 2] and data["converged"] == [True, False]
    u = np.array(data["cosines"][0]).reshape(2, 4)
    # one copy (cosine 1 with one teacher neuron) and one average of three (1/sqrt 3 each)
    assert sorted(np.round(u.max(axis=1), 3)) == [round(1 / np.sqrt(3), 3), 1.0]
    assert np.allclose(np.sort(u, axis=None)[:3], 0.0, atol=1e-3)
    # flipping the sign of (a_i, w_i) leaves the signed cosines unchanged
    assert data["cosines"][1] == data["cosines"][0]


def test_bad_input_is_refused():
    specs, results, table = _runs()
    with pytest.raises(ValueError, match="same length"):
        explorer_data(specs[:1], results, table)
    with pytest.raises(ValueError, match="is not the run"):
        explorer_data(specs[::-1], results, table)


def test_html_embeds_bokehjs_and_names_the_controls():
    pytest.importorskip("bokeh")
    specs, results, table = _runs()
    html = explorer_html(explorer_data(specs, results, table), {4: ca.transition(4)})
    # BokehJS is inline: no script element loads anything (the page must work offline)
    sources = []

    class Scripts(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "script":
                sources.append(dict(attrs).get("src"))

    Scripts().feed(html)
    assert len(sources) >= 2 and set(sources) == {None} and "BEGIN bokeh.min.js" in html
    for name in ("activation", "init", "k", "n", "seed", "points", "cosines", "info"):
        assert f'"name":"{name}"' in html.replace(" ", "")
    with pytest.raises(ValueError, match="needs its exact curve"):
        explorer_html(explorer_data(specs, results, table), {})
