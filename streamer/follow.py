"""``streamer follow``: the ``run`` audit, live, on a recorder's rotating files, resumable.

Shape (one anyio task group, see :class:`Follower`)::

    discover(ws) --scan--> Tailer(ws)   --read (worker thread)--> [bounded stream] --+
    discover(rest) -scan-> Tailer(rest) --read (worker thread)--> [bounded stream] --+--> process
                                                                                        |  (Pipeline:
    signals (SIGINT, SIGTERM) -> stop                                                    |   merge, RunSession)
                                                          publish <--[stream, 0]-- snapshot at each flush
                                                          (segments, state, status: worker thread, shielded)

- :class:`streamer.tail.Tailer` finds and reads the files (identity, rotation, truncation).
- :class:`Pipeline` merges the websocket and REST lines by receive time exactly as
  :func:`streamer.batch.reconstruction_pass` does, feeding one :class:`streamer.session.RunSession`.
  A websocket row is applied only once the REST stream has shown a row at or after its time, or
  the REST reader has been caught up for ``rest_wait`` seconds past the moment the row was seen
  on disk (the only window where follow can differ from ``run``: a REST row written later than
  that is compared late, and counted).
- Each flush writes a segment (the comparison rows and divergence rows made since the last one),
  then the state (engines, cursors, committed lengths; the commit point), then ``status.json``.
- On exit the four files ``run`` writes are made from a copy of the state, equal to ``run``'s on
  the files as follow read them.

File names in outputs: the engines hold a placeholder per file (``\\ue000w3\\ue001``), replaced by
the file's current name when something is published, so that a file renamed after its rows were
made (a rename rotation) is named in the final outputs as it is named on disk at exit.
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import hashlib
import itertools
import json
import math
import os
import pickle
import re
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import batch, decoders
from .analysis import iso_z
from .batch import DEFAULT_10C_MANIFEST, DEFAULT_OUTPUT_MANIFEST, DEFAULT_OUTPUT_REPORT, parse_object
from .errors import InputError, StreamerError, UsageError
from .index import LINE_SPAN
from .manifests import KIND_REST, KIND_WS, markets_by_token, read_manifest
from .payloads import parse_time_us
from .session import RunSession
from .sources import MISTYPED_RECEIVED_AT, GzipMembers, InputProblems, InputStats, LineSplitter
from .state import STATE_FORMAT, StateDir, append_durably, fsync_paths, remove_leftovers, replace_directory
from .tail import CaughtUp, FileEnd, Item, Lines, Tailer
from .writer import AtomicFile, GzipRowsWriter, gzip_compressor, write_atomic

ROWS_NAME = "rest_comparison_rows.jsonl.gz"
MANIFEST_10C_NAME = DEFAULT_10C_MANIFEST.name
MANIFEST_NAME = DEFAULT_OUTPUT_MANIFEST.name
REPORT_NAME = DEFAULT_OUTPUT_REPORT.name
STATUS_NAME = "status.json"
SEGMENTS_DIR = "segments"
SEGMENT_INDEX = "index.jsonl"

#: Items each reader may have in flight to the pipeline (backpressure).
STREAM_ITEMS = 4
#: Line bytes the pipeline buffers per stream before it stops taking more.
BUFFER_BYTES = 2 << 20
#: Comparison rows held for a segment before a flush is forced (besides the flush interval).
SEGMENT_ROWS_BYTES = 32 << 20
#: Worker threads for file reads and scans.
READ_THREADS = 4
#: REST rows compared late, listed with file:line (the count is complete).
LATE_LOCATIONS = 20
#: Seconds between two looks at the signals recorded (a stop starts at most this late).
SIGNAL_POLL = 0.05


# -- file names and their placeholders ------------------------------------------------------

_OPEN, _CLOSE = "\ue000", "\ue001"
_TOKEN = re.compile("\ue000([wrm])([0-9]+)\ue001".encode())
_TOKEN_TEXT = re.compile("\ue000([wrm])([0-9]+)\ue001")
#: The same in ASCII-only JSON (``json.dumps`` with ``ensure_ascii``: the manifests, and the
#: records once a line needed the standard parser, see :func:`streamer.decoders.exact_output`).
_ESCAPED = re.compile(rb"\\ue000([wrm])([0-9]+)\\ue001")
_STRIP_FILE_ESCAPED = re.compile(rb',"raw_websocket_file":"\\ue000m[0-9]+\\ue001"')
_STRIP_FILES_ESCAPED = re.compile(rb',"raw_websocket_context_files":\[(?:"\\ue000m[0-9]+\\ue001",?)*\]')
_STRIP_FILE = re.compile(',"raw_websocket_file":"\ue000m[0-9]+\ue001"'.encode())
_STRIP_FILES = re.compile(',"raw_websocket_context_files":\\[(?:"\ue000m[0-9]+\ue001",?)*\\]'.encode())


def ws_token(index: int) -> str:
    """The placeholder of websocket file ``index`` in rows (``raw_websocket_file``) and locations.

    Cost: O(1). Raises nothing.
    """
    return f"{_OPEN}w{index}{_CLOSE}"


def rest_token(index: int) -> str:
    """The placeholder of REST file ``index``. Cost: O(1). Raises nothing."""
    return f"{_OPEN}r{index}{_CLOSE}"


def context_token(index: int) -> str:
    """The placeholder of websocket file ``index`` where only a multi-file capture names files.

    Cost: O(1). Raises nothing.
    """
    return f"{_OPEN}m{index}{_CLOSE}"


class Names:
    """Placeholders to names: the files' current names, JSON-escaped where the text is JSON.

    ``single_ws`` removes what only a multi-file capture carries (context entries' and evidence
    entries' ``raw_websocket_file``, references' ``raw_websocket_context_files``), as ``run``
    does for a capture of one websocket file.
    """

    def __init__(self, ws: list[str], rest: list[str], *, single_ws: bool = False) -> None:
        self.names = {"w": ws, "m": ws, "r": rest}
        self.single_ws = single_ws
        self._json = {kind: [json.dumps(name, ensure_ascii=False)[1:-1].encode() for name in names]
                      for kind, names in self.names.items()}
        self._ascii = {kind: [json.dumps(name)[1:-1].encode() for name in names]
                       for kind, names in self.names.items()}

    def name(self, token: str) -> str:
        """The current name of placeholder ``token`` (``token`` itself when it is not a placeholder).

        Cost: O(len(token)); raises IndexError for a placeholder of a file these names do not reach.
        """
        match = _TOKEN.fullmatch(token.encode())
        if match is None:
            return token
        return self.names[match.group(1).decode()][int(match.group(2))]

    def text(self, value: str) -> str:
        """``value`` with every placeholder replaced by its file's name (a location, say).

        Cost: O(len(value)); raises IndexError as :meth:`name` does.
        """
        return _TOKEN_TEXT.sub(lambda m: self.names[m.group(1)][int(m.group(2))], value)

    def json(self, data: bytes) -> bytes:
        """Resolve the placeholders of JSON text (UTF-8 or ASCII-escaped). Cost: O(len(data))."""
        if _OPEN.encode() in data:
            if self.single_ws:
                data = _STRIP_FILES.sub(b"", _STRIP_FILE.sub(b"", data))
            table = self._json
            data = _TOKEN.sub(lambda m: table[m.group(1).decode()][int(m.group(2))], data)
        if b"\\ue000" in data:
            if self.single_ws:
                data = _STRIP_FILES_ESCAPED.sub(b"", _STRIP_FILE_ESCAPED.sub(b"", data))
            ascii_table = self._ascii
            data = _ESCAPED.sub(lambda m: ascii_table[m.group(1).decode()][int(m.group(2))], data)
        return data


# -- configuration ---------------------------------------------------------------------------

@dataclass
class FollowConfig:
    """Flags of ``streamer follow``."""

    ws: str
    rest: str
    manifest_10b: Path
    out: Path
    state: Path | None = None
    poll: float = 1.0
    rotate_wait: float = 5.0
    rest_wait: float = 5.0
    flush_interval: float = 5.0
    exit_when_idle: float | None = None
    top_n: int = 10
    context_limit: int = 5
    price_evidence_seconds: int = 10
    manifest_10bc: Path | None = None
    orchestrator_review: Path | None = None

    @property
    def state_dir(self) -> Path:
        """``--state``, or ``OUT/.state`` when it is not given. Cost: O(1). Raises nothing."""
        return Path(self.state) if self.state is not None else Path(self.out) / ".state"

    def run_config(self, output_manifest: Path | None = None) -> batch.RunConfig:
        """The ``run`` configuration whose outputs follow writes on exit. Cost: O(1). Raises nothing."""
        out = Path(self.out)
        return batch.RunConfig(
            manifest_10b=Path(self.manifest_10b), top_n=self.top_n, output_rows=out / ROWS_NAME,
            manifest_10c=out / MANIFEST_10C_NAME, manifest_10bc=self.manifest_10bc,
            orchestrator_review=self.orchestrator_review,
            output_manifest=output_manifest or out / MANIFEST_NAME, output_report=out / REPORT_NAME,
            context_limit=self.context_limit, price_evidence_seconds=self.price_evidence_seconds)

    def identity(self) -> dict[str, Any]:
        """What a saved state must have been made with (the engines depend on it).

        Cost: O(1). Raises nothing.
        """
        return {"ws": self.ws, "rest": self.rest, "top_n": self.top_n, "context_limit": self.context_limit,
                "price_evidence_seconds": self.price_evidence_seconds, "out": str(self.out)}

    def check(self) -> None:
        """Check the flags' values. Cost: O(1); raises UsageError (below), nothing else.

        :raises UsageError: for a flag value follow cannot honour.
        """
        if self.top_n < 0:
            raise UsageError("--top-n must be 0 or more")
        if self.context_limit < 0:
            raise UsageError("--context-limit must be 0 or more")
        for flag, value in (("--poll", self.poll), ("--flush-interval", self.flush_interval)):
            if not value > 0:
                raise UsageError(f"{flag} must be more than 0")
        for flag, value in (("--rotate-wait", self.rotate_wait), ("--rest-wait", self.rest_wait)):
            if not value >= 0:
                raise UsageError(f"{flag} must be 0 or more")
        if self.exit_when_idle is not None and not self.exit_when_idle > 0:
            raise UsageError("--exit-when-idle must be more than 0")
        both = sorted(set(glob.glob(self.ws)) & set(glob.glob(self.rest)))
        if both:  # (each file would be read as both kinds: every REST row rejected, nothing compared)
            raise UsageError(f"{both[0]} matches both --ws and --rest; give globs that tell the two apart")
        outputs = [Path(self.out) / name for name in (ROWS_NAME, MANIFEST_10C_NAME, MANIFEST_NAME, REPORT_NAME,
                                                      STATUS_NAME)]
        output_ids = {batch.file_identity(output): output for output in outputs}
        for flag, manifest in (("--manifest-10b", self.manifest_10b), ("--manifest-10bc", self.manifest_10bc),
                               ("--orchestrator-review", self.orchestrator_review)):
            output = output_ids.get(batch.file_identity(Path(manifest))) if manifest is not None else None
            if output is not None:
                raise UsageError(f"{flag} {manifest} is follow's own output {output}; writing it would destroy it")
        manifest_id = batch.file_identity(Path(self.manifest_10b))
        for flag, pattern in (("--ws", self.ws), ("--rest", self.rest)):
            if any(batch.file_identity(Path(name)) == manifest_id for name in glob.glob(pattern)):
                raise UsageError(f"{flag} {pattern} matches the 10B manifest {self.manifest_10b}")
            for output in outputs:
                if _glob_matches(pattern, output):  # (follow would read what it writes)
                    raise UsageError(f"{flag} {pattern} would match follow's own output {output}")


def _glob_matches(pattern: str, path: Path) -> bool:
    """Whether :func:`glob.glob` of ``pattern`` would list ``path`` once it exists (non-recursive
    globs: one path component per pattern component). Cost: O(components)."""
    wanted = Path(os.path.abspath(pattern)).parts
    parts = Path(os.path.abspath(path)).parts
    return len(wanted) == len(parts) and all(fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted))


#: FollowConfig.identity() keys by the flag a user gives.
_FLAG_OF = {"ws": "--ws", "rest": "--rest", "top_n": "--top-n", "context_limit": "--context-limit",
            "price_evidence_seconds": "--price-evidence-seconds", "out": "--out"}


# -- the pipeline: both streams merged into one RunSession -----------------------------------

class RowBuffer:
    """The comparison rows' sink: counts them and holds those made since the last flush.

    A checkpoint that comes after the websocket stream has passed its time (REST rows out of
    time order, or a REST row written later than ``--rest-wait`` allows) *reserves* its rows'
    places (an empty entry each): ``run`` computes such rows with a replay at the end, and so does
    follow, at its exit (:meth:`write_at` fills them then).
    """

    __slots__ = ("rows", "pending", "pending_bytes", "filled")

    def __init__(self) -> None:
        self.rows = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.filled: dict[int, bytes] = {}

    def write(self, row: bytes) -> None:
        """Count ``row`` and hold it for the next flush. Cost: O(1) amortized. Raises nothing."""
        self.rows += 1
        self.pending.append(row)
        self.pending_bytes += len(row)

    def reserve(self, count: int) -> int:
        """Take ``count`` places for rows computed at the end; returns the first (0-based).

        Cost: O(count). Raises nothing.
        """
        start = self.rows
        self.rows += count
        self.pending.extend([b""] * count)
        return start

    def write_at(self, place: int, row: bytes) -> None:
        """Fill a reserved place (at the end). Cost: O(1). Raises nothing."""
        self.filled[place] = row

    def take(self) -> list[bytes]:
        """Hand over the rows held since the last call (a reserved place is ``b""``).

        Cost: O(1). Raises nothing.
        """
        rows, self.pending, self.pending_bytes = self.pending, [], 0
        return rows

    def __getstate__(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rows = state["rows"]
        self.pending = []
        self.pending_bytes = 0
        self.filled = {}


class Pipeline:
    """The websocket and REST lines merged by receive time into one :class:`RunSession`.

    The merge is :func:`streamer.batch.reconstruction_pass`'s: a REST row is compared just
    before the first websocket row received after it. Live, a websocket row is held while no
    REST row is buffered, until the REST stream is caught up ``rest_wait`` seconds past the time
    the row was seen on disk (:meth:`step`); ``final`` ends both streams as ``run`` ends them.

    What is saved (pickled) is the session, the cursors (file, lines consumed) of both streams,
    the inputs finished, the problems and counters; the buffered lines are not (they are read
    again from the cursors after a restart).

    Cost: per line, a parse and the session's work; memory: the session plus
    :data:`BUFFER_BYTES` of lines per stream.
    """

    def __init__(self, session: RunSession, rest_wait: float, started: str) -> None:
        self.session = session
        self.rest_wait = rest_wait
        self.started = started
        self.problems = InputProblems()
        self.ws_files: list[FileEnd] = []
        self.rest_files: list[FileEnd] = []
        self.ws_cursor = (0, 0)
        self.rest_cursor = (0, 0)
        self.rest_rows = 0
        self.late_rest_rows = 0
        self.late_rest_locations: list[str] = []
        self.released_rows = 0
        self.released_through: int | None = None
        self.lines_consumed = 0
        self._runtime()

    def _runtime(self) -> None:
        self._ws: deque[Lines | FileEnd] = deque()
        self._rest: deque[Lines | FileEnd] = deque()
        self._ws_pos = 0
        self._rest_pos = 0
        self._ws_bytes = 0
        self._rest_bytes = 0
        self._ws_head: tuple[Any, ...] | None = None
        self._rest_head: tuple[Any, ...] | None = None
        self.rest_watermark: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_ws", "_rest", "_ws_pos", "_rest_pos", "_ws_bytes", "_rest_bytes", "_ws_head",
                     "_rest_head", "rest_watermark"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runtime()

    # -- input ----------------------------------------------------------------------------------

    @property
    def rows(self) -> RowBuffer:
        """The session's rows sink. Cost: O(1); raises AssertionError (a bug) when it is no RowBuffer."""
        rows = self.session.rows
        assert isinstance(rows, RowBuffer)
        return rows

    def _ensure_ws(self, index: int) -> None:
        names = self.session.reconstructor.ws_names
        analysis = self.session.analysis
        while len(names) <= index:
            position = len(names)
            names.append(ws_token(position))
            if analysis is not None:
                analysis.engine.ws_names.append(context_token(position))
                analysis.engine.ws_index[ws_token(position)] = position

    def _ensure_rest(self, index: int) -> None:
        names = self.session.reconstructor.rest_names
        while len(names) <= index:
            names.append(rest_token(len(names)))

    def feed_ws(self, item: Item) -> None:
        """Take one item of the websocket stream (its lines wait in the buffer).

        Cost: O(1), plus a placeholder per new file; raises nothing (a :class:`CaughtUp` is ignored).
        """
        if type(item) is Lines:
            self._ensure_ws(item.file)
            self._ws_bytes += item.size
            self._ws.append(item)
        elif type(item) is FileEnd:
            self._ensure_ws(item.file)
            self._ws.append(item)

    def feed_rest(self, item: Item) -> None:
        """Take one item of the REST stream; a :class:`CaughtUp` moves the REST watermark.

        Cost: O(1), plus a placeholder per new file. Raises nothing.
        """
        if type(item) is Lines:
            self._ensure_rest(item.file)
            self._rest_bytes += item.size
            self._rest.append(item)
        elif type(item) is FileEnd:
            self._ensure_rest(item.file)
            self._rest.append(item)
        elif type(item) is CaughtUp:
            if self.rest_watermark is None or item.at > self.rest_watermark:
                self.rest_watermark = item.at

    def ws_room(self) -> bool:
        """Whether the websocket buffer holds less than :data:`BUFFER_BYTES`. Cost: O(1). Raises nothing."""
        return self._ws_bytes < BUFFER_BYTES

    def rest_room(self) -> bool:
        """Whether the REST buffer holds less than :data:`BUFFER_BYTES`. Cost: O(1). Raises nothing."""
        return self._rest_bytes < BUFFER_BYTES

    # -- the merge ------------------------------------------------------------------------------

    def step(self, *, final: bool = False) -> int:
        """Apply and compare as far as the buffered lines allow; returns the rows processed.

        ``final``: the streams end here (what is buffered is all there is): every websocket row
        is applied, then the REST rows left are compared (the caller then replays the late
        checkpoints and ends the session's stream).

        Cost: a parse per line consumed, the session's work per row; raises OSError if a spool write fails.
        """
        done = 0
        session = self.session
        while True:
            rest = self._rest_row()
            ws = self._ws_row()
            if ws is None:
                # A REST row the applied websocket rows have passed (late), or one without a time,
                # waits for no websocket row: compared now, it is counted now (status.json).
                if rest is not None and (rest[4] is None or (self.released_through is not None
                                                             and rest[4] < self.released_through)):
                    self._checkpoint(rest, None)
                    done += 1
                    continue
                break
            row = ws[1]
            received_us = row[4]
            if rest is not None:
                rest_time = rest[4]
                if rest_time is None or (received_us is not None and rest_time < received_us):
                    self._checkpoint(rest, None)
                    done += 1
                    continue
            elif not final:
                if self.rest_watermark is None or self.rest_watermark < ws[5] + self.rest_wait:
                    break  # held: a REST row received before it may still come
                self.released_rows += 1
                if received_us is not None and (self.released_through is None
                                                or received_us > self.released_through):
                    self.released_through = received_us
            if ws[4]:
                self.problems.note("unparseable_received_at_utc")
            session.websocket_row(ws[0], row, ws[2], ws[3])
            self._ws_head = None
            self._consume_ws()
            done += 1
        if final:
            while True:
                rest = self._rest_row()
                if rest is None:
                    break
                self._checkpoint(rest, math.inf)
                done += 1
        return done

    def _checkpoint(self, rest: tuple[Any, ...], stream_key: float | None) -> None:
        file, line, value, _raw, rest_time = rest
        if rest_time is not None and self.released_through is not None and rest_time < self.released_through:
            self.late_rest_rows += 1
            if len(self.late_rest_locations) < LATE_LOCATIONS:
                self.late_rest_locations.append(f"{rest_token(file)}:{line}")
        self.session.checkpoint(file, line, value, stream_key)
        self.rest_rows += 1
        self._rest_head = None
        self._consume_rest()

    def _ws_row(self) -> tuple[Any, ...] | None:
        """The next websocket row, parsed; non-rows before it are consumed (and recorded)."""
        while self._ws_head is None:
            if not self._ws:
                return None
            item = self._ws[0]
            if type(item) is FileEnd:
                self._ws.popleft()
                self._end(item, ws_token(item.file), self.ws_files)
                self.ws_cursor = (item.file + 1, 0)
                continue
            line = item.first + self._ws_pos
            raw = item.lines[self._ws_pos]
            name = ws_token(item.file)
            value = parse_object(raw, name, line, self.problems)
            if value is None:
                self._consume_ws()
                continue
            received = value.get("received_at_utc")
            if received and type(received) is not str:
                self.problems.add(name, line, MISTYPED_RECEIVED_AT)
                self._consume_ws()
                continue
            received_us = parse_time_us(received) if received else None
            unparseable = bool(received) and received_us is None
            self._ws_head = (item.file * LINE_SPAN + line,
                             (item.file, line, value.get("global_message_sequence"), received, received_us),
                             value, raw, unparseable, item.seen)
        return self._ws_head

    def _consume_ws(self) -> None:
        item = self._ws[0]
        assert type(item) is Lines
        self.ws_cursor = (item.file, item.first + self._ws_pos)
        self.lines_consumed += 1
        self._ws_pos += 1
        if self._ws_pos == len(item.lines):
            self._ws.popleft()
            self._ws_pos = 0
            self._ws_bytes -= item.size

    def _rest_row(self) -> tuple[Any, ...] | None:
        """The next REST row, parsed; non-rows before it are consumed (and recorded)."""
        while self._rest_head is None:
            if not self._rest:
                return None
            item = self._rest[0]
            if type(item) is FileEnd:
                self._rest.popleft()
                self._end(item, rest_token(item.file), self.rest_files)
                self.rest_cursor = (item.file + 1, 0)
                continue
            line = item.first + self._rest_pos
            raw = item.lines[self._rest_pos]
            value = parse_object(raw, rest_token(item.file), line, self.problems)
            if value is None:
                self._consume_rest()
                continue
            received = value.get("received_at_utc")
            rest_time = parse_time_us(received) if received and type(received) is str else None
            self._rest_head = (item.file, line, value, raw, rest_time)
        return self._rest_head

    def _consume_rest(self) -> None:
        item = self._rest[0]
        assert type(item) is Lines
        self.rest_cursor = (item.file, item.first + self._rest_pos)
        self.lines_consumed += 1
        self._rest_pos += 1
        if self._rest_pos == len(item.lines):
            self._rest.popleft()
            self._rest_pos = 0
            self._rest_bytes -= item.size

    def _end(self, end: FileEnd, token: str, files: list[FileEnd]) -> None:
        end = copy.copy(end)
        end.name = token
        while len(files) < end.file:  # (never: files end in order)
            files.append(FileEnd(len(files), token, 0, None, False, "file never read", 0))
        if len(files) == end.file:
            files.append(end)
        else:
            files[end.file] = end
        if end.truncated:
            self.problems.truncated.append({"file": token, "reason": end.truncated})

    # -- figures --------------------------------------------------------------------------------

    def totals(self) -> dict[str, Any]:
        """What has been processed so far, for ``status.json``.

        Cost: O(comparison statuses + divergence categories). Raises nothing.
        """
        reconstructor = self.session.reconstructor
        totals: dict[str, Any] = {
            "websocket_rows": self.session.ws_rows,
            "rest_checkpoints": reconstructor.rest_rows,
            "rest_checkpoints_rejected": reconstructor.rest_rejected,
            "comparison_rows": reconstructor.comparison_rows,
            "comparison_status_counts": dict(sorted(reconstructor.status_counts.items())),
            "lines_consumed": self.lines_consumed,
        }
        gates: dict[str, Any] = {"10c": reconstructor.gate()}
        analysis = self.session.analysis
        if analysis is not None:
            engine = analysis.engine
            aggregates = engine.aggregates
            totals.update({
                "divergent_rows": aggregates.divergent_rows,
                "divergence_results": aggregates.divergence_results,
                "divergence_category_counts": dict(sorted(aggregates.category_counts.items())),
                "context_misses": engine.join.misses,
            })
            gates["divergence"] = aggregates.gate()
        totals["gates_so_far"] = gates
        return totals

    def follow_counters(self) -> dict[str, Any]:
        """Follow's own counters: REST rows compared late, websocket rows released by ``rest_wait``.

        Cost: O(1) (at most :data:`LATE_LOCATIONS` locations). Raises nothing.
        """
        return {"rest_rows_compared_late": self.late_rest_rows,
                "rest_rows_compared_late_first": list(self.late_rest_locations),
                "websocket_rows_released_by_rest_wait": self.released_rows}


