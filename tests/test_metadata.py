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


def _documented(section: str) -> set[str]:
    """Names in the first column (`name`) of the tables under a heading of results/README.md."""
    text = (ROOT / "results" / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", body, re.M))


def test_results_readme_documents_every_column_and_key(tmp_path):
    """The data dictionary names exactly the columns and keys the code writes."""
    import json

    import numpy as np
    import pandas as pd

    from copyaverage.experiments import EXPERIMENTS, SampleExperiment, summarize
    from copyaverage.sweep import grid, sweep

    specs = grid("erf", 3, [1], [0])
    written = list(summarize(specs, sweep(specs, store=tmp_path, n_jobs=1, progress=False)).columns)
    assert _documented("`summary.csv`") == set(written)
    assert _documented("`endpoints.npz`") == {"a_i", "W_i"}
    from copyaverage.experiments import provenance

    assert set(provenance()) <= _documented("`meta.json`")
    for name in EXPERIMENTS:
        d = ROOT / "results" / name
        columns = list(pd.read_csv(d / "summary.csv", nrows=1).columns)
        if isinstance(EXPERIMENTS[name], SampleExperiment):
            extra = _documented("`erf_samples/`: full-batch flows on finite samples")
            assert set(columns) == set(written) | extra and len(columns) == len(set(columns))
        else:
            assert columns == written
        meta = json.loads((d / "meta.json").read_text())
        # git_commit is written since 2026-12-02: absent from the experiments before
        assert set(meta) <= _documented("`meta.json`") <= set(meta) | {"git_commit"}
        with np.load(d / "endpoints.npz") as z:
            assert {re.sub(r"_\d+$", "_i", f) for f in z.files} == {"a_i", "W_i"}
        assert f"`{name}/`" in (ROOT / "results" / "README.md").read_text(encoding="utf-8")
