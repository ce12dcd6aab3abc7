"""The pack of the shared grids: written and read back whole, refused when tampered with,
seeded into a store only when a re-run sample agrees, and compared run by run with the
store by the build; and the committed pack covers the book's grids."""

import json
from dataclasses import replace

import numpy as np
import pytest

from copyaverage.cli import main
from copyaverage.experiments import book_grids
from copyaverage.grid_pack import (agree, compare_with_store, pack_dir, read_pack, seed_store,
                              write_pack)
from copyaverage.store import ResultStore, params_key
from copyaverage.sweep import grid, sweep

SPECS = grid("erf", 3, [1, 2], [0, 1]) + grid("relu", 3, [2], [0])


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A pack of SPECS written from a store that computed them."""
    tmp = tmp_path_factory.mktemp("pack")
    store = ResultStore(tmp / "store")
    meta = write_pack(tmp / "pack", SPECS, n_jobs=1, store=store, progress=False,
                      command="test")
    return tmp, store, meta


def test_a_pack_reads_back_what_the_store_holds(packed):
    tmp, store, meta = packed
    assert meta["runs"] == len(SPECS) and len(meta["sha256"]) == 64 and meta["command"] == "test"
    _, results = read_pack(tmp / "pack")
    assert set(results) == {params_key(s.params()) for s in SPECS}
    for spec in SPECS:
        mine, theirs = store.load(spec.params()), results[params_key(spec.params())]
        assert np.array_equal(mine.a, theirs.a) and np.array_equal(mine.W, theirs.W)
        assert (mine.loss, mine.stop, mine.stats, mine.t_end) == (
            theirs.loss, theirs.stop, theirs.stats, theirs.t_end)
        assert np.array_equal(mine.hessian_eigenvalues, theirs.hessian_eigenvalues)
        # the trajectory keeps its first and last samples
        assert theirs.trajectory.t.tolist() == [mine.trajectory.t[0], mine.trajectory.t[-1]]
        assert theirs.trajectory.loss[-1] == mine.trajectory.loss[-1]
    assert compare_with_store(tmp / "pack", SPECS, store).agrees.all()


def test_a_tampered_or_incomplete_pack_is_refused(packed, tmp_path):
    tmp, _, _ = packed
    (tmp_path / "pack.npz").write_bytes((tmp / "pack" / "pack.npz").read_bytes() + b"x")
    (tmp_path / "meta.json").write_text((tmp / "pack" / "meta.json").read_text())
    with pytest.raises(ValueError, match="SHA-256"):
        read_pack(tmp_path)
    (tmp_path / "pack.npz").unlink()
    with pytest.raises(FileNotFoundError, match="no pack.npz"):
        read_pack(tmp_path)


def test_seeding_fills_an_empty_store_after_a_sample_agrees(packed, tmp_path):
    tmp, store, _ = packed
    fresh = ResultStore(tmp_path / "fresh")
    report = seed_store(tmp / "pack", SPECS, fresh, m=2, seed=0, n_jobs=1)
    assert report["reason"] is None and report["seeded"] == len(SPECS)
    assert len(report["sample"]) == 2 and report["sample"].agrees.all()
    for spec in SPECS:
        seeded = fresh.load(spec.params())
        assert agree(spec, seeded, store.load(spec.params()))
    again = seed_store(tmp / "pack", SPECS, fresh, m=2, n_jobs=1)
    assert again["seeded"] == 0 and again["already"] == len(SPECS)
    with pytest.raises(ValueError, match="positive integer"):
        seed_store(tmp / "pack", SPECS, fresh, m=0)


def test_a_pack_that_differs_from_this_code_seeds_nothing(tmp_path):
    store = ResultStore(tmp_path / "store")
    results = sweep(SPECS, store=store, n_jobs=1, progress=False)
    # a pack written by "other code": one end point moved by 1e-6
    other = ResultStore(tmp_path / "other")
    moved = replace(results[0], a=results[0].a + 1e-6)
    for spec, r in zip(SPECS, [moved, *results[1:]]):
        other.save(spec.params(), r)
    write_pack(tmp_path / "pack", SPECS, n_jobs=1, store=other, progress=False)
    check = compare_with_store(tmp_path / "pack", SPECS, store)
    assert check.agrees.tolist() == [False] + [True] * (len(SPECS) - 1)
    fresh = ResultStore(tmp_path / "fresh")
    report = seed_store(tmp_path / "pack", SPECS, fresh, m=len(SPECS), n_jobs=1)
    assert report["seeded"] == 0 and "differs" in report["reason"]
    assert fresh.keys() == []
    # a run the pack lacks: compared as not agreeing, and nothing seeded
    extra = grid("erf", 4, [1], [0])
    sweep(extra, store=store, n_jobs=1, progress=False)
    check = compare_with_store(tmp_path / "pack", SPECS + extra, store)
    assert check.in_pack.tolist()[-1] is False and not check.agrees.iloc[-1]
    report = seed_store(tmp_path / "pack", SPECS + extra, fresh, n_jobs=1)
    assert report["seeded"] == 0 and "not in the pack" in report["reason"]


def test_seed_command_exit_statuses(packed, tmp_path, capsys):
    tmp, _, _ = packed
    with pytest.raises(SystemExit) as exc:
        main(["seed", "--runs", "0"])
    assert exc.value.code == 2 and "--runs: must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["seed", "--pack", str(tmp_path / "none"), "--store", str(tmp_path / "s")])
    assert exc.value.code == 2 and "no pack.npz" in capsys.readouterr().err


def test_the_committed_pack_holds_the_book_grids():
    meta = json.loads((pack_dir() / "meta.json").read_text())
    _, results = read_pack(pack_dir())
    specs = book_grids()
    assert meta["runs"] == len(specs) == len(results)
    assert {params_key(s.params()) for s in specs} == set(results)


def test_the_module_does_not_shadow_the_package_function_pack():
    import copyaverage
    import copyaverage.grid_pack  # noqa: F401

    assert callable(copyaverage.pack) and copyaverage.pack.__module__ == "copyaverage.loss"