def named_problems(problems: InputProblems, names: Names) -> InputProblems:
    """A copy of ``problems`` with the placeholders replaced by file names.

    Cost: O(problem kinds + locations + truncated files); raises IndexError as :meth:`Names.name` does.
    """
    out = InputProblems()
    for (file, reason), count in problems.counts.items():
        key = (names.name(file), reason)
        out.counts[key] = out.counts.get(key, 0) + count
        out.locations.setdefault(key, []).extend(problems.locations.get((file, reason), []))
    out.truncated = [{"file": Path(names.name(item["file"])).as_posix(), "reason": item["reason"]}
                     for item in problems.truncated]
    out.notes = dict(problems.notes)
    return out


# -- flushes: segments, state, status ----------------------------------------------------------

@dataclass
class Snapshot:
    """What one flush publishes; made while the pipeline is quiet, written by the publisher."""

    segment: int  #: the segment number, or 0 when this flush has no rows to publish
    rows: list[bytes]
    divergence_slice: tuple[int, int]  #: [start, end) of the divergence rows spool: this flush's rows
    references_slice: tuple[int, int]  #: and of the references spool
    member: bytes  #: the rows as a gzip member for the rows spool (placeholders kept)
    state: bytes  #: the pickled state (commit point)
    status: dict[str, Any]
    summary: dict[str, Any]  #: the segment's line of the segment index (and of its segment.json)
    index_line: bytes
    sync: list[Path] = field(default_factory=list)  #: files to fsync before the state


