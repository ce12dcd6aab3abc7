"""Experiment drivers: committed end points, their round trip and their re-check."""

import ast
import json
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from copyaverage import Teacher, population_loss
from copyaverage.configurations import copy_average_point
from copyaverage.experiments import (K50_DIR, K50_GAUSSIAN_DIR, export_endpoints, first_from, k50_specs,
                                     load_endpoints, nearest_ca, relabel, transition_edges,
                                     verify_sample)
from copyaverage.store import code_hash
from copyaverage.sweep import RunSpec, grid, sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("k3")
    specs = grid("erf", 3, [1, 2], [0, 1], "glorot")
    results = sweep(specs, store=None, n_jobs=1, progress=False)
    export_endpoints(specs, results, out, command="test", elapsed=1.0)
    return out, specs, results


def test_export_and_load_round_trip(small):
    out, specs, results = small
    specs2, ends, table, meta = load_endpoints(out)
    assert specs2 == specs
    for (a, W), r in zip(ends, results):
        assert np.array_equal(a, r.a) and np.array_equal(W, r.W)
    assert list(table.loss) == pytest.approx([r.loss for r in results], abs=0)
    assert meta["runs"] == len(specs) and len(meta["lib_hash"]) == 64
    for name in ("endpoints.npz", "summary.csv", "meta.json"):
        assert (out / name).stat().st_mode & stat.S_IROTH  # readable, not mkstemp's 0600
    assert not list(out.glob("*.tmp"))


def test_verify_sample_detects_a_changed_end_point(small, tmp_path):
    out, specs, results = small
    check = verify_sample(out, m=4, seed=0)
    assert len(check) == 4 and check.matches.all()
    assert check.max_weight_difference.max() <= 1e-7
    # tamper with one stored end point: the re-check must see it
    with np.load(out / "endpoints.npz") as z:
        arrays = dict(z)
    arrays["W_0"] = arrays["W_0"] + 1e-6
    _copy_without_checksums(out, tmp_path)
    np.savez_compressed(tmp_path / "endpoints.npz", **arrays)
    check = verify_sample(tmp_path, m=4, seed=0)
    assert not check.set_index("run").matches.loc[0]
    assert check.set_index("run").matches.drop(0).all()


def test_nearest_ca_of_a_ca_point_is_itself():
    T = Teacher.orthonormal(4)
    a, W = copy_average_point([(0,), (1, 2, 3)], T, "erf")
    near = nearest_ca(a, W, T, "erf")
    assert near["groups"] == [(0,), (1, 2, 3)]
    assert near["distance"] == pytest.approx(0.0, abs=1e-14)
    assert near["ca_loss"] == pytest.approx(near["loss"], abs=1e-14)


@pytest.mark.parametrize("path, init", [(K50_DIR, "glorot"), (K50_GAUSSIAN_DIR, "gaussian")])
def test_committed_k50_results_are_complete(path, init):
    """The committed files hold exactly the 980 runs of the k = 50 grid, under 20 MB."""
    missing = [name for name in ("meta.json", "summary.csv", "endpoints.npz")
               if not (path / name).is_file()]
    assert not missing, f"committed results missing in {path}: {missing} (the k = 50 chapter reads them)"
    specs, ends, table, meta = load_endpoints(path)
    assert specs == k50_specs(init=init)
    assert len(ends) == len(table) == meta["runs"] == 980
    assert all(a.shape == (s.n,) and W.shape == (s.n, 51) for s, (a, W) in zip(specs, ends))
    assert list(zip(table.n, table.seed)) == [(s.n, s.seed) for s in specs]
    assert (table.grad_norm[table.converged] <= 1e-12).all()
    assert sum(p.stat().st_size for p in path.iterdir()) < 20e6
    # written by `copyaverage recompute` (or its older spelling)
    assert meta["command"].startswith(("copyaverage recompute erf_k50",
                                       "python -m copyaverage.experiments k50"))
    assert json.loads((path / "meta.json").read_text())["machine"]["cpus"] >= 1


