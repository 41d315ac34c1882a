"""The exception hierarchy; the CLI maps each class to one stderr line and an exit code."""

from __future__ import annotations



class StreamerError(Exception):
    """Base of every error streamer raises on purpose; its message is one line for the user."""

    exit_code = 2


class InputError(StreamerError):
    """An input file or manifest is missing, unreadable or not what the contract says."""


class UsageError(StreamerError):
    """A flag value the command cannot honour (for example a negative context limit)."""


class HelperError(StreamerError):
    """A helper process of a parallel analyze failed or died (nothing is published)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that it unwinds (and cleans up) as on Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise :class:`Terminated` where the process is. Cost: O(1)."""
    raise Terminated()