class Publisher:
    """Writes snapshots: the segment, then the state (the commit), then ``status.json``.

    Run in a worker thread; one snapshot at a time, in order. Cost per flush: O(the segment's
    rows + the state), never O(the run).
    """

    def __init__(self, out: Path, state: StateDir, tails: dict[str, Tailer]) -> None:
        self.out = Path(out)
        self.state = state
        self.tails = tails
        self.segments = self.out / SEGMENTS_DIR
        self.segments.mkdir(parents=True, exist_ok=True)
        self.index = self.segments / SEGMENT_INDEX

    def names(self, single_ws: bool = False) -> Names:
        """The placeholders' names now (the files' current names). Cost: O(files read). Raises nothing."""
        return Names(self.tails["ws"].names(), self.tails["rest"].names(), single_ws=single_ws)

    def commit(self, snapshot: Snapshot) -> None:
        """Write one snapshot durably (see the class docstring).

        Cost: O(segment + state), fsyncs; raises OSError if a write fails, RuntimeError if a spool is short.
        """
        fsync_paths(snapshot.sync)
        if snapshot.member:
            append_durably(self.state.rows_spool, snapshot.member)
        if snapshot.segment:
            self._segment(snapshot)
        self.state.save(snapshot.state)
        write_atomic(self.out / STATUS_NAME, _json_bytes(snapshot.status))

    def _segment(self, snapshot: Snapshot) -> None:
        """Write one segment directory (streamed: memory O(1 MiB), whatever the segment's size)."""
        names = self.names()
        number = snapshot.segment
        final = self.segments / f"{number:06d}"
        temp = self.segments / f".{number:06d}.tmp"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        files = {ROWS_NAME: _write_gzip_lines(temp / ROWS_NAME, (names.json(row) for row in snapshot.rows if row))}
        for name, spool, span in (("divergence_rows.jsonl.gz", "divergence_rows.part", snapshot.divergence_slice),
                                  ("raw_and_rest_row_references.jsonl.gz", "references.part",
                                   snapshot.references_slice)):
            files[name] = _write_gzip_lines(temp / name, (names.json(record) for record in
                                                          _iter_spool_records(self.state.work / spool, span)))
        summary = dict(snapshot.summary)
        summary["totals"] = snapshot.status["totals"]
        summary["files"] = files
        with open(temp / "segment.json", "wb") as handle:
            handle.write(_json_bytes(summary))
            handle.flush()
            os.fsync(handle.fileno())
        shutil.rmtree(final, ignore_errors=True)
        replace_directory(temp, final)
        append_durably(self.index, snapshot.index_line)

    def restore(self, segments: int, index_bytes: int) -> None:
        """After a restart: drop what the last committed state does not list.

        Cost: O(segment directories); raises OSError when the segment index cannot be created or cut.
        """
        for path in self.segments.iterdir():
            name = path.name
            if name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)
            elif name.isdigit() and int(name) > segments:
                shutil.rmtree(path, ignore_errors=True)
        if not self.index.exists():
            self.index.touch()
        os.truncate(self.index, min(index_bytes, self.index.stat().st_size))


