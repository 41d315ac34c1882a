"""The run pipeline as one object: websocket rows and REST checkpoints in, engine state held.

:class:`RunSession` is what ``streamer run`` does per row, taken out of its file loop so that two
drivers share it: the batch driver (:func:`streamer.batch.run`, files in manifest order) and the
live driver (:mod:`streamer.follow`, files discovered as a recorder writes them). It owns no file
policy: the driver decides when a REST checkpoint is due (SPEC section 3) and where comparison
rows go; the session applies, compares and feeds the analysis join. Everything it holds can be
pickled (the analysis spools are reattached with
:meth:`streamer.analysis.DivergenceAnalysis.reopen`), which is how ``follow`` saves its state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Protocol

from .analysis import DivergenceAnalysis, make_work_dir, remove_work_dir
from .decoders import dumps, exact_dumps, exact_loads, exact_output, fallback_loads, loads
from .errors import UsageError, stops_held
from .join import ContextJoin
from .payloads import InexactNumber, analysis_parts
from .reconstruct import Anomalies, Reconstructor, comparison_row_count, rest_time_us

#: Websocket rows between sweeps of the join's idle tokens.
SWEEP_EVERY = 1 << 16
#: Websocket rows between two progress messages to a relayed analysis (see RunSession.relay).
RELAY_EVERY = 1 << 12


def row_parts(value: dict[str, Any], raw: bytes | None) -> dict[str, list[tuple[Any, ...]]]:
    """:func:`~streamer.payloads.analysis_parts` of a websocket row's payload, exact.

    When the fast parser may have rounded a token id (an integer beyond 64 bits), ``raw`` (the
    line as read) is parsed again with the standard parser, as the reference reads it.
    Cost: O(events); once more O(line) in that rare case. Raises nothing for a row that parsed.
    """
    try:
        return analysis_parts(value.get("json"))
    except InexactNumber:
        if raw is not None:
            try:
                value = fallback_loads(raw)
            except (ValueError, RecursionError):  # what only the fast parser took: keep its reading
                pass
        return analysis_parts(value.get("json"), exact=True)


def feed_join(join: ContextJoin, key: float, row: tuple[Any, ...], value: dict[str, Any], rows_fed: int,
              raw: bytes | None = None) -> None:
    """Hand one websocket row (the ``rows_fed``-th, read as ``raw``) to an analysis join: time, events, sweeps.

    Cost: O(events + tokens x log n), a sweep O(tokens); raises OSError when a result cannot be spooled.
    """
    join.advance(row[4])
    parts = row_parts(value, raw)
    if parts:
        join.index(key, row, parts)
    if not rows_fed % SWEEP_EVERY:
        join.sweep()


def _relayed_row(comparison: dict[str, Any], serialized: bytes) -> bytes | dict[str, Any]:
    """What a relayed analysis needs of a comparison row: all of a divergent row (its bytes);
    of any other row only what is counted (SPEC 4: status and token), not ~1 KB to decode.
    """
    if comparison.get("comparison_status") == "divergent":
        return serialized
    return {"comparison_status": comparison.get("comparison_status"), "token_id": comparison.get("token_id")}


class RowsSink(Protocol):
    """Where comparison rows go: ``write`` one serialized row; ``rows`` counts those written."""

    rows: int

    def write(self, row: bytes) -> None:
        """Write one serialized row. Cost: the sink's; raises OSError when the row cannot be written."""
        ...


