"""``python -m scripts.devtools.bench``: the EST enrollment benchmarks (see scripts/bench)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
