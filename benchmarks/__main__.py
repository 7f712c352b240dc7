"""``python -m benchmarks``: every benchmark, as :mod:`benchmarks.run_all` runs them."""

import sys

from benchmarks.run_all import main

sys.exit(main())
