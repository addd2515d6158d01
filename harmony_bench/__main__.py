"""``python -m harmony_bench`` is the same as the ``harmony-bench`` script."""

import sys

from harmony_bench.cli import main

sys.exit(main())
