"""Figures and tables shared by the book's chapters (matplotlib; no computation here).

The book's figure style lives here, once: :func:`use_book_style` sets it (every page
calls it first) and :func:`glue_figure` checks that a finished figure keeps to it
before handing it to the page. A page column shows about 700 px, so a figure at most
:data:`FIGURE_WIDTH` inches wide is shown at (nearly) its own size, and text of at least
:data:`MIN_FONT_PT` points stays at least 10 pt on the reader's screen.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from .classify import CA_OPTIMUM, OTHER, OTHER_CA, PERTURBED_COPY

__all__ = ["CLASS_COLORS", "FIGURE_WIDTH", "MIN_FONT_PT", "BOOK_STYLE", "use_book_style",
           "check_figure", "glue_figure", "NEURON_STYLES", "TEACHER_COLORS",
           "overlap_trajectories", "norm_trajectories", "ordered_overlaps", "overlap_heatmap",
           "BOUNDARY_STYLES", "transition_map", "html_table", "checksum_table", "round_off", "Table"]

#: Widest figure in inches, the width of the book's text column (about 700 px).
FIGURE_WIDTH = 7.0
#: Smallest font size, in points, of any text in a figure.
MIN_FONT_PT = 10.0

#: matplotlib settings of every figure in the book.
BOOK_STYLE = {
    "figure.figsize": (FIGURE_WIDTH, 3.6),
    "figure.dpi": 150,            # crisp on high-density screens; shown at column width
    "savefig.dpi": "figure",
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "figure.titlesize": 11,
}

#: One colour per end-point class (:mod:`copyaverage.classify`), the same in every figure.
CLASS_COLORS = {CA_OPTIMUM: "C0", OTHER_CA: "C1", PERTURBED_COPY: "C2", OTHER: "C3"}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` (call once at the top of a page, before any figure); in a
    notebook, also give pandas' styled tables a plain-text form (``Styler.to_string``),
    which is what the book's PDF shows where the web book shows the HTML table."""
    mpl.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's packages
        return
    shell = get_ipython()
    if shell is not None:
        from pandas.io.formats.style import Styler

        plain = shell.display_formatter.formatters["text/plain"]
        plain.for_type(Styler, lambda styler, printer, cycle: printer.text(styler.to_string()))


def check_figure(fig) -> None:
    """Raise ``ValueError`` if ``fig`` is wider than the column or has text that is too small.

    Checks the figure width against :data:`FIGURE_WIDTH` and every visible text (titles,
    labels, tick labels, legends, annotations, colour bars) against
    :data:`MIN_FONT_PT`; the message names each offending text.
    """
    width = float(fig.get_size_inches()[0])
    problems = []
    if width > FIGURE_WIDTH + 1e-9:
        problems.append(f"figure is {width:.2f} in wide (at most {FIGURE_WIDTH} in)")
    fig.canvas.draw()  # tick labels exist only once drawn
    small = sorted({(t.get_text(), t.get_fontsize()) for t in fig.findobj(mpl.text.Text)
                    if t.get_visible() and t.get_text().strip()
                    and t.get_fontsize() < MIN_FONT_PT - 1e-9}, key=lambda x: x[1])
    problems += [f"text {text!r} is {size:g} pt (at least {MIN_FONT_PT:g} pt)"
                 for text, size in small[:10]]
    if len(small) > 10:
        problems.append(f"... and {len(small) - 10} more texts below {MIN_FONT_PT:g} pt")
    if problems:
        raise ValueError("figure does not keep to the book's style: " + "; ".join(problems))


def glue_figure(name: str, fig) -> None:
    """Check ``fig`` (:func:`check_figure`), glue it under ``name`` for the page, close it."""
    from myst_nb import glue  # the book's dependency, not the library's

    check_figure(fig)
    glue(name, fig, display=False)
    plt.close(fig)


#: Line style of student neuron i in trajectory panels (cycled).
NEURON_STYLES = ("-", "--", ":", "-.")
#: Colour of teacher neuron j in trajectory panels (cycled; not a class colour).
TEACHER_COLORS = ("tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink", "tab:gray")


