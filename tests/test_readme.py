"""The README's badges and addresses agree with _config.yml and the CI workflow."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG = (ROOT / "_config.yml").read_text(encoding="utf-8")  # read with regexes: no YAML dependency


def _setting(key: str) -> str:
    """The value of an indented ``key: value`` line of _config.yml."""
    return re.search(rf"^\s+{key}:\s*(\S+)", CONFIG, re.M).group(1)


REPO = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", _setting("url"))


def test_ci_badge_names_the_workflow_of_this_repository():
    owner, name = REPO.groups()
    pattern = rf"https://github\.com/{owner}/{name}/actions/workflows/([\w.-]+)/badge\.svg"
    badges = re.findall(pattern, README)
    assert badges and all((ROOT / ".github" / "workflows" / b).is_file() for b in badges)


def test_binder_badge_opens_this_repository_on_its_branch():
    owner, name = REPO.groups()
    binder = f"{_setting('binderhub_url')}/v2/gh/{owner}/{name}/{_setting('branch')}"
    assert binder in README


def test_published_address_follows_the_github_pages_convention():
    owner, name = REPO.groups()
    address = f"https://{owner}.github.io/{name}/"
    assert address in README
    assert address in (ROOT / "CITATION.cff").read_text(encoding="utf-8")