def test_k50_specs_rejects_an_unknown_initialization():
    with pytest.raises(ValueError, match="glorot"):
        k50_specs(init="uniform")


def test_relabel_recomputes_and_counts_changes(small):
    out, specs, results = small
    _, ends, table, _ = load_endpoints(out)
    same, changed = relabel(ends, table, k=3)
    assert changed == 0 and list(same.label) == list(table.label)
    wrong = table.copy()
    wrong.loc[0, "label"] = "other"
    fixed, changed = relabel(ends, wrong, k=3)
    assert changed == 1 and fixed.label[0] == table.label[0]
    with pytest.raises(ValueError, match="end points"):
        relabel(ends[:-1], table, k=3)


def test_first_from():
    idx = range(1, 7)
    assert first_from(pd.Series([0, 1, 0, 1, 1, 1], index=idx, dtype=bool)) == 4
    assert first_from(pd.Series([1] * 6, index=idx, dtype=bool)) == 1
    assert first_from(pd.Series([1, 1, 1, 1, 1, 0], index=idx, dtype=bool)) is None


def test_transition_edges_on_a_constructed_sweep():
    """n = 1..6, 4 seeds: CA optimum only up to 2, mixed at 3-4, perturbed copies from 5;
    the perturbed copy has the lower loss from n = 4."""
    rows = []
    pc_per_n = {1: 0, 2: 0, 3: 1, 4: 3, 5: 4, 6: 4}
    ca_loss = pd.Series([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], index=range(1, 7))
    pc_loss = {3: 4.5, 4: 2.9, 5: 1.5, 6: 0.5}
    for n, pcs in pc_per_n.items():
        for s in range(4):
            pc = s < pcs
            rows.append(dict(n=n, label="perturbed copy" if pc else "CA optimum",
                             loss=pc_loss[n] if pc else ca_loss[n]))
    e = transition_edges(pd.DataFrame(rows), ca_loss)
    assert list(e) == [2, 3, 4, 4, 5, 4, 4]


# ------------------------------------------------------------ issue 15, item 6 --
def _copy_without_checksums(src, dst, names=("summary.csv", "meta.json")):
    """Copy exported files but not SHA256SUMS, so that a file changed afterwards reaches
    the checks behind the checksums."""
    for name in names:
        shutil.copy(src / name, dst / name)


def _tampered_copy(src, dst, *, arrays=None, rows=None, meta=None):
    """A copy of exported results in dst with some end points, table cells or meta keys
    changed (without SHA256SUMS: see _copy_without_checksums)."""
    _copy_without_checksums(src, dst, ("endpoints.npz", "summary.csv", "meta.json"))
    if arrays:
        with np.load(src / "endpoints.npz") as z:
            ends = dict(z)
        np.savez_compressed(dst / "endpoints.npz", **(ends | arrays))
    if rows:
        table = pd.read_csv(src / "summary.csv")
        for (i, column), value in rows.items():
            table.loc[i, column] = value
        table.to_csv(dst / "summary.csv", index=False)
    if meta:
        m = json.loads((dst / "meta.json").read_text())
        (dst / "meta.json").write_text(json.dumps(m | meta))
    return dst


def test_verify_sample_fails_a_nan_end_point(small, tmp_path):
    out, specs, results = small
    W = results[0].W.copy()
    W[0, 0] = np.nan  # max(x, nan) is x: a plain max would pass it
    check = verify_sample(_tampered_copy(out, tmp_path, arrays={"W_0": W}), m=4, seed=0)
    assert not check.set_index("run").matches.loc[0]
    assert check.set_index("run").matches.drop(0).all()


