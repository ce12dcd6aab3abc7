"""An interactive explorer of gradient-flow end points that works on the static site.

:func:`explorer_data` turns a grid of runs into plain columns (one row per run: its
setting, class, loss and cosines with the teacher neurons); :func:`explorer_html` draws
them with Bokeh as a figure whose controls (activation, initialization, k, n, seed) run in
the reader's browser, without a kernel or a server. BokehJS is embedded in the returned
HTML (``bokeh.resources.INLINE``), so the page also works offline. Bokeh is an optional
dependency (extra ``book``); only :func:`explorer_html` imports it.
"""

from __future__ import annotations

import numpy as np

from .classify import CA_OPTIMUM, NOT_CONVERGED, OTHER, OTHER_CA, PERTURBED_COPY
from .configurations import signed_cosines

__all__ = ["explorer_data", "explorer_html", "EXPLORER_COLORS", "OTHER_COLOR", "INIT_NAMES",
           "DECIMALS"]

#: Colour of each end-point class (matplotlib's C0-C3, as in the book's figures).
EXPLORER_COLORS = {CA_OPTIMUM: "#1f77b4", OTHER_CA: "#ff7f0e", PERTURBED_COPY: "#2ca02c",
                   OTHER: "#d62728"}
#: Colour of runs that did not converge (and of any other label).
OTHER_COLOR = "#7f7f7f"
#: How the initializations are named in the controls.
INIT_NAMES = {"gaussian": "Gaussian, std 0.1", "glorot": "Glorot"}
#: Decimals kept of the cosines (the page's weight grows with them).
DECIMALS = 3


def explorer_data(specs, results, table) -> dict:
    """One row per run, as plain lists (what the page embeds).

    Parameters
    ----------
    specs : sequence of RunSpec
        Runs on unit-orthonormal teachers (``spec.teacher()``).
    results : sequence of FlowResult
        Their end points (``a``, ``W``).
    table : DataFrame
        :func:`copyaverage.experiments.summarize` of the same runs (``label``, ``loss``,
        ``converged``).

    Returns
    -------
    dict of lists
        ``activation``, ``init``, ``k``, ``n``, ``seed``, ``label``, ``loss``,
        ``converged`` and ``cosines``: the n x k matrix of signed cosines
        sign(a_i) w_i . v_j / norm(w_i) of the end point, row by row (as in
        :func:`copyaverage.configurations.signed_cosines`, 0 for a neuron with w_i = 0), rounded to
        :data:`DECIMALS` decimals.
    """
    specs, results = list(specs), list(results)
    if not (len(specs) == len(results) == len(table)):
        raise ValueError(f"specs, results and table must have the same length, got "
                         f"{len(specs)}, {len(results)} and {len(table)}")
    unknown = sorted({s.init for s in specs} - set(INIT_NAMES))
    if unknown:
        raise ValueError(f"unknown initialization {unknown}; allowed: {sorted(INIT_NAMES)}")
    out = {key: [] for key in ("activation", "init", "k", "n", "seed", "label", "loss",
                               "converged", "cosines")}
    for spec, result, row in zip(specs, results, table.itertuples(index=False)):
        if (row.k, row.n, row.seed) != (spec.k, spec.n, spec.seed):
            raise ValueError(f"table row {(row.k, row.n, row.seed)} is not the run "
                             f"{(spec.k, spec.n, spec.seed)}")
        u = signed_cosines(result.a, result.W, spec.teacher())
        out["activation"].append(spec.activation)
        out["init"].append(spec.init)
        out["k"].append(int(spec.k))
        out["n"].append(int(spec.n))
        out["seed"].append(int(spec.seed))
        out["label"].append(str(row.label))
        out["loss"].append(float(row.loss))
        out["converged"].append(bool(row.converged))
        out["cosines"].append(np.round(u, DECIMALS).ravel().tolist())
    return out


