"""The exception hierarchy; the CLI maps each class to one stderr line and an exit code."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator


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


#: Depth of :func:`stops_held` blocks, and the stop that came during one (raised at its end).
_held = [0]
_pending: list[BaseException] = []


def stop_once(signum: int, frame: object) -> None:
    """A SIGINT/SIGTERM handler: ignore both from now on, then raise where the process is.

    SIGTERM raises :class:`Terminated`, SIGINT :class:`KeyboardInterrupt`. Ignoring what follows
    keeps a second signal from breaking into the cleanup with a traceback: a second Ctrl-C, or a
    helper that gets the terminal's signal and then its driver's SIGTERM. Inside
    :func:`stops_held` the raise waits for the block's end. Cost: O(1).
    """
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    stop = KeyboardInterrupt() if signum == signal.SIGINT else Terminated()
    if _held[0]:
        _pending.append(stop)
        return
    raise stop


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Defer a stop (:func:`stop_once`) to the end of the block: for making a temporary file or
    directory and keeping its name for the cleanup in one step, so that a stop cannot fall between
    the two and leave it behind. Cost: O(1); raises the deferred stop at the end of the block.
    """
    _held[0] += 1
    try:
        yield
    finally:
        _held[0] -= 1
    if not _held[0] and _pending:
        raise _pending.pop()