def test_verify_sample_checks_the_stored_loss_and_converged_flag(small, tmp_path):
    out, _, _ = small
    table = pd.read_csv(out / "summary.csv")
    changed = _tampered_copy(out, tmp_path, rows={(0, "loss"): table.loss[0] + 1e-6,
                                                  (2, "converged"): False})
    check = verify_sample(changed, m=4, seed=0).set_index("run")
    # run 2 is stored as not converged: not re-run (its end point may depend on the
    # machine's speed); relabel finds the false flag (test below)
    assert list(check.index) == [0, 1, 3]
    assert not check.matches.loc[0], check
    assert check.matches.loc[[1, 3]].all()


def test_load_endpoints_checks_shapes_rows_and_provenance(small, tmp_path):
    out, specs, results = small
    cases = [
        (dict(arrays={"a_1": np.ones(3)}), "end point 1.*shape"),
        (dict(arrays={"W_2": np.ones((2, 3))}), "end point 2.*shape"),
        (dict(rows={(3, "n"): 1}), "row 3"),
        (dict(meta={"lib_hash": "not a hash"}), "lib_hash"),
        (dict(meta={"runs": 5}), "runs"),
    ]
    for i, (change, message) in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        with pytest.raises(ValueError, match=message):
            load_endpoints(_tampered_copy(out, d, **change))


def test_relabel_recomputes_loss_and_convergence(small, tmp_path):
    """A stored loss or converged flag that does not fit the stored end point is a change,
    even when the stored label was changed to match it."""
    out, specs, results = small
    table = pd.read_csv(out / "summary.csv")
    path = _tampered_copy(out, tmp_path, rows={(0, "loss"): table.loss[0] + 1e-6,
                                               (1, "converged"): False,
                                               (1, "label"): "not converged"})
    _, ends, stored, _ = load_endpoints(path)
    fixed, changed = relabel(ends, stored, k=3)
    assert changed == 2
    assert list(fixed.label) == list(table.label) and fixed.converged.all()
    a, W = ends[0]
    assert fixed.loss[0] == population_loss(a, W, Teacher.orthonormal(3), "erf")
    assert fixed.loss[0] == pytest.approx(table.loss[0], abs=1e-14)


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("path", [K50_DIR, K50_GAUSSIAN_DIR])
def test_committed_lib_hash_is_the_hash_of_the_library_that_made_them(path, tmp_path):
    """meta.json's lib_hash, recomputed from the library files of the commit that added it."""
    try:
        shallow = _git("rev-parse", "--is-shallow-repository").strip() == "true"
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the library of the results' commit is not at hand")
    if shallow:
        pytest.skip("shallow clone: the commit that added the results is not at hand "
                    "(git fetch --unshallow, or actions/checkout with fetch-depth: 0)")
    commit = _git("log", "-1", "--format=%H", "--", str(path / "meta.json")).strip()
    assert commit, f"{path / 'meta.json'} is not committed"
    pkg = tmp_path / "copyaverage"
    pkg.mkdir()
    for name in _git("ls-tree", "--name-only", f"{commit}:lib/copyaverage").split():
        if name.endswith(".py"):
            (pkg / name).write_text(_git("show", f"{commit}:lib/copyaverage/{name}"))
    consts = {"HASH_SCHEME": 1}  # the hashing parameters of that version of store.py
    for line in (pkg / "store.py").read_text().splitlines():
        for key in ("FORMAT_VERSION", "_ROOT_MODULES", "HASH_SCHEME"):
            if line.startswith(f"{key} = "):
                consts[key] = ast.literal_eval(line.split("=", 1)[1].strip())
    meta = json.loads((path / "meta.json").read_text())
    assert code_hash(consts["_ROOT_MODULES"], pkg, consts["FORMAT_VERSION"],
                     consts["HASH_SCHEME"]) == meta["lib_hash"]