# The browser side: one callback for every control. ``runs`` holds every run, ``pts``
# the runs of the chosen (activation, init, k, n), ``cells`` the cosines of the chosen
# seed, ``curve`` the exact losses of the chosen k (erf), ``mark`` the chosen n on it.
_CALLBACK = """
const R = runs.data;
const act = act_select.value, init = init_select.value;
const key = act + "|" + init;
const ks = valid_k[key] || [];
let k = parseInt(k_select.value);
if (!ks.includes(k)) { k = ks.reduce((b, x) => Math.abs(x - k) < Math.abs(b - k) ? x : b, ks[0]); }
const k_options = ks.map(String);
if (JSON.stringify(k_select.options) !== JSON.stringify(k_options)) { k_select.options = k_options; }
if (k_select.value !== String(k)) { k_select.value = String(k); }
const n_options = Array.from({length: k - 1}, (_, i) => String(i + 1));
let n = parseInt(n_select.value);
if (!(n >= 1 && n <= k - 1)) { n = Math.min(Math.max(1, n || 1), k - 1); }
if (JSON.stringify(n_select.options) !== JSON.stringify(n_options)) { n_select.options = n_options; }
if (n_select.value !== String(n)) { n_select.value = String(n); }
const seed = seed_slider.value;
const P = {seed: [], loss: [], label: [], color: [], size: []};
let chosen = -1;
const counts = {};
for (let i = 0; i < R.k.length; i++) {
  if (R.activation[i] !== act || R.init[i] !== init || R.k[i] !== k || R.n[i] !== n) continue;
  P.seed.push(R.seed[i]); P.loss.push(R.loss[i]);
  const lab = R.converged[i] ? R.label[i] : not_converged;
  P.label.push(lab); P.color.push(colors[lab] || other_color);
  P.size.push(R.seed[i] === seed ? 16 : 9);
  counts[lab] = (counts[lab] || 0) + 1;
  if (R.seed[i] === seed) chosen = i;
}
pts.data = P;
// the loss axis spans at least a factor of 10, so that seeds ending at the same minimum
// do not leave a zoomed-in axis whose tick labels all print the same value
const pos = P.loss.filter(v => v > 0);
if (pos.length) {
  const lo = Math.min(...pos), hi = Math.max(...pos);
  const g = Math.sqrt(lo * hi), f = Math.max(Math.sqrt(10), Math.sqrt(hi / lo) * 1.3);
  loss_range.start = g / f; loss_range.end = g * f;
}
const C = {i: [], j: [], u: []};
if (chosen >= 0) {
  const u = R.cosines[chosen];
  for (let a = 0; a < n; a++) for (let b = 0; b < k; b++) {
    C.i.push(String(a + 1)); C.j.push(String(b + 1)); C.u.push(u[a * k + b]);
  }
}
heat.x_range.factors = Array.from({length: k}, (_, b) => String(b + 1));
heat.y_range.factors = Array.from({length: n}, (_, a) => String(a + 1)).reverse();
cells.data = C;
const T = exact[String(k)];
// (an empty log axis would make BokehJS warn: without curves the panel is hidden)
trans.visible = act === "erf" && T !== undefined;
if (trans.visible) {
  curve.data = {n: T.n, ca: T.ca, pc: T.pc};
  const at = T.n.indexOf(n);
  mark.data = {n: [n, n], loss: [T.ca[at], T.pc[at]]};
}
const parts = Object.keys(counts).sort().map(l => counts[l] + " " + l);
const title = act + ", " + init_names[init] + ", k = " + k + ", n = " + n;
info.text = "<b>" + title + "</b>: " + P.seed.length + " runs (" + parts.join(", ") + ")."
  + (chosen >= 0 ? " Seed " + seed + ": loss " + R.loss[chosen].toExponential(3)
     + ", " + (R.converged[chosen] ? R.label[chosen] : not_converged) + "." : "")
  + (trans.visible ? "" : " Exact curves: erf only, k >= 3.");
"""


