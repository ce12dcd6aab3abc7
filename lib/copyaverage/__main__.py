"""``python -m copyaverage``: the same command line as the ``copyaverage`` script.

See :mod:`copyaverage.cli` (``copyaverage --help``).
"""

import sys

from .cli import MAX_RANGE_VALUES, MAX_RUNS, main, parse_range  # noqa: F401  (kept importable here)

if __name__ == "__main__":
    sys.exit(main())
