"""scripts/execute_pages.py: the pages it executes and when it executes them again."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ep():
    spec = importlib.util.spec_from_file_location("execute_pages",
                                                  ROOT / "scripts" / "execute_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_of_the_book_is_in_the_toc(ep):
    pages = ep.toc_pages()
    assert pages[0] == "book/intro" and len(pages) == len(set(pages))
    on_disk = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.md")}
    assert set(pages) == on_disk
    assert set(ep.RUN_LAST) <= set(pages)


def test_cache_key_ignores_prose_but_not_code(ep, tmp_path):
    jupyter_cache = pytest.importorskip("jupyter_cache")
    cache = jupyter_cache.get_cache(str(tmp_path / "cache"))
    text = (ROOT / "book" / "setting.md").read_text()
    key = cache.create_hashed_notebook(ep.read_page(ROOT / "book" / "setting.md"))[1]
    prose = tmp_path / "prose.md"
    prose.write_text(text.replace("\n# ", "\nSome new sentence.\n\n# ", 1))
    code = tmp_path / "code.md"
    code.write_text(text.replace("```{code-cell} ipython3\n", "```{code-cell} ipython3\n1\n", 1))
    assert prose.read_text() != text and code.read_text() != text
    assert cache.create_hashed_notebook(ep.read_page(prose))[1] == key
    assert cache.create_hashed_notebook(ep.read_page(code))[1] != key


def test_inputs_digest_is_deterministic_and_covers_the_library(ep):
    assert ep.inputs_digest() == ep.inputs_digest()
    assert "lib/copyaverage" in ep.INPUTS and "results" in ep.INPUTS


def test_bad_jobs_is_rejected(ep, capsys):
    with pytest.raises(SystemExit) as exit_:
        ep.main(["--jobs", "0"])
    assert exit_.value.code == 2 and "--jobs must be at least 1" in capsys.readouterr().err


def test_a_docstring_edit_does_not_change_the_digest(ep, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    module = lib / "m.py"
    module.write_text('def f():\n    """Old words."""\n    return 1\n')
    monkeypatch.setattr(ep, "ROOT", tmp_path)
    monkeypatch.setattr(ep, "INPUTS", ("lib",))
    (tmp_path / "book").mkdir()
    before = ep.inputs_digest()
    module.write_text('def f():\n    """New words."""\n    return 1  # a comment\n')
    assert ep.inputs_digest() == before
    module.write_text('def f():\n    """New words."""\n    return 2\n')
    assert ep.inputs_digest() != before


def test_declared_packages_only(ep):
    packages = ep.page_packages()
    for name in ("numpy", "scipy", "autograd", "jupyter-book", "bokeh"):
        assert packages[name] is not None
    assert "playwright" not in packages and "pytest" not in packages


def test_quick_mode_is_refused(ep, capsys, monkeypatch):
    monkeypatch.setenv("COPYAVERAGE_QUICK", "1")
    with pytest.raises(SystemExit) as exc:
        ep.main(["--jobs", "1"])
    assert exc.value.code == 2 and "re-runs the full samples" in capsys.readouterr().err


def test_the_digest_reads_the_package_not_pips_egg_info(ep):
    assert "lib/copyaverage" in ep.INPUTS and "lib" not in ep.INPUTS