def _release_memory() -> None:
    """Give freed heap memory back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    The pipeline parses and drops large REST rows in one thread while readers allocate in
    others; without a trim, glibc keeps the freed pages of each thread's arena, and RSS creeps up
    with the run's length although the live data does not.
    """
    trim = _MALLOC_TRIM
    if trim is not None:
        trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim() if sys.platform.startswith("linux") else None


def _gzip(data: bytes) -> bytes:
    compressor = gzip_compressor()
    return compressor.compress(data) + compressor.flush()


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _write_gzip_lines(path: Path, lines: Iterator[bytes]) -> dict[str, Any]:
    """Write ``lines`` as gzip JSONL (:class:`GzipRowsWriter`, durably); returns its bytes and sha256."""
    with GzipRowsWriter(path) as rows:
        for line in lines:
            rows.write(line)
    return {"bytes": rows.size, "sha256": rows.sha256}


_SPOOL_SEPARATOR = b"\n    "  # (what DivergenceAnalysis writes before each record)


def _spool_chunks(path: Path, span: tuple[int, int]) -> Iterator[bytes]:
    """The bytes of a spool between two committed lengths, 1 MiB at a time (none: not opened)."""
    start, end = span
    if end <= start:
        return  # (a spool nothing was ever committed to may not exist)
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                raise RuntimeError(f"{path} is shorter than its committed length")
            left -= len(chunk)
            yield chunk


