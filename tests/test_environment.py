"""pyproject.toml and environment.yml must declare the same packages.

pip users install from pyproject.toml, conda users from environment.yml; a package
added to one file and forgotten in the other breaks one of the two routes silently.
The YAML is read with a small line parser so that this test needs nothing beyond the
standard library.
"""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Entries of environment.yml that are tools of the environment, not dependencies.
CONDA_ONLY = {"python", "pip"}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 form of a package name: lower case, runs of '-', '_', '.' as '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(spec: str) -> tuple[str, str]:
    """Split 'jupyter-book==1.0.4.post1' or 'numpy >=1.26' into (name, version spec).

    Extras ('pkg[cli]'), environment markers (after ';') and a conda channel prefix
    ('conda-forge::pkg') are dropped; the name is normalized.
    """
    spec = spec.split(";")[0].split("::")[-1].strip()
    match = _NAME.match(spec)
    if match is None:
        raise ValueError(f"cannot read a package name from {spec!r}")
    rest = re.sub(r"^\[[^\]]*\]", "", spec[match.end():].strip())
    return normalize(match.group(1)), rest.replace(" ", "")


def pyproject_requirements(text: str) -> dict[str, str]:
    """{name: version spec} of the runtime dependencies and of every optional extra."""
    project = tomllib.loads(text)["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return dict(split_requirement(s) for s in specs)


def environment_requirements(text: str) -> dict[str, str]:
    """{name: version spec} of the conda and pip entries under `dependencies:`.

    Reads only the block-list form that environment.yml uses: `- spec` items, with a
    nested `- pip:` list. Comments and pip options (`- -e .`) are skipped.
    """
    found: dict[str, str] = {}
    in_dependencies = False
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "-")):  # a new top-level key
            in_dependencies = line.startswith("dependencies:")
            continue
        item = line.strip()
        if not in_dependencies or not item.startswith("- "):
            continue
        item = item[2:].strip()
        if item.endswith(":") or item.startswith("-"):  # `- pip:` header, pip option
            continue
        name, version = split_requirement(item)
        if name not in CONDA_ONLY:
            found[name] = version
    return found


def test_parsers_read_both_formats():
    toml = (
        '[project]\nname = "x"\ndependencies = ["NumPy>=1.26", "a_b.c"]\n'
        '[project.optional-dependencies]\nbook = ["jupyter-book==1.0.4.post1"]\n'
    )
    yml = (
        "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n"
        "  - pip\n  - numpy>=1.26  # comment\n  - conda-forge::a-b-c\n"
        "  - pip:\n      - -e .\n      - jupyter_book==1.0.4.post1\n"
        "variables:\n  - not-a-package\n"
    )
    assert pyproject_requirements(toml) == {
        "numpy": ">=1.26",
        "a-b-c": "",
        "jupyter-book": "==1.0.4.post1",
    }
    assert environment_requirements(yml) == {
        "numpy": ">=1.26",
        "a-b-c": "",
        "jupyter-book": "==1.0.4.post1",
    }


def test_same_packages_in_pyproject_and_environment():
    pip = pyproject_requirements((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    conda = environment_requirements((ROOT / "environment.yml").read_text(encoding="utf8"))
    assert pip, "no dependencies found in pyproject.toml"
    only_pip = sorted(set(pip) - set(conda))
    only_conda = sorted(set(conda) - set(pip))
    assert not only_pip and not only_conda, (
        f"only in pyproject.toml: {only_pip}; only in environment.yml: {only_conda}"
    )


def test_exact_pins_agree():
    """An exact pin (e.g. jupyter-book 1.x, the theme) must be the same in both files."""
    pip = pyproject_requirements((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    conda = environment_requirements((ROOT / "environment.yml").read_text(encoding="utf8"))
    pinned = {name: spec for name, spec in pip.items() if spec.startswith("==")}
    assert "jupyter-book" in pinned
    for name, spec in pinned.items():
        assert conda.get(name) == spec, f"{name}: pyproject {spec}, environment.yml {conda.get(name)}"
