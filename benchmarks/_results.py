"""Writing a benchmark's results with the provenance every benchmark records."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from copyaverage.store import code_hash


def write_results(path, **fields) -> dict:
    """Add code hash, machine, cores, Python version and date to ``fields``; write JSON."""
    out = dict(fields, code_hash=code_hash(), machine=platform.platform(), cpus=os.cpu_count(),
               python=sys.version.split()[0], date=time.strftime("%Y-%m-%d %H:%M:%S"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1, default=float))
    return out