def _iter_spool_records(path: Path, span: tuple[int, int]) -> Iterator[bytes]:
    """The records of a manifest spool between two committed lengths."""
    carry = b""
    for chunk in _spool_chunks(path, span):
        pieces = (carry + chunk).split(_SPOOL_SEPARATOR)
        carry = pieces.pop()  # (may be a record not complete yet)
        for piece in pieces:
            record = piece[:-1] if piece.endswith(b",") else piece
            if record:
                yield record
    record = carry[:-1] if carry.endswith(b",") else carry
    if record:
        yield record


def _spool_count(path: Path, span: tuple[int, int]) -> int:
    """How many records a manifest spool holds between two committed lengths. O(span)."""
    count = 0
    carry = b""
    for chunk in _spool_chunks(path, span):
        data = carry + chunk
        count += data.count(_SPOOL_SEPARATOR)
        carry = data[-(len(_SPOOL_SEPARATOR) - 1):]  # (a separator cut by the boundary is whole next time)
    return count


def iter_spooled_rows(path: Path, length: int) -> Iterator[bytes]:
    """The rows of the comparison rows spool (gzip members of JSON lines) in its committed
    ``length``, in order (none when nothing was committed: the file may not exist then).

    Cost: O(spool bytes); raises OSError if unreadable, RuntimeError (after the rows) if damaged or cut.
    """
    members = GzipMembers()
    splitter = LineSplitter()
    for chunk in _spool_chunks(path, (0, length)):
        for piece in members.feed(chunk):
            yield from splitter.feed(piece)
    if members.error is not None or not members.at_boundary:
        raise RuntimeError(f"{path}: the comparison rows spool is damaged ({members.error or 'truncated'})")
    last = splitter.finish()
    if last:
        yield last


# -- the follower ------------------------------------------------------------------------------

@dataclass
class FollowOutcome:
    """What a follow run ended with."""

    outcome: batch.Outcome | None
    config: batch.RunConfig
    reason: str
    status: Path


