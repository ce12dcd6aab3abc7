"""The book's pages as source: code fits the column."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
PAGES = sorted(BOOK.glob("*.md"))
#: Longest code line; _static/book.css sizes code so that this many characters fit the
#: text column (the browser check of `make test-book` measures it).
MAX_LINE = 88


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_code_lines_fit_the_column(page):
    long = [(i, len(line)) for cell in jupytext.read(page).cells if cell.cell_type == "code"
            for i, line in enumerate(cell.source.split("\n")) if len(line) > MAX_LINE]
    assert not long, f"{page.name}: {len(long)} code lines longer than {MAX_LINE} characters"
