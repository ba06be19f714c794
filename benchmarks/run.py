"""Run clconv's benchmark (a thin wrapper around :mod:`clconv.bench`).

    python benchmarks/run.py --help
"""

import sys

from clconv.bench import main

if __name__ == "__main__":
    sys.exit(main())