class Follower:
    """One ``streamer follow`` run: restore or start, follow, flush, and on stop, publish.

    :param config: the flags.
    :param clock: monotonic time (the tailers' and the pipeline's).
    :param log: where one-line messages go (stderr by default).
    """

    def __init__(self, config: FollowConfig, *, clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] | None = None, signals: list[int] | None = None) -> None:
        config.check()
        #: SIGINT/SIGTERM as :func:`follow`'s handlers record them, from before the state loads
        self.signals = signals if signals is not None else []
        self.config = config
        self.clock = clock
        self.log = log or (lambda message: print(f"streamer follow: {message}", file=sys.stderr, flush=True))
        self.m10b = read_manifest(config.manifest_10b, batch.MANIFEST_KEYS)
        self.market_labels = _labels_digest(self.m10b)  #: what the rows carry of the manifest (saved, checked)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = StateDir(config.state_dir)
        self.state.lock(self.out)
        try:
            self._open_state()
        except BaseException:
            self.state.unlock()
            raise
        self.stop_reason: str | None = None
        self._stop_reading = False
        self._last_input = clock()
        self._at_end: set[str] = set()  # the streams whose last item was a CaughtUp
        self._last_flush = clock()
        self.flushed_lines = self.pipeline.lines_consumed
        write_atomic(self.out / STATUS_NAME, _json_bytes(self._status(False, 0)))

    # -- state --------------------------------------------------------------------------------

    def _open_state(self) -> None:
        config = self.config
        saved = self.state.load()
        tails_state: dict[str, Any] = {}
        if saved is None:
            self.state.fresh()
            session = RunSession.for_run(
                markets_by_token(self.m10b), [], [], top_n=config.top_n, context_limit=config.context_limit,
                evidence_seconds=config.price_evidence_seconds, rows_name=str(self.out / ROWS_NAME),
                output_manifest=self.out / MANIFEST_NAME, work_dir=self.state.work)
            assert session.analysis is not None
            session.analysis.engine.multi_ws = True  # files are named by placeholders (see Names)
            session.rows = RowBuffer()
            self.pipeline = Pipeline(session, config.rest_wait, iso_z())
            self.segments = 0
            self.index_bytes = 0
            self.rows_spool_bytes = 0
            self.flushes = 0
        else:
            if saved["config"] != config.identity():
                now = config.identity()
                changed = ", ".join(f"{_FLAG_OF.get(key, key)} {saved['config'].get(key)!r} (now {now.get(key)!r})"
                                    for key in sorted(set(now) | set(saved["config"]))
                                    if saved["config"].get(key) != now.get(key))
                raise UsageError(f"the state in {self.state.path} was made with other flags: {changed}; "
                                 "use the same flags or a new --state directory")
            made_with = saved.get("market_labels")
            if made_with is not None and made_with != self.market_labels:
                raise UsageError(f"the market labels of the 10B manifest {config.manifest_10b} changed since the state "
                                 f"in {self.state.path} was made (the rows published so far carry them); put them "
                                 "back as they were, or use a new --state directory")
            self.pipeline = saved["pipeline"]
            self.pipeline.rest_wait = config.rest_wait
            analysis = self.pipeline.session.analysis
            assert analysis is not None
            try:
                analysis.engine.reopen(self.state.work)
            except ValueError as exc:
                raise UsageError(f"the follow state in {self.state.path} is damaged: {exc}") from None
            self.state.remove_unlisted_runs(analysis.engine.spool.runs)
            self.segments = saved["segments"]
            self.index_bytes = saved["index_bytes"]
            self.rows_spool_bytes = saved["rows_spool_bytes"]
            self.flushes = saved["flushes"]
            # Outputs are serialized by json once any line needed the standard parser: that
            # choice, made by lines read before the restart, holds after it too.
            decoders._fallbacks[0] = max(decoders._fallbacks[0], saved.get("decoder_fallbacks", 0))
            self.state.cut_rows_spool(self.rows_spool_bytes)
            tails_state = saved["tails"]
            self.log(f"resuming from {self.state.path}: websocket at file {self.pipeline.ws_cursor[0]} line "
                     f"{self.pipeline.ws_cursor[1]}, REST at file {self.pipeline.rest_cursor[0]} line "
                     f"{self.pipeline.rest_cursor[1]}")
        engine = self.pipeline.session.analysis.engine  # type: ignore[union-attr]
        self.spool_lengths = engine.spool_lengths()
        self.records_published = saved.get("records_published", 0) if saved is not None else 0
        self.tails = {
            "ws": Tailer(config.ws, rotate_wait=config.rotate_wait, clock=self.clock, state=tails_state.get("ws")),
            "rest": Tailer(config.rest, rotate_wait=config.rotate_wait, clock=self.clock,
                           state=tails_state.get("rest")),
        }
        self.publisher = Publisher(self.out, self.state, self.tails)
        self.publisher.restore(self.segments, self.index_bytes)
        for leftover in self.out.glob(f".{MANIFEST_NAME}.follow-tmp"):  # an exit cut short
            leftover.unlink()
        # (and the temporary files of outputs a kill interrupted; the lock says no one else writes them)
        remove_leftovers(self.out, [ROWS_NAME, MANIFEST_10C_NAME, MANIFEST_NAME, REPORT_NAME, STATUS_NAME,
                                    f".{MANIFEST_NAME}.follow-tmp"])
        self._runs_synced: set[str] = {path.name for path in engine.spool.runs}

    def close(self) -> None:
        """Close the files being read and the spools (kept on disk); release the state directory.

        Cost: O(files waiting); raises OSError if a spool cannot be flushed (the lock is released
        all the same).
        """
        try:
            for tail in self.tails.values():
                tail.close()
            analysis = self.pipeline.session.analysis
            if analysis is not None:
                analysis.engine.close()
        finally:
            self.state.unlock()

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self, stopped: bool = False) -> Snapshot:
        """Everything one flush publishes (the pipeline must not change meanwhile).

        Cost: O(state + segment); raises OSError if a spool cannot be flushed or read, RuntimeError if short.
        """
        pipeline = self.pipeline
        engine = pipeline.session.analysis.engine  # type: ignore[union-attr]
        rows = pipeline.rows.take()
        lengths = engine.spool_lengths()
        before = self.spool_lengths
        divergence = (before.get("divergence_rows.part", 0), lengths.get("divergence_rows.part", 0))
        references = (before.get("references.part", 0), lengths.get("references.part", 0))
        records = (self.records_published,
                   self.records_published + _spool_count(self.state.work / "divergence_rows.part", divergence))
        self.spool_lengths = lengths
        self.records_published = records[1]
        comparison_rows = pipeline.rows.rows
        segment = 0
        summary: dict[str, Any] = {}
        index_line = b""
        names = self.publisher.names()
        cursors = {"websocket": _cursor(pipeline.ws_cursor, names.names["w"]),
                   "rest": _cursor(pipeline.rest_cursor, names.names["r"])}
        if rows or records[1] > records[0]:
            self.segments += 1
            segment = self.segments
            summary = {
                "segment": segment,
                "path": f"{SEGMENTS_DIR}/{segment:06d}",
                "comparison_rows": sum(1 for row in rows if row),
                "comparison_lines": [comparison_rows - len(rows) + 1, comparison_rows] if rows else None,
                "comparison_lines_reserved": [comparison_rows - len(rows) + 1 + place
                                              for place, row in enumerate(rows) if not row],
                "divergence_rows": records[1] - records[0],
                "divergence_row_numbers": [records[0] + 1, records[1]] if records[1] > records[0] else None,
                "closed_at_utc": iso_z(),
                "cursors": cursors,
            }
            index_line = json.dumps(summary, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
            self.index_bytes += len(index_line)
        member = _gzip(b"".join(row + b"\n" for row in rows)) if rows else b""
        self.rows_spool_bytes += len(member)
        self.flushes += 1
        self.flushed_lines = pipeline.lines_consumed
        runs = engine.spool.runs
        sync = [self.state.work / name for name in lengths]
        sync += [run for run in runs if run.name not in self._runs_synced]
        self._runs_synced = {run.name for run in runs}
        tails = {"ws": self.tails["ws"].snapshot(pipeline.ws_cursor),
                 "rest": self.tails["rest"].snapshot(pipeline.rest_cursor)}
        status = self._status(stopped, segment, cursors)
        state = pickle.dumps({
            "format": STATE_FORMAT, "config": self.config.identity(), "pipeline": pipeline, "tails": tails,
            "segments": self.segments, "index_bytes": self.index_bytes, "rows_spool_bytes": self.rows_spool_bytes,
            "flushes": self.flushes, "decoder_fallbacks": decoders._fallbacks[0],
            "records_published": self.records_published, "market_labels": self.market_labels,
        }, protocol=pickle.HIGHEST_PROTOCOL)
        status["state_bytes"] = len(state)
        return Snapshot(segment, rows, divergence, references, member, state, status, summary, index_line, sync)

    def _status(self, stopped: bool, segment: int, cursors: dict[str, Any] | None = None) -> dict[str, Any]:
        pipeline = self.pipeline
        names = self.publisher.names()
        if cursors is None:
            cursors = {"websocket": _cursor(pipeline.ws_cursor, names.names["w"]),
                       "rest": _cursor(pipeline.rest_cursor, names.names["r"])}
        return {
            "schema_name": "streamer_follow_status",
            "schema_version": 1,
            "state": "stopped" if stopped else "following",
            "started_at_utc": pipeline.started,
            "updated_at_utc": iso_z(),
            "totals": {**pipeline.totals(), "divergence_rows_published": self.records_published},
            "cursors": cursors,
            "inputs": {"websocket": self.tails["ws"].status(), "rest": self.tails["rest"].status()},
            "follow": _named_counters(pipeline, names),
            "segments": {"dir": SEGMENTS_DIR, "count": self.segments, "index": f"{SEGMENTS_DIR}/{SEGMENT_INDEX}",
                         "index_bytes": self.index_bytes, "last": self.segments or None,
                         "made_by_this_flush": bool(segment)},
            "flushes": self.flushes,
        }

    def commit(self, snapshot: Snapshot) -> None:
        """Write a snapshot (worker thread), then give freed heap memory back.

        Cost: as :meth:`Publisher.commit`, O(segment + state); raises what it raises.
        """
        self.publisher.commit(snapshot)
        _release_memory()

    # -- the tasks ------------------------------------------------------------------------------

    async def run(self) -> FollowOutcome:
        """Follow until a signal or ``--exit-when-idle``; then publish the final outputs.

        Cost: O(bytes read), O(segment + state) per flush; raises an ExceptionGroup around its tasks' errors.
        """
        self._stop = anyio.Event()
        self._wake = anyio.Event()
        self._signal_scope = anyio.CancelScope()
        limiter = anyio.CapacityLimiter(READ_THREADS)
        ws_send, ws_receive = anyio.create_memory_object_stream[Item](STREAM_ITEMS)
        rest_send, rest_receive = anyio.create_memory_object_stream[Item](STREAM_ITEMS)
        snap_send, snap_receive = anyio.create_memory_object_stream[Snapshot](0)
        async with anyio.create_task_group() as group:
            await group.start(self._signals)  # (kept until the end: a second signal is ignored)
            async with anyio.create_task_group() as work:
                work.start_soon(self._publish, snap_receive)
                async with anyio.create_task_group() as readers:
                    readers.start_soon(self._discover, self.tails["ws"], limiter)
                    readers.start_soon(self._discover, self.tails["rest"], limiter)
                    readers.start_soon(self._read, self.tails["ws"], ws_send, limiter)
                    readers.start_soon(self._read, self.tails["rest"], rest_send, limiter)
                    try:
                        await self._process(ws_receive, rest_receive, snap_send)
                    finally:
                        readers.cancel_scope.cancel()  # the discovery loops
            # (The publisher has committed the last snapshot: it ends when its stream closes.)
            try:
                return await self._finish()
            finally:
                self._signal_scope.cancel()

    async def _signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The handlers only record (see follow()); this task acts on what they recorded. An anyio
        # signal receiver would put the default handlers back when it closes, and a signal in
        # that moment would end the process after the outputs were published.
        with self._signal_scope:
            task_status.started()
            handled = 0
            while True:
                while handled < len(self.signals):
                    self._on_signal(self.signals[handled])
                    handled += 1
                await anyio.sleep(SIGNAL_POLL)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop_reason is None:
            self.log(f"{name}: finishing the batch in hand, then publishing")
            self.stop(name)
        else:
            self.log(f"{name}: already stopping")

    def stop(self, reason: str) -> None:
        """Ask the follower to stop (finish the batch in hand, publish, return).

        Cost: O(1); call it in :meth:`run`'s event loop: raises AttributeError before :meth:`run` starts.
        """
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop_reading = True
        self._stop.set()
        self._wake.set()

    async def _discover(self, tail: Tailer, limiter: anyio.CapacityLimiter) -> None:
        first = True
        while True:
            await anyio.to_thread.run_sync(tail.scan, limiter=limiter)
            for event in tail.drain_events():
                self.log(event)
            if first and not tail.names():  # a mistyped glob must not look like a recorder not started
                self.log(f"no file matches {tail.pattern} yet: waiting for one (looking every {self.config.poll:g} s)")
            first = False
            self._wake.set()
            await anyio.sleep(self.config.poll)

    async def _read(self, tail: Tailer, send: MemoryObjectSendStream[Item], limiter: anyio.CapacityLimiter) -> None:
        async with send:
            while not self._stop_reading:
                items = await anyio.to_thread.run_sync(tail.read, limiter=limiter)
                for item in items:
                    await send.send(item)  # (whole batches: what was read is delivered, even when stopping)
                    self._wake.set()
                if not items:
                    with anyio.move_on_after(self.config.poll):
                        await self._stop.wait()

    async def _publish(self, snapshots: MemoryObjectReceiveStream[Snapshot]) -> None:
        async with snapshots:
            async for snapshot in snapshots:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.commit, snapshot)

    def _pull(self, ws: MemoryObjectReceiveStream[Item], rest: MemoryObjectReceiveStream[Item],
              open_streams: set[str]) -> int:
        """Take what the readers sent, while the buffers have room (all of it when stopping)."""
        pulled = 0
        pipeline = self.pipeline
        for name, stream, feed, room in (("ws", ws, pipeline.feed_ws, pipeline.ws_room),
                                         ("rest", rest, pipeline.feed_rest, pipeline.rest_room)):
            while name in open_streams and (room() or self._stop_reading):
                try:
                    item = stream.receive_nowait()
                except anyio.WouldBlock:
                    break
                except anyio.EndOfStream:
                    open_streams.discard(name)
                    break
                feed(item)
                pulled += 1
                if type(item) is CaughtUp:
                    self._at_end.add(name)
                else:
                    self._at_end.discard(name)
                    self._last_input = self.clock()
        return pulled

    def _idle(self, now: float) -> bool:
        """``--exit-when-idle``: nothing new for that long, both readers at the end of their newest file."""
        limit = self.config.exit_when_idle
        return (limit is not None and now - self._last_input >= limit and not self._stop_reading
                and self._at_end == {"ws", "rest"} and not self.tails["ws"].queue and not self.tails["rest"].queue)

    async def _process(self, ws: MemoryObjectReceiveStream[Item], rest: MemoryObjectReceiveStream[Item],
                       snapshots: MemoryObjectSendStream[Snapshot]) -> None:
        config = self.config
        open_streams = {"ws", "rest"}
        async with ws, rest, snapshots:
            while True:
                self._wake = anyio.Event()
                pulled = self._pull(ws, rest, open_streams)
                done = self.pipeline.step()
                dirty = self.pipeline.lines_consumed != self.flushed_lines
                now = self.clock()
                if self._stop_reading and not open_streams:
                    break
                if self._idle(now):
                    self.log(f"no new input for {config.exit_when_idle:g} s: finishing")
                    self.stop("idle")
                    continue
                if dirty and (now - self._last_flush >= config.flush_interval
                              or self.pipeline.rows.pending_bytes >= SEGMENT_ROWS_BYTES):
                    await self._flush(snapshots)
                    continue
                if pulled or done:
                    await anyio.lowlevel.checkpoint()
                    continue
                wait = config.flush_interval - (now - self._last_flush) if dirty else config.flush_interval
                if config.exit_when_idle is not None:
                    wait = min(wait, max(config.exit_when_idle - (now - self._last_input), config.poll))
                with anyio.move_on_after(max(wait, 0.001)):
                    await self._wake.wait()
            # The readers are done: what was read is buffered. Commit it.
            await self._flush(snapshots)

    async def _flush(self, snapshots: MemoryObjectSendStream[Snapshot]) -> None:
        with anyio.CancelScope(shield=True):
            snapshot = await anyio.to_thread.run_sync(self.snapshot)
            await snapshots.send(snapshot)
        self._last_flush = self.clock()

    # -- the end --------------------------------------------------------------------------------

    async def _finish(self) -> FollowOutcome:
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(self.finish)

    def finish(self) -> FollowOutcome:
        """The four outputs of ``run``, from a copy of the committed state and what is buffered.

        The live state is left as committed, so that a later start resumes from it (the lines
        buffered here are read again then).

        Cost: O(spools + outputs), websocket re-reads; raises InputError (a re-read), OSError, RuntimeError.
        """
        reason = self.stop_reason or "stopped"
        run_config = self.config.run_config()
        status_path = self.out / STATUS_NAME
        ws_end = self.tails["ws"].open_file_end()
        rest_end = self.tails["rest"].open_file_end()
        if not (self.tails["ws"].caught_up() and self.tails["rest"].caught_up()):
            # Stopped right after a resume: the state's rows come from lines not reached again,
            # whose files cannot be described yet. The state stays as committed.
            why = "stopped before reading caught up with the saved state (it is kept; start again to resume)"
        elif not self.pipeline.ws_files and ws_end is None and not self.pipeline._ws:
            why = (f"no websocket file matched {self.config.ws}"
                   if self.stop_reason == "idle" and not self.tails["ws"].names()
                   else "stopped before any websocket line was read")
        else:
            why = None
        if why is not None:
            self.log(f"{why}: no final outputs written")
            self._stopped_status(None, None)
            return FollowOutcome(None, run_config, reason, status_path)
        final = self._final_pipeline()
        try:
            outcome = self._publish_final(final, ws_end, rest_end)
        except (StreamerError, OSError) as exc:  # (reported by the command line; the status says it too)
            try:
                self._stopped_status(None, None, error=str(exc))
            except OSError:
                pass
            raise
        finally:
            final.session.close()
            shutil.rmtree(self.state.final_work, ignore_errors=True)
        self._stopped_status(outcome, final)
        return FollowOutcome(outcome, run_config, reason, status_path)

    def _final_pipeline(self) -> Pipeline:
        """The live pipeline, moved onto a copy of its spools: the committed ones stay as they are.

        After the last flush the live pipeline is the committed state plus the lines read but
        not processed yet; ending the streams changes it, so it works on copies of the spools
        (the state on disk, which a restart resumes from, names the originals).
        """
        live = self.pipeline
        final_work = self.state.final_work
        shutil.rmtree(final_work, ignore_errors=True)
        shutil.copytree(self.state.work, final_work)
        analysis = live.session.analysis
        assert analysis is not None
        engine = analysis.engine
        detached = engine.__getstate__()  # (flushes; the spools by length)
        engine.close()
        engine.__setstate__(detached)
        engine.reopen(final_work)
        analysis.work_dir = final_work
        return live

    def _publish_final(self, final: Pipeline, ws_end: FileEnd | None, rest_end: FileEnd | None) -> batch.Outcome:
        config = self.config
        m10b = read_manifest(config.manifest_10b, batch.MANIFEST_KEYS)  # (first: a refusal writes nothing)
        if _labels_digest(m10b) != self.market_labels:  # the manifest's file list may change, not its labels
            raise InputError(f"the market labels of the 10B manifest {config.manifest_10b} changed while follow ran "
                             "(the rows carry those it had at the start); put them back as they were, then start "
                             "follow again")
        if ws_end is not None:
            final.feed_ws(ws_end)
        if rest_end is not None:
            final.feed_rest(rest_end)
        final.step(final=True)
        names_now = self.publisher.names()
        ws_names = names_now.names["w"]
        single = len(final.ws_files) <= 1
        names = Names(ws_names, names_now.names["r"], single_ws=single)
        temp_manifest = self.out / f".{MANIFEST_NAME}.follow-tmp"
        run_config = config.run_config(temp_manifest)
        ws_copies, rest_copies = self.tails["ws"].compressed_copies, self.tails["rest"].compressed_copies
        ws_inputs = [_input_stats(end, names, KIND_WS, ws_copies) for end in final.ws_files]
        rest_inputs = [_input_stats(end, names, KIND_REST, rest_copies) for end in final.rest_files]
        final.session.replay_late(lambda: batch.iter_ws_rows_again(ws_inputs))
        final.session.end_of_stream()
        buffer = final.rows
        extra = buffer.take()
        with GzipRowsWriter(run_config.output_rows) as rows:
            spooled = iter_spooled_rows(self.state.rows_spool, self.rows_spool_bytes)
            for place, row in enumerate(itertools.chain(spooled, extra)):
                if not row:
                    row = buffer.filled.pop(place)
                rows.write(names.json(row))
        if rows.rows != final.session.reconstructor.comparison_rows:
            raise RuntimeError(f"follow's rows spool holds {rows.rows} rows, the engines made "
                               f"{final.session.reconstructor.comparison_rows}")
        analysis = final.session.analysis
        assert analysis is not None
        context_limit, evidence_seconds, _ws, comparison_names = analysis.args
        # An exact recomputation (a second engine) reads the final rows file: real names there.
        analysis.args = (context_limit, evidence_seconds, [stats.name for stats in ws_inputs], comparison_names)
        optional = batch.optional_manifests(run_config)
        problems = named_problems(final.problems, names)
        extra_fields = {"follow": {**final.follow_counters(), "state": str(self.state.path),
                                   "status": str(self.out / STATUS_NAME), "segments": self.segments}}
        outcome = batch.finish_run(final.session, run_config, m10b, optional, ws_inputs, rest_inputs, rows,
                                   problems, final.started, fix_10c=names.json, extra_fields=extra_fields)
        outcome.warnings = [names.text(warning) for warning in outcome.warnings]  # (their places name files)
        final_manifest = self.out / MANIFEST_NAME
        with open(temp_manifest, "rb") as source, AtomicFile(final_manifest) as target:
            for line in source:
                target.handle.write(names.json(line))
        temp_manifest.unlink()
        outcome.written["manifest"] = final_manifest
        return outcome  # (the command line prints its problems, once, as every command does)

    def _stopped_status(self, outcome: batch.Outcome | None, final: Pipeline | None, error: str | None = None) -> None:
        status_path = self.out / STATUS_NAME
        try:
            status = json.loads(status_path.read_text())
        except (OSError, ValueError):
            status = self._status(True, 0)
        status["state"] = "stopped"
        status["stop_reason"] = self.stop_reason
        if error is not None:
            status["final_error"] = error
        status["updated_at_utc"] = iso_z()
        if outcome is not None:
            status["final_outputs"] = {name: str(path) for name, path in sorted(outcome.written.items())}
            status["final_gates"] = {"10c": outcome.reconstruction_gate, "divergence": outcome.gate}
        if final is not None:  # the exit's own work (rows of late REST rows, say) is in no segment
            status["final_totals"] = final.totals()
            status["final_follow"] = _named_counters(final, self.publisher.names())
        write_atomic(status_path, _json_bytes(status))