def _positive_times(result):
    traj = result.trajectory
    keep = traj.t > 0
    return traj, keep, traj.t[keep]


def overlap_trajectories(ax, result, teacher, flip_negative: bool = False):
    """The cosines ``u_ij(t) = w_i . v_j / |w_i|`` along the flow, against log t.

    One line per (student neuron i, teacher neuron j): the colour names j
    (:data:`TEACHER_COLORS`), the line style i (:data:`NEURON_STYLES`). Needs a result
    recorded with ``record_parameters=True``. ``flip_negative`` draws a neuron that ends
    with a_i < 0 as -w_i (the same function for an odd activation).
    """
    traj, keep, t = _positive_times(result)
    n = result.n
    W = traj.W(n)[keep]
    if flip_negative:
        W = np.where(result.a < 0, -1.0, 1.0)[None, :, None] * W
    norms = np.linalg.norm(W, axis=2, keepdims=True)
    U = (W / np.where(norms > 0, norms, 1.0)) @ teacher.V.T  # (m, n, k)
    for i in range(n):
        for j in range(teacher.k):
            ax.plot(t, U[:, i, j], color=TEACHER_COLORS[j % len(TEACHER_COLORS)],
                    ls=NEURON_STYLES[i % len(NEURON_STYLES)], lw=1.3)
    ax.set(xscale="log", xlabel="flow time t", ylabel=r"cosine $u_{ij}$", ylim=(-1.05, 1.05))
    return ax


def norm_trajectories(ax, result):
    """``|a_i|`` (black) and ``|w_i|`` (grey) along the flow, against log t.

    The line style names the student neuron, as in :func:`overlap_trajectories`.
    """
    traj, keep, t = _positive_times(result)
    n = result.n
    A = np.abs(traj.a(n)[keep])
    Wn = np.linalg.norm(traj.W(n)[keep], axis=2)
    for i in range(n):
        ls = NEURON_STYLES[i % len(NEURON_STYLES)]
        ax.plot(t, A[:, i], color="k", ls=ls, lw=1.3)
        ax.plot(t, Wn[:, i], color="0.6", ls=ls, lw=1.3)
    ax.set(xscale="log", xlabel="flow time t", ylabel="norm")
    return ax


def ordered_overlaps(U) -> np.ndarray:
    """Rows and columns of an overlap matrix ``U`` (n, k) reordered to show its structure.

    Rows are sorted by the teacher neuron each student neuron overlaps most; columns list
    those teacher neurons first, in row order (so copies sit on the diagonal), then the
    teacher neurons no student neuron overlaps most, in their original order.
    """
    U = np.asarray(U, dtype=float)
    if U.ndim != 2:
        raise ValueError(f"U must be an (n, k) matrix of overlaps, got shape {U.shape}")
    top = np.argmax(U, axis=1)
    rows = np.argsort(top, kind="stable")
    first = list(dict.fromkeys(top[rows]))
    cols = first + [j for j in range(U.shape[1]) if j not in set(first)]
    return U[rows][:, cols]


def overlap_heatmap(ax, W, teacher, title="", signs=None):
    """Panel A2: the overlaps ``u_ij = w_i . v_j / |w_i|`` of the end point, annotated.

    ``signs`` (n,) multiplies each row (e.g. the signs of a_i, for odd activations).
    """
    if signs is not None:
        W = np.asarray(signs, dtype=float)[:, None] * W
    norms = np.linalg.norm(W, axis=1)
    U = (W @ teacher.V.T) / np.where(norms > 0, norms, 1.0)[:, None]
    ax.imshow(U, cmap="RdBu_r", vmin=-1, vmax=1)
    for (i, j), u in np.ndenumerate(U):
        ax.text(j, i, f"{u if abs(u) >= 5e-4 else 0.0:.3f}", ha="center", va="center", fontsize=MIN_FONT_PT,
                color="w" if abs(u) > 0.6 else "k")
    ax.set_xticks(range(teacher.k), [f"$v_{j + 1}$" for j in range(teacher.k)])
    ax.set_yticks(range(len(W)), [f"$w_{i + 1}$" for i in range(len(W))])
    ax.set_title(title)
    return ax



