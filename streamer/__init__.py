"""streamer: audit recorded Polymarket order-book feeds as a stream.

Library entry points (the CLI is a thin layer over them):

- :func:`streamer.batch.analyze` with :class:`streamer.batch.AnalyzeConfig`: the divergence
  analysis (``streamer analyze``).
"""

__version__ = "0.1.0"

__all__ = ("__version__",)
