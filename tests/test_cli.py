"""The ``copyaverage`` command line: bad options refused before any run, exit statuses,
the CSV table against the stored runs, verification of committed results, and the
console script of a non-editable install."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from copyaverage.cli import main
from copyaverage.experiments import export_endpoints
from copyaverage.store import ResultStore, code_hash
from copyaverage.sweep import grid, sweep

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["sweep", "--k", "3", "--n", "2", "--jobs", "1", "--no-progress"]


@pytest.mark.parametrize("bad, message", [
    (["--jobs", "0"], "--jobs: must be >= 1, or -1"),
    (["--jobs", "-2"], "--jobs: must be >= 1, or -1"),
    (["--method", "nope"], "--method: invalid choice: 'nope'"),
    (["--tol", "nan"], "--tol: must be a finite number > 0"),
    (["--tol", "0"], "--tol: must be a finite number > 0"),
    (["--std", "-1"], "--std: must be a finite number > 0"),
    (["--max-time", "inf"], "--max-time: must be a finite number > 0"),
    (["--backend", "foo"], "--backend: invalid choice: 'foo'"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --backend dask"),
    (["--activation", "swish"], "--activation: invalid choice: 'swish'"),
    (["--init", "he"], "--init: invalid choice: 'he'"),
    (["--seeds", "-1"], "--seeds: -1 in '-1' is below 0"),
    (["--d", "2"], "--d 2 is below the largest k (3)"),
    (["--csv", "/nonexistent-dir/x.csv"], "the directory of '/nonexistent-dir/x.csv' does not exist"),
    (["--store", ""], "must not be empty"),
])
def test_bad_sweep_options_are_refused_before_any_run(bad, message, tmp_path, capsys):
    store = tmp_path / "store"
    argv = SMALL + ["--store", str(store)] + bad if "--store" not in bad else SMALL + bad
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "copyaverage sweep: error:" in err and message in err, err
    assert not store.exists()  # nothing computed, nothing stored


def test_k_and_n_ranges_are_checked(tmp_path, capsys):
    for bad in (["--k", "0", "--n", "1"], ["--k", "3", "--n", "0-2"], ["--k", "3", "--n", "x"]):
        with pytest.raises(SystemExit) as exc:
            main(["sweep", *bad, "--store", str(tmp_path / "s")])
        assert exc.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(importlib.util.find_spec("distributed") is not None,
                    reason="dask.distributed is installed here")
def test_dask_backend_without_dask_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(SMALL + ["--backend", "dask", "--store", str(tmp_path / "s")])
    assert exc.value.code == 2 and "pip install 'dask[distributed]'" in capsys.readouterr().err


def test_a_converged_sweep_exits_0_and_its_csv_holds_the_stored_runs(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    argv = ["sweep", "--k", "3", "--n", "1-2", "--seeds", "0-1", "--jobs", "1", "--no-progress",
            "--store", str(tmp_path / "s"), "--csv", str(csv)]
    assert main(argv) == 0
    assert "4/4 converged" in capsys.readouterr().out
    table = pd.read_csv(csv)
    assert list(table.columns[:5]) == ["activation", "k", "n", "seed", "init"]
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file
    # the table describes the runs in the store, loaded by another route
    store = ResultStore(tmp_path / "s")
    specs = grid("erf", 3, [1, 2], [0, 1], "gaussian")
    for s, row in zip(specs, table.itertuples(index=False)):
        r = store.load(s.params())
        assert (row.n, row.seed) == (s.n, s.seed)
        assert row.loss == r.loss and row.grad_norm == r.grad_norm and row.converged
        assert row.label == "CA optimum"


def test_a_sweep_with_unconverged_runs_exits_1(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    code = main(SMALL + ["--max-time", "1e-9", "--store", str(tmp_path / "s"), "--csv", str(csv)])
    captured = capsys.readouterr()
    assert code == 1
    assert "0/1 converged" in captured.out
    assert "1 of 1 runs did not converge (not_converged_time_limit: 1)" in captured.err
    table = pd.read_csv(csv)
    assert not table.converged.any() and table.label.tolist() == ["not converged"]


def test_the_module_entry_point_is_the_same_command():
    run = subprocess.run([sys.executable, "-m", "copyaverage", "sweep", "--k", "3", "--n", "2",
                          "--tol", "nan"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "error: argument --tol" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "copyaverage", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0
    for word in ("sweep", "info", "prune", "recompute", "verify", "examples:", "exit status"):
        assert word in run.stdout


# ------------------------------------------------------------------ verify --
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small experiment (erf, k = 3, n = 1..2, 2 seeds) exported like the committed ones."""
    out = tmp_path_factory.mktemp("k3")
    specs = grid("erf", 3, [1, 2], [0, 1], "glorot")
    results = sweep(specs, store=tmp_path_factory.mktemp("store"), n_jobs=1, progress=False)
    export_endpoints(specs, results, out, command="test", elapsed=1.0)
    return out