#: How :func:`transition_map` draws each exact boundary, as (column, label, line style).
BOUNDARY_STYLES = (
    ("pc_minimum", "perturbed copy becomes a minimum", dict(color="0.15", ls="-")),
    ("loss_crossing", "both losses equal", dict(color="0.15", ls="--")),
    ("ca_saddle", "CA optimum becomes a saddle", dict(color="0.15", ls=":")),
)
_SWITCH_MARKERS = ("o", "s", "^", "D", "v", "P")


def transition_map(ax, boundaries, switches):
    """Where the solution changes, as a fraction n/k of the teacher width, against k.

    ``boundaries``: from :func:`copyaverage.basins.exact_boundaries` (lines,
    :data:`BOUNDARY_STYLES`). ``switches``: a DataFrame with columns ``k``, ``n`` (the
    measured majority switch) and ``start`` (how the runs were initialized; one marker
    per start, in order of first appearance). Starts that share a k are drawn side by
    side, slightly apart, so that they do not hide each other.
    """
    for column, label, style in BOUNDARY_STYLES:
        line = boundaries[column].dropna()
        ax.plot(line.index, line.to_numpy(), lw=1.4, label=label, **style)
    starts = list(dict.fromkeys(switches.start))
    for i, start in enumerate(starts):
        part = switches[switches.start == start]
        shift = 1.035 ** (i - (len(starts) - 1) / 2)  # side by side at a shared k
        ax.plot(part.k * shift, part.n / part.k, ls="", marker=_SWITCH_MARKERS[i % 6], ms=6,
                mfc="none" if i else "k", color="k" if i == 0 else f"C{4 + i % 6}",
                label=f"majority switch, {start}")
    ks = sorted(set(boundaries.index) | set(switches.k))
    ticks = [t for t in (2, 3, 5, 10, 20, 30, 50, 70, 100, 200, 500) if ks[0] <= t <= ks[-1]]
    ax.set(xscale="log", xlabel="teacher width $k$", ylabel="student width $n/k$", ylim=(0, 1))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    return ax


class Table:
    """A table for a page to display: HTML in the web book, the same table as plain text
    where no HTML is drawn (the book's PDF, a terminal)."""

    def __init__(self, html: str, text: str):
        self.html, self.text = html, text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def html_table(df, formats=None, *, breakable: bool = False) -> Table:
    """A data frame as a table without its index, for a page to display (:class:`Table`).

    ``formats``: column name -> format string, e.g. ``{"loss": "{:.6f}"}``, or a function
    of the value returning its text.
    ``breakable``: long unbroken values (checksums, paths) may wrap anywhere, so that
    the table fits the text column (the book's CSS, class ``breakable``); numbers in
    other tables never wrap inside.
    """
    formatters = {col: fmt if callable(fmt) else fmt.format
                  for col, fmt in (formats or {}).items()}
    classes = "breakable" if breakable else None
    return Table(df.to_html(index=False, formatters=formatters, border=0, classes=classes),
                 df.to_string(index=False, formatters=formatters))


def round_off(floor: float):
    """A number formatter for tables: values of magnitude below ``floor`` (round-off, of
    either sign) print as "< floor", the others in ``.1e`` notation."""
    if not (isinstance(floor, float) and floor > 0):
        raise ValueError(f"floor must be a positive float, got {floor!r}")

    def text(value) -> str:
        return f"< {floor:.0e}" if abs(value) < floor else f"{value:.1e}"

    return text


def checksum_table(paths) -> Table:
    """Experiment (folder), file, size in MB and SHA-256 of each file, as a :class:`Table`.

    What ``sha256sum`` prints for a download of the same file.
    """
    import pandas as pd

    from .experiments import file_sha256

    rows = [{"experiment": p.parent.name, "file": p.name, "MB": p.stat().st_size / 1e6,
             "SHA-256": file_sha256(p)} for p in map(Path, paths)]
    return html_table(pd.DataFrame(rows), {"MB": "{:.2f}"}, breakable=True)