def _labels_digest(m10b: Any) -> str:
    """A digest of the market labels a 10B manifest gives the rows (its file list aside). Cost: O(tokens)."""
    labels = json.dumps(markets_by_token(m10b), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(labels.encode("utf-8", "surrogatepass")).hexdigest()


def _named_counters(pipeline: Pipeline, names: Names) -> dict[str, Any]:
    """:meth:`Pipeline.follow_counters` with file names in its locations, not placeholders."""
    counters = pipeline.follow_counters()
    counters["rest_rows_compared_late_first"] = [names.text(where) for where in counters["rest_rows_compared_late_first"]]
    return counters


def _cursor(cursor: tuple[int, int], names: list[str]) -> dict[str, Any]:
    file, line = cursor
    return {"file": file, "name": names[file] if file < len(names) else None, "lines_consumed": line}


def _input_stats(end: FileEnd, names: Names, kind: str,
                 compressed_copies: dict[int, tuple[str, int, int]]) -> InputStats:
    name = names.name(end.name)
    path = Path(name)
    copy = compressed_copies.get(end.file)
    if copy is not None and os.path.exists(copy[0]):
        try:
            st = os.stat(path)
            still_there = (st.st_dev, st.st_ino) == copy[1:]
        except OSError:
            still_there = False
        if not still_there:  # gone, or its name taken by a new file (a recorder's live name):
            path = Path(copy[0])  # read again (replay, second pass) through its gzip copy, the same lines
    stats = InputStats(path, name, kind)
    stats.size = end.size
    stats.sha256 = end.sha256 or ""
    stats.compressed = end.compressed
    stats.truncated = end.truncated
    stats.lines = stats.line_limit = end.lines
    return stats


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas (as ``MALLOC_ARENA_MAX`` does), before threads start.

    Lines are allocated by reader threads and freed by the pipeline: with an arena per thread,
    the freed memory stays spread over several heaps. Nothing happens off glibc.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def follow(config: FollowConfig, *, log: Callable[[str], None] | None = None) -> FollowOutcome:
    """Run ``streamer follow`` until a signal or ``--exit-when-idle``; return what it published.

    Cost: O(bytes read); raises as below, at the start or while running (unwrapped from the tasks' group).

    :raises UsageError: for a bad flag, a state made with other flags, or a state in use.
    :raises InputError: when the 10B manifest, or an input re-read at exit, is unreadable.
    :raises OSError: when an output or the state cannot be written.
    """
    _limit_malloc_arenas()
    received: list[int] = []
    previous = _record_signals(received)  # from before the state loads (it may take a while) to the end
    try:
        follower = Follower(config, log=log, signals=received)
    except BaseException:
        _restore_signals(previous)
        raise
    try:
        return anyio.run(follower.run)
    except BaseExceptionGroup as group:
        # The task groups wrap what a task raised; the CLI turns a StreamerError or an OSError
        # into one line and an exit code, so hand the first of those on (anything else is a bug
        # and keeps its group and traceback).
        error = _first_reportable(group)
        if error is None:
            raise
        raise error from group
    finally:
        _restore_signals(previous)
        follower.close()


def _record_signals(received: list[int]) -> dict[int, Any]:
    """Make SIGINT and SIGTERM append to ``received``; return the handlers they had.

    Outside the main thread (no signal handling there) nothing changes: such a follower stops
    only when idle or through :meth:`Follower.stop`. Cost: O(1). Raises nothing.
    """
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda number, _frame: received.append(number))
    except ValueError:  # not the main thread
        pass
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`_record_signals` replaced. Cost: O(1). Raises nothing."""
    for signum, handler in previous.items():
        if handler is not None:  # (None: a handler set outside Python, which cannot be put back)
            signal.signal(signum, handler)


def _first_reportable(group: BaseExceptionGroup) -> BaseException | None:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found = _first_reportable(error)
            if found is not None:
                return found
        elif isinstance(error, (StreamerError, OSError)):
            return error
    return None