def test_verify_exits_0_on_matching_results_and_1_on_a_changed_end_point(exported, tmp_path,
                                                                        capsys):
    assert main(["verify", "erf_k50", "--results", str(exported), "--runs", "4"]) == 0
    assert "4/4 re-runs match" in capsys.readouterr().out
    for name in ("summary.csv", "meta.json"):
        shutil.copy(exported / name, tmp_path / name)
    with np.load(exported / "endpoints.npz") as z:
        arrays = dict(z)
    arrays["a_2"] = arrays["a_2"] * (1 + 1e-6)
    np.savez_compressed(tmp_path / "endpoints.npz", **arrays)
    assert main(["verify", "erf_k50", "--results", str(tmp_path), "--runs", "4"]) == 1
    assert "3/4 re-runs match" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["verify", "erf_k50", "--runs", "0"], "--runs: must be an integer >= 1"),
    (["verify", "erf_k51"], "invalid choice: 'erf_k51'"),
    (["verify", "erf_k50", "--atol", "-1"], "--atol: must be a finite number > 0"),
    (["recompute", "erf_k50", "--jobs", "0"], "--jobs: must be >= 1, or -1"),
    (["recompute", "nope"], "invalid choice: 'nope'"),
])
def test_bad_experiment_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error:" in err and message in err


def test_verify_of_a_directory_without_results_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["verify", "erf_k50", "--results", str(tmp_path)])
    assert exc.value.code == 2
    assert "missing: meta.json, summary.csv, endpoints.npz" in capsys.readouterr().err


# --------------------------------------------------- non-editable install --
def _setuptools_version():
    try:
        from importlib.metadata import version
        return tuple(int(x) for x in version("setuptools").split(".")[:2])
    except Exception:  # not installed, or an odd version string
        return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed (not editable) into a fresh venv, from a copy of the
    repository's package files, without the network.

    The fresh venv (no pip of its own) sees this environment's packages (numpy, ...,
    pip, setuptools) through a .pth line, so pip builds with ``--no-build-isolation --no-index`` and installs with
    ``--no-deps``: nothing is downloaded. The copy keeps build output out of the checkout.
    """
    found = _setuptools_version()
    if found is None or found < (77, 0):
        pytest.skip(f"building offline needs setuptools >= 77 in this environment (found "
                    f"{found}); `pip install 'setuptools>=77'` (the Makefile does)")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "lib", src / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp / "venv"
    # without pip and setuptools of its own: it uses this environment's (setuptools >= 77)
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                          capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        pytest.skip(f"python -m venv failed here: {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    Path(site, "outer_environment.pth").write_text("\n".join(ours) + "\n")
    pip = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-index", "--disable-pip-version-check", "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, f"pip could not install the package:\n{pip.stdout}\n{pip.stderr}"
    script = venv / "bin" / "copyaverage"
    assert script.is_file(), "no console script 'copyaverage' was installed"
    env = dict(os.environ, COPYAVERAGE_STORE=str(tmp / "store"))
    env.pop("PYTHONPATH", None)
    return script, python, env, tmp


def test_console_script_of_a_non_editable_install(installed):
    script, python, env, tmp = installed
    where = subprocess.run([str(python), "-c", "import copyaverage; print(copyaverage.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp, check=True).stdout
    assert str(tmp / "venv") in where, f"imported {where} instead of the installed copy"
    run = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, cwd=tmp,
                         timeout=120)
    assert run.returncode == 0 and "recompute" in run.stdout, run.stderr
    run = subprocess.run([str(script), "info"], capture_output=True, text=True, env=env, cwd=tmp,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"code hash:       {code_hash()}" in run.stdout  # same library files, same hash
    assert f"store directory: {tmp / 'store'}" in run.stdout
    from copyaverage import __version__
    assert f"copyaverage:     {__version__}" in run.stdout


def test_an_installed_copy_finds_committed_results_only_in_a_checkout(installed):
    """Outside a checkout, recompute and verify need a directory (status 2, no traceback);
    run from inside the checkout, the installed package finds its results/."""
    script, python, env, tmp = installed
    env = {k: v for k, v in env.items() if k != "COPYAVERAGE_RESULTS"}
    for argv in (["verify", "erf_k50"], ["recompute", "erf_k50"]):
        run = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env,
                             cwd=tmp, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert "checkout of the repository" in run.stderr
        assert ("--results DIR" if argv[0] == "verify" else "--out DIR") in run.stderr
    where = subprocess.run([str(python), "-c", "from copyaverage.experiments import K50_DIR; "
                            "print(K50_DIR)"], capture_output=True, text=True, env=env,
                           cwd=ROOT / "book", timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == str(ROOT / "results" / "erf_k50")