def explorer_html(data: dict, exact: dict | None = None, *, width: int = 680) -> str:
    """The explorer as an HTML fragment (BokehJS inline, then the figure).

    Parameters
    ----------
    data : dict
        :func:`explorer_data` of the runs to explore.
    exact : dict, optional
        k -> :func:`copyaverage.exact_transition.transition` table (erf) of that k: the
        losses of the CA optimum and of the perturbed copy against n, drawn for the
        chosen k.
    width : int
        Width in pixels (the book's text column is about 680 px).

    Returns
    -------
    str
        HTML: the inline BokehJS scripts, the figure's script and its div. The models
        a test can drive are named ``activation``, ``init``, ``k``, ``n``, ``seed``
        (controls), ``points`` (the runs shown), ``cosines`` (the chosen seed's
        cosines) and ``info`` (the sentence above the figures).
    """
    from bokeh.document import Document
    from bokeh.embed import components
    from bokeh.layouts import column, row
    from bokeh.models import (BasicTicker, ColorBar, ColumnDataSource, CustomJS, Div,
                              FactorRange, HoverTool, LinearColorMapper, PrintfTickFormatter,
                              Range1d, Select, SingleIntervalTicker, Slider)
    from bokeh.palettes import RdBu11
    from bokeh.plotting import figure
    from bokeh.resources import Resources

    if not data.get("k"):
        raise ValueError("data holds no runs")
    settings = sorted({(a, i) for a, i in zip(data["activation"], data["init"])})
    valid_k = {f"{a}|{i}": sorted({k for k, a2, i2 in zip(data["k"], data["activation"],
                                                              data["init"])
                                   if (a2, i2) == (a, i)})
               for a, i in settings}
    act0, init0 = settings[0]
    ks0 = valid_k[f"{act0}|{init0}"]
    k0 = ks0[len(ks0) // 2]  # a middle width to start with; n = k / 2
    n0 = max(1, k0 // 2)
    seeds = sorted(set(data["seed"]))
    exact = {} if exact is None else exact
    exact_cols = {str(k): dict(n=t.n.astype(int).tolist(), ca=t.ca_loss.tolist(),
                               pc=t.pc_loss.tolist()) for k, t in exact.items()}

    # The first setting is drawn here (the browser redraws on every change): a log axis
    # without data would make BokehJS warn that it cannot set its range.
    first = [i for i in range(len(data["k"]))
             if (data["activation"][i], data["init"][i], data["k"][i], data["n"][i])
             == (act0, init0, k0, n0)]
    labels = [data["label"][i] if data["converged"][i] else NOT_CONVERGED for i in first]
    runs = ColumnDataSource(data)
    pts = ColumnDataSource(dict(seed=[data["seed"][i] for i in first],
                                loss=[data["loss"][i] for i in first], label=labels,
                                color=[EXPLORER_COLORS.get(x, OTHER_COLOR) for x in labels],
                                size=[16 if data["seed"][i] == seeds[0] else 9
                                      for i in first]),
                           name="points")
    cells = ColumnDataSource(dict(i=[], j=[], u=[]), name="cosines")
    curve0 = exact_cols.get(str(k0)) if act0 == "erf" else None
    if curve0 is None:
        raise ValueError(f"the first setting ({act0}, k = {k0}) needs its exact curve: "
                         f"pass exact[{k0}]")
    curve = ColumnDataSource(curve0)
    at = curve0["n"].index(n0)
    mark = ColumnDataSource(dict(n=[n0, n0], loss=[curve0["ca"][at], curve0["pc"][at]]))

    act_select = Select(title="activation", name="activation", value=act0,
                        options=sorted({a for a, _ in settings}), width=100)
    init_select = Select(title="initialization", name="init", value=init0,
                         options=[(i, INIT_NAMES[i]) for i in sorted({i for _, i in settings})],
                         width=150)
    k_select = Select(title="teacher neurons k", name="k", value=str(k0),
                      options=[str(k) for k in valid_k[f"{act0}|{init0}"]], width=110)
    n_select = Select(title="student neurons n", name="n", value=str(n0),
                      options=[str(n) for n in range(1, k0)], width=110)
    seed_slider = Slider(title="seed", name="seed", start=seeds[0], end=seeds[-1], step=1,
                         value=seeds[0], width=140)
    info = Div(name="info", width=width)

    tools = "pan,box_zoom,reset,save"
    left = figure(width=width, height=230, y_axis_type="log", tools=tools,
                  x_axis_label="seed", y_axis_label="loss at the end point",
                  title="End points of the chosen setting (colour: class)")
    left.scatter("seed", "loss", source=pts, color="color", size="size", alpha=0.85)
    left.x_range = Range1d(seeds[0] - 0.5, seeds[-1] + 0.5)
    left.y_range = Range1d(1e-3, 1.0)  # set by the callback for each setting
    left.xaxis.ticker = SingleIntervalTicker(interval=1)
    left.yaxis.formatter = PrintfTickFormatter(format="%.6g")
    left.add_tools(HoverTool(tooltips=[("seed", "@seed"), ("loss", "@loss{0.000e}"),
                                       ("class", "@label")]))
    half = (width - 10) // 2
    mapper = LinearColorMapper(palette=RdBu11[::-1], low=-1.0, high=1.0)
    heat = figure(width=half, height=260, tools="save", x_range=FactorRange("1"),
                  y_range=FactorRange("1"), x_axis_label="teacher neuron j",
                  y_axis_label="student neuron i", title="signed cosines (chosen seed)")
    heat.rect("j", "i", 1, 1, source=cells, fill_color={"field": "u", "transform": mapper},
              line_color=None)
    heat.add_tools(HoverTool(tooltips=[("i", "@i"), ("j", "@j"), ("cosine", "@u")]))
    heat.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=5),
                             width=8), "right")
    trans = figure(width=half, height=260, y_axis_type="log", tools=tools,
                   x_axis_label="student neurons n", y_axis_label="loss",
                   title="erf: exact losses for the chosen k")
    trans.line("n", "ca", source=curve, color=EXPLORER_COLORS[CA_OPTIMUM],
               legend_label="CA optimum", line_width=2)
    trans.line("n", "pc", source=curve, color=EXPLORER_COLORS[PERTURBED_COPY],
               legend_label="perturbed copy", line_width=2)
    trans.scatter("n", "loss", source=mark, color="black", size=7)
    trans.legend.location = "bottom_left"
    for fig in (left, heat, trans):
        for ax in (*fig.xaxis, *fig.yaxis):
            ax.axis_label_text_font_size = "12px"
            ax.major_label_text_font_size = "11px"
        fig.title.text_font_size = "12px"

    args = dict(runs=runs, pts=pts, loss_range=left.y_range, cells=cells, curve=curve,
                mark=mark, heat=heat, trans=trans, act_select=act_select,
                init_select=init_select, k_select=k_select, n_select=n_select, seed_slider=seed_slider, info=info, valid_k=valid_k,
                exact=exact_cols, colors=EXPLORER_COLORS, other_color=OTHER_COLOR,
                not_converged=NOT_CONVERGED,
                init_names=INIT_NAMES)
    callback = CustomJS(args=args, code=_CALLBACK)
    for widget in (act_select, init_select, k_select, n_select):
        widget.js_on_change("value", callback)
    seed_slider.js_on_change("value", callback)
    layout = column(row(act_select, init_select, k_select, n_select, seed_slider), info,
                    left, row(heat, trans))
    doc = Document()
    doc.add_root(layout)
    doc.js_on_event("document_ready", callback)  # draws the first setting
    script, div = components(layout)
    # BokehJS and its widgets only (1.7 MB; the default set adds 2.3 MB of MathJax,
    # WebGL and tables, which the explorer does not use)
    bokehjs = Resources(mode="inline", components=["bokeh", "bokeh-widgets"])
    return bokehjs.render_js() + script + div