# ------------------------------------------- where the committed results are --
def test_committed_results_are_found_in_the_checkout(monkeypatch):
    import copyaverage.experiments as ex
    monkeypatch.delenv(ex.RESULTS_ENV, raising=False)
    assert ex.find_checkout() == ROOT
    assert ex.K50_DIR == ROOT / "results" / "erf_k50" == ex.committed_results_dir("erf_k50")
    assert ex.K50_GAUSSIAN_DIR == ROOT / "results" / "erf_k50_gaussian"
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.committed_results_dir("erf_k51")


def test_an_installed_package_finds_the_checkout_it_runs_in_or_says_there_is_none(
        monkeypatch, tmp_path):
    """A non-editable install lives in site-packages: the checkout is then found from the
    current directory, or named by $COPYAVERAGE_RESULTS, or the error says what to do."""
    import copyaverage.experiments as ex
    site = tmp_path / "venv" / "lib" / "site-packages" / "copyaverage"
    site.mkdir(parents=True)
    monkeypatch.setattr(ex, "_PACKAGE_DIR", site)
    monkeypatch.delenv(ex.RESULTS_ENV, raising=False)
    monkeypatch.chdir(ROOT / "book")  # inside the checkout
    assert ex.K50_DIR == ROOT / "results" / "erf_k50"
    monkeypatch.chdir(tmp_path)  # outside any checkout
    with pytest.raises(FileNotFoundError, match="checkout of the repository"):
        ex.committed_results_dir("erf_k50")
    with pytest.raises(FileNotFoundError, match="COPYAVERAGE_RESULTS"):
        ex.K50_DIR
    assert ex.committed_results_dir("erf_k50", root=tmp_path / "r") == tmp_path / "r" / "erf_k50"
    monkeypatch.setenv(ex.RESULTS_ENV, str(ROOT / "results"))
    assert ex.K50_GAUSSIAN_DIR == ROOT / "results" / "erf_k50_gaussian"


def test_verify_sample_max_seconds_draws_only_from_the_fast_runs(small):
    out, specs, results = small
    table = pd.read_csv(out / "summary.csv")
    fastest = float(table.time.min())
    check = verify_sample(out, m=4, seed=0, max_seconds=fastest)
    assert list(check.run) == list(np.flatnonzero(table.time.to_numpy() <= fastest))[:4]
    assert check.matches.all()
    with pytest.raises(ValueError, match="<= 1e-09 s"):
        verify_sample(out, m=1, max_seconds=1e-9)
    with pytest.raises(ValueError, match="max_seconds must be a positive"):
        verify_sample(out, m=1, max_seconds=0)


def test_width_and_scale_maps_name_defined_experiments_of_that_k_and_scale():
    from copyaverage.experiments import (EXPERIMENTS, PLANNED, SCALE_EXPERIMENTS,
                                         WIDTH_EXPERIMENTS)

    known = {**EXPERIMENTS, **PLANNED}
    for k, name in WIDTH_EXPERIMENTS.items():
        assert {spec.k for spec in known[name].specs()} == {k}, name
        assert {spec.init for spec in known[name].specs()} == {"glorot"}, name
    for std, name in SCALE_EXPERIMENTS.items():
        specs = known[name].specs()
        assert {(s.k, s.init, s.std) for s in specs} == {(50, "gaussian", std)}, name


def test_weight_difference_ignores_only_the_incoming_vectors_of_silent_neurons():
    """The loss is flat in w_i when a_i = 0, so the re-check does not compare those rows;
    every other entry counts (a NaN never agrees)."""
    from copyaverage.experiments import SILENT_OUTGOING, _weight_difference

    a = np.array([1.0, 0.0, -0.5])
    W = np.arange(9.0).reshape(3, 3)
    moved_silent = W.copy()
    moved_silent[1] += 0.3
    assert _weight_difference(a, W, a, moved_silent) == 0.0
    moved_live = W.copy()
    moved_live[2, 0] += 0.3
    assert np.isclose(_weight_difference(a, W, a, moved_live), 0.3)
    # silent in one end point only: compared
    a2 = a.copy()
    a2[1] = 10 * SILENT_OUTGOING
    assert np.isclose(_weight_difference(a, W, a2, moved_silent), 0.3)
    nan = W.copy()
    nan[0, 0] = np.nan
    assert np.isnan(_weight_difference(a, W, a, nan))


