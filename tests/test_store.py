"""Result store: round trip, resume, code-hash invalidation, partial writes; sweep and CLI."""

import argparse
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import copyaverage.store as store_mod
import copyaverage.sweep as sweep_mod
from copyaverage import Teacher
from copyaverage.__main__ import main, parse_range
from copyaverage.flow import gradient_flow, initialize
from copyaverage.store import ResultStore, code_hash, default_store_dir, source_files
from copyaverage.sweep import RunSpec, grid, sweep


@pytest.fixture(scope="module")
def small_result():
    T = Teacher.orthonormal(3)
    a0, W0 = initialize(2, T, "gaussian", seed=0)
    return gradient_flow(a0, W0, T, "erf")


_REAL_RUN = sweep_mod.run


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed job in the middle of a sweep."""


def _count_runs(monkeypatch, fail_after=None):
    calls = []
    real = _REAL_RUN

    def counting(spec):
        if fail_after is not None and len(calls) >= fail_after:
            raise Interrupted
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(sweep_mod, "run", counting)
    return calls


def test_round_trip(tmp_path, small_result):
    st = ResultStore(tmp_path, code="abc")
    params = {"x": 1, "y": [1, 2]}
    assert st.load(params) is None and params not in st
    path = st.save(params, small_result)
    assert path.parent.name == "abc" and params in st
    r = st.load(params)
    for name in ("a", "W", "hessian_eigenvalues"):
        np.testing.assert_array_equal(getattr(r, name), getattr(small_result, name))
    for name in ("t", "loss", "grad_norm", "theta"):
        np.testing.assert_array_equal(getattr(r.trajectory, name),
                                      getattr(small_result.trajectory, name))
    for name in ("loss", "grad_norm", "converged", "tol", "t_end", "status", "message",
                 "polish", "polish_distance", "stats", "timings", "options"):
        assert getattr(r, name) == getattr(small_result, name), name
    assert st.keys() == [path.stem]


def test_code_hash_follows_the_import_closure(tmp_path):
    pkg = tmp_path / "copyaverage"
    shutil.copytree(Path(store_mod.__file__).parent, pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    names = {p.name for p in source_files(package_dir=pkg)}
    assert {"flow.py", "derivatives.py", "rkc.py", "gaussian.py", "store.py", "sweep.py"} <= names
    assert "classify.py" not in names and "__main__.py" not in names
    h0 = code_hash(package_dir=pkg)
    (pkg / "book_only.py").write_text("x = 1\n")  # not imported by the flow: same hash
    assert code_hash(package_dir=pkg) == h0
    with open(pkg / "rkc.py", "a") as f:  # a comment in a flow module: same hash
        f.write("\n# a comment\n")
    assert code_hash(package_dir=pkg) == h0
    source = (pkg / "rkc.py").read_text()
    (pkg / "rkc.py").write_text(source.replace('"""', '"""Edited docs. ', 1))  # docstring only
    assert code_hash(package_dir=pkg) == h0
    assert code_hash(package_dir=pkg, scheme=1) != code_hash(package_dir=pkg)
    with open(pkg / "rkc.py", "a") as f:  # code in a flow module: new hash
        f.write("\nA_CHANGE = 1\n")
    assert code_hash(package_dir=pkg) != h0
    with pytest.raises(ValueError, match="scheme"):
        code_hash(package_dir=pkg, scheme=3)


def test_code_change_recomputes(tmp_path, small_result):
    old_code, new_code = "0" * 64, "1" * 64
    ResultStore(tmp_path, code=old_code).save({"run": 1}, small_result)
    assert ResultStore(tmp_path, code=old_code).load({"run": 1}) is not None
    new = ResultStore(tmp_path, code=new_code)
    assert new.load({"run": 1}) is None
    new.save({"run": 1}, small_result)
    assert [p.name for p in new.prune()] == [old_code[:16]]


def test_partial_writes_are_never_read(tmp_path, small_result, monkeypatch):
    st = ResultStore(tmp_path, code="c")
    params = {"run": 2}
    st.dir.mkdir(parents=True)
    (st.dir / f"{st.path(params).stem}.123.tmp").write_bytes(b"PK\x03\x04 half a zip")
    assert st.load(params) is None and st.keys() == []

    def broken(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        st.save(params, small_result)
    monkeypatch.undo()
    assert not st.path(params).exists()
    assert len(list(st.dir.glob("*.tmp"))) == 1  # only the stray one from above
    # a corrupt final file (say a disk error) counts as missing, with a warning
    st.path(params).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert st.load(params) is None
    st.save(params, small_result)
    assert st.load(params) is not None
    st.prune()
    assert list(st.dir.glob("*.tmp")) == []


def test_sweep_loads_stored_runs_and_resumes(tmp_path, monkeypatch):
    st = ResultStore(tmp_path, code="s")
    specs = grid("erf", 3, [1, 2], [0, 1], "gaussian", eigenvalues=False)
    assert len(specs) == 4
    calls = _count_runs(monkeypatch, fail_after=2)
    with pytest.raises(Interrupted):
        sweep(specs, store=st, n_jobs=1, progress=False)
    assert len(calls) == 2 and len(st.keys()) == 2
    calls = _count_runs(monkeypatch)
    res = sweep(specs, store=st, n_jobs=1, progress=False)
    assert len(calls) == 2 and len(st.keys()) == 4  # only the missing ones
    assert [r.n for r in res] == [1, 1, 2, 2] and all(r.converged for r in res)
    assert all(r.grad_norm <= r.tol == 1e-12 for r in res)  # converged means |g| <= tol
    calls = _count_runs(monkeypatch)
    again = sweep(specs, store=st, n_jobs=1, progress=False)
    assert calls == []
    assert all(np.array_equal(x.W, y.W) for x, y in zip(res, again))


def test_parallel_sweep_matches_serial(tmp_path):
    specs = grid("erf", 4, [2, 3], [0], "glorot", eigenvalues=False)
    par = sweep(specs, store=ResultStore(tmp_path / "p", code="x"), n_jobs=2, progress=False)
    ser = [sweep_mod.run(s) for s in specs]
    for x, y in zip(par, ser):
        np.testing.assert_array_equal(x.W, y.W)


def test_run_specs_and_grid_validate():
    s = RunSpec("erf", 4, 2, 0, "glorot", options=(("tol", 1e-10),))
    assert s.params()["d"] == 5 and s.params()["options"] == {"tol": 1e-10}
    assert s.params()["std"] is None  # not used by Glorot: not part of the key
    assert len(grid("erf", 4, range(1, 6), [0, 1])) == 6  # n >= k skipped
    for bad in [dict(activation="swish"), dict(k=0), dict(n=0), dict(seed=-1), dict(init="he"),
                dict(options=(("colour", 1),))]:
        kw = dict(activation="erf", k=3, n=2, seed=0) | bad
        with pytest.raises(ValueError):
            RunSpec(**kw)
    with pytest.raises(ValueError, match="RunSpec"):
        sweep([1], n_jobs=1, progress=False)
    with pytest.raises(ValueError, match="n_jobs"):
        sweep([], n_jobs=0, progress=False)


def test_default_store_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("COPYAVERAGE_STORE", str(tmp_path / "s"))
    assert default_store_dir() == tmp_path / "s"
    monkeypatch.delenv("COPYAVERAGE_STORE")
    d = default_store_dir()
    assert d.parts[-2:] == (".cache", "store")


def test_cli(tmp_path, capsys):
    assert parse_range("1-3,7") == [1, 2, 3, 7] and parse_range("5") == [5]
    code = main(["sweep", "--k", "3", "--n", "1-2", "--seeds", "0", "--jobs", "1",
                 "--store", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "2/2 converged" in out and "CA optimum" in out
    assert main(["info", "--store", str(tmp_path)]) == 0
    assert "stored runs:     2" in capsys.readouterr().out
    assert main(["sweep", "--k", "3", "--n", "3", "--store", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["sweep", "--k", "3", "--n", "x"])


# ------------------------------------------------------------ issue 15, item 5 --
def test_damaged_files_count_as_missing_with_a_warning(tmp_path, small_result):
    """A 0-byte, truncated or one-byte-damaged .npz never raises out of load: it is
    reported (by file name) and recomputed, as the module docstring promises."""
    st = ResultStore(tmp_path, code="d")
    params = {"run": 3}
    good = st.save(params, small_result).read_bytes()
    path = st.path(params)
    damaged = [b"", good[: len(good) // 2]]
    rng = np.random.default_rng(0)
    for _ in range(150):
        data = bytearray(good)
        i = int(rng.integers(len(data)))
        data[i] = (data[i] + int(rng.integers(1, 256))) % 256
        damaged.append(bytes(data))
    unreadable = 0
    for data in damaged:
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = st.load(params)  # must not raise
        if r is None:
            unreadable += 1
            assert any(path.name in str(w.message) for w in caught), data[:20]
    assert unreadable >= 2  # at least the empty and the truncated file


def _store_files(d: Path, count=2):
    d.mkdir(parents=True)
    for i in range(count):
        (d / f"{i:064x}.npz").write_bytes(b"stored run")


def test_prune_removes_only_store_directories(tmp_path, small_result):
    old, other = "0123456789abcdef" + "0" * 48, "fedcba9876543210" + "1" * 48
    st = ResultStore(tmp_path, code="aaaaaaaaaaaaaaaa" + "2" * 48)
    st.save({"run": 1}, small_result)
    _store_files(tmp_path / old[:16])
    _store_files(tmp_path / other[:16], count=1)
    (tmp_path / other[:16] / "deadbeef.npz.1234.tmp").write_bytes(b"half")
    # not store directories: keep them
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    _store_files(tmp_path / "0000111122223333")
    (tmp_path / "0000111122223333" / "README").write_text("a hash-like name, but not only store files")
    (tmp_path / "4444555566667777").mkdir()  # empty: holds no store files
    (tmp_path / "ABCDEF0123456789").mkdir()  # not lower-case hex as ResultStore.dir writes
    _store_files(tmp_path / "ABCDEF0123456789" / "x", count=1)
    assert ResultStore(tmp_path, code=st.code).prune(dry_run=True) == [tmp_path / old[:16],
                                                                       tmp_path / other[:16]]
    assert (tmp_path / old[:16]).exists()
    removed = st.prune()
    assert sorted(removed) == sorted([tmp_path / old[:16], tmp_path / other[:16]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".git", "notes", "0000111122223333", "4444555566667777",
                           "ABCDEF0123456789", st.dir.name])
    assert (tmp_path / ".git" / "HEAD").exists() and st.load({"run": 1}) is not None


def test_check_writable_names_the_directory_before_any_run(tmp_path):
    st = ResultStore(tmp_path / "ok", code="w")
    st.check_writable()
    assert st.dir.is_dir() and list(st.dir.iterdir()) == []  # the probe leaves nothing behind
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = ResultStore(blocker / "store", code="w")
    with pytest.raises(OSError, match="not writable") as err:
        bad.check_writable()
    assert str(bad.dir) in str(err.value)


def test_empty_store_path_is_rejected(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):  # (Path("") is Path("."): an explicit choice, not detectable)
        with pytest.raises(ValueError, match="store directory"):
            ResultStore(empty, code="e")
    for command in (["sweep", "--k", "3", "--n", "1", "--jobs", "1", "--no-progress"],
                    ["info"], ["prune"]):
        with pytest.raises(SystemExit) as exit_:
            main(command + ["--store", ""])
        assert exit_.value.code == 2
        assert "store directory must not be empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was written to the current directory


def test_cli_prune(tmp_path, capsys, small_result):
    st = ResultStore(tmp_path)
    _store_files(tmp_path / "0123456789abcdef")
    (tmp_path / "mine").mkdir()
    st.save({"run": 1}, small_result)
    assert main(["prune", "--store", str(tmp_path), "--dry-run"]) == 0
    assert "would remove" in capsys.readouterr().out and (tmp_path / "0123456789abcdef").exists()
    assert main(["prune", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0123456789abcdef" in out and "removed 1" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mine", st.dir.name])


def test_cli_refuses_an_unwritable_store_before_computing(tmp_path, capsys, monkeypatch):
    calls = _count_runs(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["sweep", "--k", "3", "--n", "1", "--jobs", "1", "--no-progress",
                 "--store", str(blocker / "store")])
    assert code == 2 and calls == []
    assert "not writable" in capsys.readouterr().err


def test_cli_ranges_and_grids_have_a_size_limit(tmp_path, capsys):
    """'--n 1-100000000' used to build a list of 10^8 integers (gigabytes) before anything."""
    from copyaverage.__main__ import MAX_RANGE_VALUES, MAX_RUNS
    assert (MAX_RANGE_VALUES, MAX_RUNS) == (10_000, 100_000)
    assert len(parse_range("1-10000")) == 10_000
    for text in ("1-100000000", "0-10000", "1-5000,6000-12000"):
        with pytest.raises(argparse.ArgumentTypeError, match="10,000"):
            parse_range(text)
    with pytest.raises(SystemExit):
        main(["sweep", "--k", "3", "--n", "1-100000000", "--store", str(tmp_path)])
    assert "at most 10,000" in capsys.readouterr().err
    code = main(["sweep", "--k", "2-1000", "--n", "1-200", "--seeds", "0-9",
                 "--store", str(tmp_path)])
    assert code == 2 and "MAX_RUNS = 100,000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