class AnalysisRun:
    """State shared by the analysis drivers: work directory, engine, passes made.

    :param output_manifest: the divergence manifest to be written; the spool directory is made
        beside it (same filesystem), unless ``work_dir`` names one.
    :raises UsageError: for a negative ``context_limit``.
    """

    def __init__(self, context_limit: int, evidence_seconds: int, ws_names: list[str],
                 comparison_names: list[str], output_manifest: Path, work_dir: Path | None = None,
                 share: tuple[frozenset[str] | None, frozenset[str]] | None = None) -> None:
        if context_limit < 0:
            raise UsageError("--context-limit must be 0 or more")
        self.args = (context_limit, evidence_seconds, ws_names, comparison_names)
        self.share = share
        self.output_dir = Path(output_manifest).parent
        self.work_dir = work_dir  # type: ignore[assignment]  # (made below when None)
        try:
            with stops_held():  # made and kept in one step: a stop is raised after, and cleaned below
                if work_dir is None:
                    self.work_dir = make_work_dir(self.output_dir)
            self.engine = DivergenceAnalysis(*self.args, self.work_dir, share)
        except BaseException:  # (a SIGTERM as well): the directory just made must not stay behind
            if work_dir is None and self.work_dir is not None:
                remove_work_dir(self.work_dir)
            raise
        self.redo = False
        self.passes = 0
        #: processes that answered shares of the rows (sharded analyze)
        self.workers = 1

    def restart(self) -> DivergenceAnalysis:
        """Drop every result and start a fresh engine (exact recomputation).

        Cost: O(files in the old work directory); raises OSError when the new spools cannot be made.
        """
        named = self.engine.named_tokens
        self.close()
        try:
            with stops_held():  # made and kept in one step: a stop is raised after, and cleaned below
                self.work_dir = make_work_dir(self.output_dir)
            self.engine = DivergenceAnalysis(*self.args, self.work_dir, self.share)
        except BaseException:
            remove_work_dir(self.work_dir)  # (the old one, already removed, or the new one)
            raise
        self.engine.named_tokens = named  # every row's token is already known
        self.redo = True
        return self.engine

    def close(self) -> None:
        """Close the engine's spools and remove the work directory.

        Cost: O(files in the work directory); raises OSError only when closing a spool (a flush)
        fails, after removing the work directory all the same.
        """
        try:
            self.engine.close()
        finally:
            remove_work_dir(self.work_dir)


