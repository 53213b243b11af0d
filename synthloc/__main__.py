"""`python -m synthloc`: the same as the `synthloc` console script."""

import sys

from synthloc.cli import main

sys.exit(main())
