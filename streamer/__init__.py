"""streamer: audit recorded Polymarket order-book feeds as a stream.

The command line (``streamer``, ``python -m streamer``) is a thin layer over these functions:

- :func:`analyze` with :class:`AnalyzeConfig`: the divergence analysis (``streamer analyze``);
- :func:`reconstruct` with :class:`ReconstructConfig`: books rebuilt, comparison rows written;
- :func:`run` with :class:`RunConfig`: both in one pass over the websocket input;
- :func:`streamer.follow.follow` with :class:`streamer.follow.FollowConfig`: the same, live, on
  files a recorder is still writing (imported on its own: it brings anyio, which batch runs skip);
- :func:`iter_divergence_rows`: stream the rows of a divergence manifest of any size back;
- :func:`generate_capture` with :class:`CaptureShape`: realistic synthetic captures.

Each returns an :class:`Outcome` (gate, files written, input problems) and raises a
:class:`StreamerError` (one-line message) when an input is unusable.
"""

__version__ = "0.1.0"

from .batch import AnalyzeConfig as AnalyzeConfig
from .batch import Outcome as Outcome
from .batch import ReconstructConfig as ReconstructConfig
from .batch import RunConfig as RunConfig
from .batch import analyze as analyze
from .batch import reconstruct as reconstruct
from .batch import run as run
from .errors import InputError as InputError
from .errors import StreamerError as StreamerError
from .errors import UsageError as UsageError
from .manifests import iter_divergence_rows as iter_divergence_rows
from .synth import CaptureShape as CaptureShape
from .synth import generate_capture as generate_capture



__all__ = (
    "AnalyzeConfig",
    "CaptureShape",
    "InputError",
    "Outcome",
    "ReconstructConfig",
    "RunConfig",
    "StreamerError",
    "UsageError",
    "__version__",
    "analyze",
    "generate_capture",
    "iter_divergence_rows",
    "reconstruct",
    "run",
)
