"""synthloc: synthetic, exhaustively annotated microscopy for training and serving localizers.

This package is the small shared part of the project: generated wire stubs (synthloc.v1), COCO
reading and writing, image decoding, dataset fetching, errors and the `synthloc` CLI.
"""

__version__ = "0.1.0"