class RunSession:
    """The reconstructor and (optionally) the analysis of one run, fed in stream order.

    Feed :meth:`websocket_row` for each websocket row, :meth:`checkpoint` for each REST row at
    the moment the stream passes its receive time (just before the first websocket row received
    after it, or at the end), then :meth:`end_of_stream`. Each comparison row is written to
    ``rows`` and, with an analysis, taken by its join at that same moment (no re-read).

    Cost: per websocket row, the reconstructor's and the join's (O(entries x log levels) and
    O(log n)); memory O(tokens x (levels + windows)), independent of the capture's length.

    :param reconstructor: the books.
    :param analysis: the divergence analysis, or None for ``reconstruct`` alone.
    :param rows: the comparison rows' sink (may be set later, before the first checkpoint).

    :attr:`relay`, when set (``run --workers 2``, analysis None), receives what the analysis
    would have been given, in order, for a helper process that runs it (:func:`relayed_analysis`):
    ``("upto", key)`` (the websocket rows up to ``key`` are fed), ``("take", key, rows)`` (the
    comparison rows of a checkpoint, taken with the stream at ``key``), ``("defer", rows)``
    (late checkpoints' rows, for the second pass) and ``("end",)``; ``rows`` are
    ``(comparison line, ordinal, row)``, the row serialized (in a take, only a divergent row;
    of another, the fields that are counted: :func:`_relayed_row`).
    """

    relay: Callable[[tuple[Any, ...]], None] | None = None
    #: A binary file (read and write) where late checkpoints' REST rows wait for the replay, so
    #: that memory does not grow with them (a REST row of many books is ~100 KB); None keeps them
    #: in :attr:`late` (``follow``, whose state holds them).
    late_spill: IO[bytes] | None = None

    def __init__(self, reconstructor: Reconstructor, analysis: AnalysisRun | None,
                 rows: RowsSink | None = None) -> None:
        self.reconstructor = reconstructor
        self.analysis = analysis
        self.rows: RowsSink | None = rows
        #: websocket rows fed so far
        self.ws_rows = 0
        #: index key of the last websocket row fed (-1 before the first)
        self.previous_key: float = -1.0
        #: latest receive time among the websocket rows fed (µs), None before the first timed one
        self.max_us: int | None = None
        #: checkpoints that came after the stream had passed their time (REST rows out of time
        #: order): ``(time_us, first_place, count, file_index, line, serialized rest_row)``, for
        #: :meth:`replay_late`; kept as JSON bytes, not as a dict object per book level, or as
        #: ``(offset, length)`` in :attr:`late_spill` when it is set
        self.late: list[tuple[int, int, int, int, int, bytes | tuple[int, int]]] = []

    @classmethod
    def for_run(cls, markets: dict[str, dict[str, Any]], ws_names: list[str], rest_names: list[str], *,
                top_n: int, context_limit: int, evidence_seconds: int, rows_name: str,
                output_manifest: Path, work_dir: Path | None = None) -> "RunSession":
        """A session with both engines, as ``streamer run`` builds it.

        Cost: O(files); raises UsageError (below), OSError when the work directory cannot be made.

        :raises UsageError: for a negative ``context_limit``.
        """
        reconstructor = Reconstructor(markets, ws_names, rest_names, top_n)
        analysis = AnalysisRun(context_limit, evidence_seconds, list(ws_names), [rows_name], output_manifest,
                               work_dir)
        return cls(reconstructor, analysis)

    def websocket_row(self, key: float, row: tuple[Any, ...], value: dict[str, Any], raw: bytes | None = None) -> None:
        """Apply one websocket row to the books and index it for the join.

        ``row`` is ``(file_index, line, global_sequence, received_at_utc, received_us)``, ``key``
        its index key (:func:`streamer.index.entry_key`), ``raw`` the line as read (when given,
        the reconstructor finds duplicate payloads from its bytes).

        Cost: O(entries x log levels + tokens x log n); raises OSError (spools), HelperError (relay).
        """
        self.ws_rows += 1
        received_us = row[4]
        if received_us is not None and (self.max_us is None or received_us > self.max_us):
            self.max_us = received_us
        self.reconstructor.apply(row, value, raw)
        analysis = self.analysis
        if self.relay is not None and not self.ws_rows % RELAY_EVERY:
            self.relay(("upto", key))
        if analysis is not None:
            feed_join(analysis.engine.join, key, row, value, self.ws_rows, raw)
        self.previous_key = key

    def checkpoint(self, file_index: int, line: int, rest_row: dict[str, Any],
                   stream_key: float | None = None) -> int:
        """Compare one REST checkpoint row with the books; returns the comparison rows written.

        ``stream_key`` is the key of the last websocket row read (default: the last one fed;
        infinity once the websocket stream has ended).

        Cost: O(summaries x (levels log levels + top_n)); raises OSError (rows), HelperError (relay).
        """
        rows = self.rows
        assert rows is not None, "RunSession.rows must be set before the first checkpoint"
        if self._is_late(rest_row):
            count = comparison_row_count(rest_row)
            if count:
                self.reconstructor.rest_rows += 1
                self.reconstructor.anomalies.add("late_rest_checkpoint", f"{self.reconstructor.rest_names[file_index]}:{line}")
                serialized = exact_dumps(rest_row)
                spill = self.late_spill
                if spill is not None:  # on disk until the replay: (offset, length) in memory
                    stored: bytes | tuple[int, int] = (spill.seek(0, os.SEEK_END), len(serialized))
                    spill.write(serialized)
                else:
                    stored = serialized
                self.late.append((rest_time_us(rest_row), rows.reserve(count), count,  # type: ignore[attr-defined]
                                  file_index, line, stored))
                return count
        key = self.previous_key if stream_key is None else stream_key
        analysis = self.analysis
        relayed: list[tuple[int, int, bytes]] = []
        written = 0
        for comparison in self.reconstructor.compare(file_index, line, rest_row):
            serialized = dumps(comparison)
            rows.write(serialized)
            written += 1
            if analysis is not None:
                engine = analysis.engine
                if exact_output():  # the row may hold what the rows file cannot (NaN): analyse it as written
                    comparison = loads(serialized)
                query = engine.comparison_row(0, rows.rows, comparison, ordinal=rows.rows - 1)
                if query is not None:
                    engine.join.take(query, engine.ws_file_of(query), key)
            elif self.relay is not None:
                relayed.append((rows.rows, rows.rows - 1, _relayed_row(comparison, serialized)))
        if relayed:
            self.relay(("take", key, relayed))  # type: ignore[misc]
        return written

    def _is_late(self, rest_row: dict[str, Any]) -> bool:
        """Whether the stream has applied a row received after this checkpoint's time.

        SPEC section 3 compares a checkpoint with the books before the first row received after
        its time; when such a row is already applied (REST rows out of time order), the books
        are past that point. Only rows sinks that can hold a place (``reserve``) support the
        exact answer, a replay at the end; others compare with the books as they stand.
        """
        if self.max_us is None or not hasattr(self.rows, "reserve"):
            return False
        stamp = rest_time_us(rest_row)
        return stamp is not None and stamp < self.max_us

    def replay_late(self, ws_rows: Callable[[], Iterable[tuple[float, tuple[Any, ...], dict[str, Any], bytes]]]
                    ) -> int:
        """Answer the late checkpoints exactly: replay the websocket rows from the start.

        ``ws_rows`` returns a fresh iterator of ``(key, row, value, raw)`` over every websocket
        row, as :func:`streamer.batch.iter_ws_rows` yields them. Fresh books are advanced to each
        late checkpoint's point (the first row received after its time, in time order of the
        checkpoints), its rows fill their reserved places, and the analysis answers them in its
        second pass. Returns the number of checkpoints replayed (0: no second read).

        Cost: one more read of the websocket files when any checkpoint was late; memory O(late
        checkpoints) plus a second set of books.
        """
        if not self.late:
            return 0
        main = self.reconstructor
        replay = Reconstructor(main.markets, main.ws_names, main.rest_names, main.top_n)
        rows = self.rows
        rows_iter = iter(ws_rows())
        pending = next(rows_iter, None)
        compared = Anomalies()
        relayed: list[tuple[int, int, bytes]] = []
        if self.late_spill is not None:
            self.late_spill.flush()
        for stamp, place, _count, file_index, line, stored in sorted(self.late, key=lambda item: item[:2]):
            if type(stored) is tuple:
                offset, length = stored
                self.late_spill.seek(offset)  # type: ignore[union-attr]
                stored = self.late_spill.read(length)  # type: ignore[union-attr]
            rest_row = exact_loads(stored)
            while pending is not None and not (pending[1][4] is not None and pending[1][4] > stamp):
                _key, row, value, raw = pending
                replay.apply(row, value, raw)
                pending = next(rows_iter, None)
            ws_anomalies, replay.anomalies = replay.anomalies, compared
            comparisons = replay.compare(file_index, line, rest_row)
            replay.anomalies = ws_anomalies
            for offset, comparison in enumerate(comparisons):
                serialized = dumps(comparison)
                rows.write_at(place + offset, serialized)  # type: ignore[union-attr]
                if self.analysis is not None:
                    engine = self.analysis.engine
                    if exact_output():  # (as above)
                        comparison = loads(serialized)
                    query = engine.comparison_row(0, place + offset + 1, comparison, ordinal=place + offset)
                    if query is not None:
                        engine.defer(query)
                elif self.relay is not None:
                    relayed.append((place + offset + 1, place + offset, serialized))
        if relayed:
            self.relay(("defer", relayed))  # type: ignore[misc]
        main.comparison_rows += replay.comparison_rows
        main.status_counts.update(replay.status_counts)
        main.anomalies.merge(compared)
        replayed = len(self.late)
        self.late = []
        return replayed

    def end_of_stream(self) -> None:
        """The websocket stream has ended (after the last checkpoints): finish every pending row.

        Cost: O(pending rows) results written; raises OSError (spools), HelperError (relay).
        """
        if self.analysis is not None:
            self.analysis.engine.join.close()
        elif self.relay is not None:
            self.relay(("end",))

    def close(self) -> None:
        """Close the analysis spools and remove its work directory.

        Cost: O(files in the work directory); raises OSError only when closing a spool (a flush) fails.
        """
        if self.analysis is not None:
            self.analysis.close()
