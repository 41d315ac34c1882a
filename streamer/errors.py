"""The exception hierarchy; the CLI maps each class to one stderr line and an exit code."""

from __future__ import annotations

import signal


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


def stop_once(signum: int, frame: object) -> None:
    """A SIGINT/SIGTERM handler: ignore both from now on, then raise where the process is.

    SIGTERM raises :class:`Terminated`, SIGINT :class:`KeyboardInterrupt`. Ignoring what follows
    keeps a second signal from breaking into the cleanup with a traceback: a second Ctrl-C, or a
    helper that gets the terminal's signal and then its driver's SIGTERM. Cost: O(1).
    """
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt()
    raise Terminated()
