"""The API reference page (book/api.md) covers the library's public names.

autodoc writes the entries when the book is built; these tests check, without a
build, that the page asks for every module and every top-level name, and that
nothing public is left out silently (autodoc skips members without a docstring and
those named in ``:exclude-members:``). When a built book is present, the last test
also checks the HTML for an entry of every public function and class.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import copyaverage

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "api.md"
BUILT = ROOT / "_build" / "html" / "book" / "api.html"

MODULES = sorted(m.name for m in pkgutil.iter_modules(copyaverage.__path__)
                 if not m.name.startswith("_"))


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _automodule_blocks(text: str) -> dict[str, list[str]]:
    """Module name -> option lines of its ``.. automodule::`` directive."""
    blocks = {}
    for match in re.finditer(r"^\.\. automodule:: copyaverage\.(\w+)\n((?:   :.*\n)*)",
                             text, re.M):
        blocks[match.group(1)] = match.group(2).split("\n")
    return blocks


def _exclusions(options: list[str]) -> set[str]:
    for line in options:
        if line.strip().startswith(":exclude-members:"):
            return {n.strip() for n in line.split(":", 2)[2].split(",") if n.strip()}
    return set()


def _public_callables(module):
    """(name, object) for the functions and classes in the module's ``__all__``."""
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


def test_page_is_in_the_table_of_contents():
    assert "file: book/api" in (ROOT / "_toc.yml").read_text(encoding="utf-8")


def test_every_module_has_an_automodule_section_with_members():
    blocks = _automodule_blocks(_page())
    assert sorted(blocks) == MODULES
    for name, options in blocks.items():
        assert "   :members:" in options, name


def test_every_module_declares_its_public_names():
    for name in MODULES:
        module = importlib.import_module(f"copyaverage.{name}")
        assert isinstance(getattr(module, "__all__", None), list), name


def test_only_reexports_are_excluded():
    """An excluded name must be documented in the module that defines it."""
    blocks = _automodule_blocks(_page())
    for name, options in blocks.items():
        module = importlib.import_module(f"copyaverage.{name}")
        for excluded in _exclusions(options):
            obj = getattr(module, excluded)
            home = obj.__module__
            assert home != module.__name__, f"{name}.{excluded} is defined there"
            assert home.split(".")[-1] in blocks, f"{excluded} is documented nowhere"


def test_every_public_function_and_class_has_a_docstring():
    """autodoc leaves out members without a docstring (no :undoc-members:)."""
    missing = []
    for name in MODULES:
        module = importlib.import_module(f"copyaverage.{name}")
        missing += [f"{name}.{n}" for n, obj in _public_callables(module)
                    if not (obj.__doc__ or "").strip()]
    assert missing == []


def test_every_top_level_name_is_in_the_summary_table():
    text = _page()
    table = text[text.index(".. autosummary::"):]
    table = table[:table.index("```")]
    listed = set(re.findall(r"~copyaverage\.(\w+)\.(\w+)", table))
    expected = set()
    for name in copyaverage.__all__:
        obj = getattr(copyaverage, name)
        home = obj.__module__ if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
        if home is None:  # data: find the submodule that exports it
            home = next(f"copyaverage.{m}" for m in MODULES
                        if name in getattr(importlib.import_module(f"copyaverage.{m}"),
                                           "__all__", []))
        expected.add((home.split(".")[-1], name))
    assert listed == expected


@pytest.mark.skipif(not BUILT.exists(), reason="the book is not built (make book)")
def test_built_page_has_an_entry_for_every_public_function_and_class():
    html = BUILT.read_text(encoding="utf-8")
    ids = set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', html))
    missing = []
    for name in MODULES:
        module = importlib.import_module(f"copyaverage.{name}")
        for n, obj in _public_callables(module):
            if f"{obj.__module__}.{n}" not in ids:
                missing.append(f"{name}.{n}")
    assert missing == []
