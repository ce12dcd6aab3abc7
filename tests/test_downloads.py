"""Every committed experiment can be downloaded from the book.

Each experiment of ``experiments.EXPERIMENTS`` has its three files (summary table,
end points, provenance) offered by ``{download}`` links on some page, and every
``{download}`` link of the book points at a file that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from copyaverage.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
FILES = ("summary.csv", "endpoints.npz", "meta.json")
LINK = re.compile(r"\{download\}`[^`<]*<([^>`]+)>`")


def _links() -> dict[Path, list[Path]]:
    """Page -> resolved targets of its download links."""
    return {page: [(page.parent / target).resolve() for target in LINK.findall(page.read_text())]
            for page in sorted((ROOT / "book").glob("*.md"))}


def test_every_download_link_points_at_a_file():
    missing = [f"{page.name}: {target}" for page, targets in _links().items()
               for target in targets if not target.is_file()]
    assert missing == []


def test_every_committed_experiment_is_downloadable():
    offered = {target for targets in _links().values() for target in targets}
    expected = {(ROOT / "results" / name / f).resolve() for name in EXPERIMENTS for f in FILES}
    assert expected - offered == set()


def test_link_pattern_reads_the_myst_role():
    text = "a {download}`summary.csv <../results/x/summary.csv>` b"
    assert LINK.findall(text) == ["../results/x/summary.csv"]
