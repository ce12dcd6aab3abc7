"""Package metadata: one version number, licenses present, citation file consistent.

The version lives in pyproject.toml only; copyaverage.__version__ reads it from the
installed metadata and CITATION.cff must repeat the same string (CFF cannot include
it). CITATION.cff is read with a line parser (no YAML library in the test extra).
"""

import re
import tomllib
from pathlib import Path

import copyaverage

ROOT = Path(__file__).resolve().parents[1]


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def cff_field(name: str) -> str:
    """A top-level scalar of CITATION.cff (quotes removed)."""
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    match = re.search(rf"^{name}:\s*(.+)$", text, re.M)
    assert match, f"CITATION.cff has no top-level {name!r}"
    return match.group(1).strip().strip('"')


def test_one_version_everywhere():
    version = pyproject()["version"]
    assert copyaverage.__version__ == version
    assert cff_field("version") == version, "bump CITATION.cff's version with pyproject.toml's"


def test_licenses_and_citation_metadata():
    project = pyproject()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Attribution 4.0 International" in (ROOT / "LICENSE-text").read_text(encoding="utf-8")
    assert cff_field("cff-version") == "1.2.0"
    cff = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert "  - MIT\n  - CC-BY-4.0\n" in cff
    assert "2311.01644" in cff  # the paper, under references:
    assert cff_field("repository-code") == project["urls"]["Source"]
    assert cff_field("url") == project["urls"]["Homepage"]
