"""Sweeps: runs from given starts through the store, an unwritable store found before
computing, and a parallel sweep stopped by SIGTERM takes its workers with it."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from copyaverage import Teacher
from copyaverage.flow import gradient_flow
from copyaverage.sweep import RunSpec, StartSpec, sweep


def near_copies(T, n, eps=0.01):
    return np.ones(n), T.V[:n] + eps * np.arange(1, n * T.d + 1).reshape(n, T.d) / (n * T.d)


def test_a_given_start_is_stored_by_its_content(tmp_path):
    T = Teacher.orthonormal(4)
    a0, W0 = near_copies(T, 2)
    spec = StartSpec("erf", a0, W0, T, label="near copies")
    a0[0] = 99.0  # the spec holds its own copy
    assert spec.a0[0] == 1.0 and not spec.a0.flags.writeable
    (r,) = sweep([spec], store=tmp_path, n_jobs=1, progress=False)
    direct = gradient_flow(*near_copies(T, 2), T, "erf", record_parameters=False)
    assert np.array_equal(r.theta, direct.theta) and r.converged
    # the same arrays built again load the stored result; other arrays or labels do not share it
    again = StartSpec("erf", *near_copies(T, 2), Teacher.orthonormal(4), label="near copies")
    assert again.params() == spec.params()
    (loaded,) = sweep([again], store=tmp_path, n_jobs=1, progress=False)
    assert loaded.timings == r.timings  # loaded, not recomputed
    assert StartSpec("erf", *near_copies(T, 2, 0.02), T).params()["start"] != spec.params()["start"]
    assert StartSpec("erf", *near_copies(T, 2), T, label="x").params() != spec.params()
    other_teacher = Teacher(np.array([1.0, 1, 1, 2]), T.V)
    assert StartSpec("erf", *near_copies(T, 2), other_teacher, label="near copies").params() != spec.params()


def test_bad_given_starts_are_refused():
    T = Teacher.orthonormal(3)
    with pytest.raises(ValueError, match="unknown activation"):
        StartSpec("swish", np.ones(1), T.V[:1], T)
    with pytest.raises(ValueError, match="input dimension"):
        StartSpec("erf", np.ones(1), np.ones((1, 3)), T)
    with pytest.raises(ValueError, match="NaN"):
        StartSpec("erf", np.ones(1), np.full((1, 4), np.nan), T)
    with pytest.raises(ValueError, match="unknown flow option"):
        StartSpec("erf", np.ones(1), T.V[:1], T, options=(("speed", 1),))
    with pytest.raises(ValueError, match="RunSpec or StartSpec"):
        sweep([("erf", 3, 1, 0)], progress=False)


def test_an_unwritable_store_is_found_before_any_run_is_computed(tmp_path):
    """A store root that cannot hold directories (here a regular file, which stops root
    too) fails at once, not after the first run was computed."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    t = time.time()
    with pytest.raises(OSError):
        sweep([RunSpec("erf", 50, 49, 0, "glorot")], store=blocker / "store", n_jobs=1,
              progress=False)
    assert time.time() - t < 5  # a k = 50, n = 49 run takes seconds to minutes


def test_sigterm_stops_the_workers(tmp_path):
    """Issue 15, defect 4: SIGTERM used to end the parent at once and leave the loky
    workers computing their k = 50 runs for minutes."""
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""
        from copyaverage.sweep import grid, sweep
        specs = grid("erf", 50, [45, 48, 49], range(4), "glorot")
        sweep(specs, store={str(tmp_path / "store")!r}, n_jobs=2, progress=False)
    """))
    log = open(tmp_path / "stderr.txt", "w")  # loky's resource tracker complains when killed
    proc = subprocess.Popen([sys.executable, str(script)], stderr=log)
    spawned = []  # the sweep's processes only: pytest's own helpers (loky's resource
    try:          # tracker of earlier in-process sweeps) must survive this test
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            spawned = parent.children(recursive=True)
            workers = [p for p in spawned if p.cpu_times().user > 0.5]  # busy with a run
        assert len(workers) >= 2, "the sweep did not start two busy workers"
        spawned = parent.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(spawned, timeout=10)
        assert not alive, f"{len(alive)} worker processes still running after SIGTERM"
    finally:
        for p in spawned:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
