"""`python -m synthloc`: the same as the `synthloc` console script."""

import sys

from synthloc.cli import main

if __name__ == "__main__":  # not when a spawned process (infer serve --processes) imports it
    sys.exit(main())
