"""The book's pages as source: code fits the column, figures go through the style check."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
PAGES = sorted(BOOK.glob("*.md"))
#: Longest code line; _static/book.css sizes code so that this many characters fit the
#: text column (the browser check of `make test-book` measures it).
MAX_LINE = 88
#: Most non-blank lines a code cell may show; longer cells are collapsed (hide-input or
#: hide-cell: the reader opens them with one click) or their helpers live in the library.
MAX_VISIBLE_LINES = 15
_HIDING = {"hide-input", "hide-cell", "remove-input", "remove-cell"}


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_code_lines_fit_the_column(page):
    long = [(i, len(line)) for cell in jupytext.read(page).cells if cell.cell_type == "code"
            for i, line in enumerate(cell.source.split("\n")) if len(line) > MAX_LINE]
    assert not long, f"{page.name}: {len(long)} code lines longer than {MAX_LINE} characters"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_long_code_cells_are_collapsed(page):
    walls = [cell.source.split("\n", 1)[0][:40] for cell in jupytext.read(page).cells
             if cell.cell_type == "code"
             and not _HIDING & set(cell.metadata.get("tags", []))
             and sum(1 for line in cell.source.split("\n") if line.strip())
             > MAX_VISIBLE_LINES]
    assert not walls, (f"{page.name}: code cells of more than {MAX_VISIBLE_LINES} lines "
                       f"shown in full: {walls}")


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_pages_glue_figures_through_the_check(page):
    """A page that draws a figure calls use_book_style and glues every figure with
    glue_figure (so the build fails on a figure that is too wide or has small text)."""
    text = page.read_text()
    if "plt." not in text and "figsize" not in text:
        return
    assert "use_book_style()" in text, f"{page.name} draws figures without use_book_style()"
    direct = re.findall(r"\bglue\(\s*[\"'][^\"']+[\"']\s*,\s*(fig\w*)\b", text)
    assert not direct, f"{page.name} glues {direct} with glue(); use plots.glue_figure"
