"""A parallel sweep stopped by SIGTERM (as a CI timeout stops it) takes its workers with it."""

import signal
import subprocess
import sys
import textwrap
import time

import psutil


def test_sigterm_stops_the_workers(tmp_path):
    """Issue 15, defect 4: SIGTERM used to end the parent at once and leave the loky
    workers computing their k = 50 runs for minutes."""
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""
        from copyaverage.sweep import grid, sweep
        specs = grid("erf", 50, [45, 48, 49], range(4), "glorot")
        sweep(specs, store={str(tmp_path / "store")!r}, n_jobs=2, progress=False)
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in parent.children(recursive=True)
                       if p.cpu_times().user > 0.5]  # workers busy with a run
        assert len(workers) >= 2, "the sweep did not start two busy workers"
        everyone = parent.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(everyone, timeout=10)
        assert not alive, f"{len(alive)} worker processes still running after SIGTERM"
    finally:
        for p in psutil.Process().children(recursive=True):
            p.kill()