def test_weights_are_compared_only_where_the_end_point_determines_them():
    from copyaverage.experiments import _weights_determined

    assert _weights_determined(RunSpec("erf", 8, 5, 0))
    assert not _weights_determined(RunSpec("erf", 8, 8, 0))  # n >= k: zero-loss manifolds
    assert not _weights_determined(RunSpec("erf", 8, 16, 0))
    # finite samples: P = n (d + 1) = 5 * 10 = 50 parameters
    assert not _weights_determined(RunSpec("erf", 8, 5, 0, samples=50))
    assert _weights_determined(RunSpec("erf", 8, 5, 0, samples=51))


def test_book_grids_are_the_pages_grids():
    from copyaverage.experiments import book_grids, erf_grid

    specs = book_grids()
    assert len(specs) == 1320 + 900 + 280 and len(set(specs)) == len(specs)
    shared = set(specs)
    for used in (erf_grid(k_values=range(2, 13), seeds=range(20)),
                 erf_grid(k_values=range(2, 11), seeds=range(20), activation="relu"),
                 erf_grid(k_values=(6, 10), seeds=range(20), init="glorot")):
        assert set(used) <= shared


def test_quick_mode_re_runs_at_most_one_fast_run_and_spot_check_fails_a_mismatch(
        small, tmp_path, monkeypatch, capsys):
    from copyaverage.experiments import QUICK_ENV, QUICK_SECONDS, quick_checks, spot_check

    out, specs, results = small
    assert len(spot_check(out, m=4, seed=0)) == 4  # full mode: m re-runs, all matching
    monkeypatch.setenv(QUICK_ENV, "1")
    assert quick_checks()
    check = spot_check(out, m=4, seed=0)
    assert len(check) == 1 and check.matches.all()
    assert "re-ran 1 of the 4 runs" in capsys.readouterr().out
    # no run as fast as asked: an empty table in quick mode, an error in full mode
    table = pd.read_csv(out / "summary.csv")
    assert float(table.time.min()) <= QUICK_SECONDS
    assert spot_check(out, m=3, max_seconds=1e-9).empty
    monkeypatch.setenv(QUICK_ENV, "0")
    with pytest.raises(ValueError, match="<= 1e-09 s"):
        spot_check(out, m=3, max_seconds=1e-9)
    # a tampered end point fails the spot check
    with np.load(out / "endpoints.npz") as z:
        arrays = {name: z[name] + (1e-6 if name.startswith("W_") else 0) for name in z.files}
    _copy_without_checksums(out, tmp_path)
    np.savez_compressed(tmp_path / "endpoints.npz", **arrays)
    with pytest.raises(AssertionError):
        spot_check(tmp_path, m=2, seed=0)
    monkeypatch.setenv(QUICK_ENV, "yes")
    with pytest.raises(ValueError, match="must be 1"):
        quick_checks()


def test_checksums_commit_and_versions_are_recorded_and_a_changed_file_is_refused(
        small, tmp_path):
    from copyaverage.experiments import file_sha256

    out, specs, results = small
    sums = dict(line.split()[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"endpoints.npz", "summary.csv", "meta.json"}
    assert sums["summary.csv"] == file_sha256(out / "summary.csv")
    meta = json.loads((out / "meta.json").read_text())
    assert {"numpy", "scipy", "autograd", "python"} <= set(meta["machine"])
    assert meta["git_commit"] is None or len(meta["git_commit"].split("+")[0]) == 40
    for name in ("summary.csv", "meta.json", "endpoints.npz", "SHA256SUMS"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    with open(tmp_path / "summary.csv", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="summary.csv has SHA-256"):
        load_endpoints(tmp_path)
