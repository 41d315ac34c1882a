"""The divergence analysis engine: comparison rows in, divergence results streamed to disk.

:class:`DivergenceAnalysis` counts every comparison row, turns each divergent one into a query for
the :class:`~streamer.join.ContextJoin`, classifies each answer and streams the result, in
comparison order, into the spools that :meth:`DivergenceAnalysis.publish` assembles into the
divergence manifest and the markdown report. It owns no file-reading policy: the batch driver and
the live follower feed it.
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from . import report
from .classify import (GATE_BLOCKED, UNUSABLE_LINE, Aggregates, Query, RowShapeError, classify, line_is_unusable,
                       make_query)
from .decoders import dumps, exact_dumps, exact_output, fallback_loads, holds_rounded_integer, loads
from .index import Entry, entry_key
from .join import ContextJoin, Evidence, answer_exactly
from .payloads import compact_event, parse_time_us, part_event_type
from .sources import InputProblems
from .writer import AtomicFile, OrderedSpool, json_body, read_records, write_record

ANALYZER_NAME = "streamer"
#: Divergent rows answered per second pass (each pass reads the websocket files once). A pass
#: holds its rows, and the context and evidence of those still open (all of them when a receive
#: time stepped back beyond the allowance): 2,000 keep a pass to ~40 MiB (benchmarks/README.md,
#: "memory").
EXACT_BATCH = 2_000

STRONGEST_RISK = ("Treating size-only divergence as harmless would overstate fidelity. Size differences "
                  "affect depth and fillability even when best quotes match.")
NEXT_STEP = ("Proceed to 10D only after accepting that this sample supports best-quote reconstruction while "
             "depth-size fidelity still needs monitoring in a long-running websocket recorder.")
CLASSIFICATION_NOTE = ("Classification is conservative. timing_or_feed_lag_likely means affected-price "
                       "websocket price_change evidence was observed near the REST checkpoint; it does not "
                       "prove causality.")


def iso_z() -> str:
    """The time now in UTC to the second, ``Z``-suffixed (the manifests' timestamps).

    Cost: O(1). Raises nothing.
    """
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class DivergenceAnalysis:
    """Aggregates, join and ordered output of one analysis run.

    :param ws_names: the websocket files as the 10B manifest names them (context entries name
        their file when there is more than one).
    :param comparison_names: the comparison files likewise.
    :param work_dir: a private directory for spools (their files are closed by :meth:`close`,
        removed by :func:`remove_work_dir`).
    :param share: sharded analyze (:mod:`streamer.shards`): ``(held, foreign)``. A helper indexes
        the events and answers the rows of the tokens ``held``; the driver (``held`` None) those of
        every token not in ``foreign``. Results then go, tagged with their ordinal, to
        :attr:`results_path` for :meth:`merge_results`.
    """

    _tagged: IO[bytes] | None = None
    #: divergent rows skipped as unusable: nobody explained them, so the gate cannot pass (a class
    #: default too, for states saved before it was counted)
    unanalysed_rows = 0
    #: comparison lines that could not be read (and comparison files that ended early): rows
    #: unknown, maybe divergent, so the gate cannot pass either (set by the publisher)
    unread_comparison_lines = 0

    def __init__(self, context_limit: int, evidence_seconds: int, ws_names: list[str],
                 comparison_names: list[str], work_dir: Path,
                 share: tuple[frozenset[str] | None, frozenset[str]] | None = None) -> None:
        self.context_limit = context_limit
        self.evidence_seconds = evidence_seconds
        self.ws_names = ws_names
        self.ws_index = {name: position for position, name in enumerate(ws_names)}
        self.comparison_names = comparison_names
        self.multi_ws = len(ws_names) > 1
        self.multi_comparison = len(comparison_names) > 1
        self.work_dir = work_dir
        self.aggregates = Aggregates()
        self.quote_or_membership_rows = 0
        self.rows_without_context = 0
        #: divergent rows the reference could not use, by comparison file and reason (capped locations)
        self.problems = InputProblems()
        #: ``str(token_id)`` of every comparison row with a truthy token id
        self.named_tokens: set[str] = set()
        self._rows_file: IO[bytes] = open(work_dir / "divergence_rows.part", "wb")
        self._refs_file: IO[bytes] = open(work_dir / "references.part", "wb")
        self._report_file: IO[bytes] = open(work_dir / "report_rows.part", "wb")
        self._first_output = True
        sink = self._write_record
        if share is not None:
            self._tagged = open(self.results_path, "wb")
            sink = self._tag_record
        #: results in comparison order: one place per comparison row, skipped when not divergent
        self.spool = OrderedSpool(sink, 3, work_dir)
        self._misses: IO[bytes] | None = None
        self.join = ContextJoin(context_limit, evidence_seconds, self._on_result, self._on_miss)
        if share is not None:
            self.join.held_tokens, self.join.foreign_tokens = share

    # -- input ----------------------------------------------------------------------------------

    def comparison_row(self, file_index: int, line: int, row: dict[str, Any],
                       raw: bytes | None = None, ordinal: int | None = None) -> Query | None:
        """Count one comparison row; return the query of a usable divergent row, else None.

        ``ordinal`` is the row's place among all comparison rows (0-based; by default the rows
        counted so far): results are written in that order. A divergent row whose fields the
        reference could not use is recorded in :attr:`problems` and skipped (it still counts as a
        comparison row and as divergent, and blocks the gate). ``raw`` (the row's line) lets a
        divergent row be read again exactly when the fast parser rounded an integer in it.
        Cost: O(size of the row's diffs) plus the spool's O(log b); raises OSError from a spool write.
        """
        if ordinal is None:
            ordinal = self.aggregates.comparison_rows
        status = self.aggregates.count_row(row)
        if status == "divergent" and raw is not None and holds_rounded_integer(row):
            try:  # an integer beyond 64 bits (a token id written as a number): read it as the reference does
                row = fallback_loads(raw)
            except (ValueError, RecursionError):  # nesting only the fast parser takes: keep its reading
                pass
        token = row.get("token_id")
        if token:
            self.named_tokens.add(token if type(token) is str else str(token))
        if status != "divergent":
            self.spool.put(ordinal, ())
            return None
        try:
            query = make_query(ordinal, file_index, line, row, parse_time_us)
        except RowShapeError as exc:
            if self.join.answers(str(token) if token else None):  # (counted once, by the row's process)
                self.problems.add(self.comparison_names[file_index], line, f"mistyped_comparison_field: {exc}")
                self.unanalysed_rows += 1
            self.spool.put(ordinal, ())
            return None
        if not self.join.answers(query.lookup):
            self.spool.put(ordinal, ())
            return None
        return query

    def defer(self, query: Query) -> None:
        """Answer ``query`` in the second pass (a row made after the stream has ended).

        Cost: O(size of the row), spooled to disk; raises OSError when the misses spool fails.
        """
        self.join.misses += 1
        self._on_miss(query)

    def resolve(self, query: Query) -> Query:
        """Settle the token of a row without a token id, once every row has been read.

        Cost: O(1). Raises nothing.
        """
        if query.lookup is None and query.token in self.named_tokens:
            query.lookup = query.token
        return query

    def ws_file_of(self, query: Query) -> int:
        """The websocket file index a query's last line refers to (the first file by default).

        Cost: O(1). Raises nothing.
        """
        if not self.multi_ws:
            return 0
        return self.ws_index.get(str(query.row.get("raw_websocket_file")), 0)

    def context_key(self, query: Query) -> float | None:
        """The index key of a query's last applied line, or None. Cost: O(1). Raises nothing."""
        if query.last_line is None or line_is_unusable(query.last_line):
            return None
        return entry_key(self.ws_file_of(query), query.last_line)

    # -- results --------------------------------------------------------------------------------

    def _entry_json(self, entry: Entry) -> dict[str, Any]:
        row = entry[1]
        parts = entry[2]
        received_us = row[4]
        value = {
            "line_number": row[1],
            "global_sequence": row[2],
            "received_at_utc": row[3],
            "received_epoch": None if received_us is None else received_us / 1_000_000,
            "event_types": sorted({part_event_type(part) for part in parts}),
            "events": [compact_event(part) for part in parts],
        }
        if self.multi_ws:
            value["raw_websocket_file"] = self.ws_names[row[0]]
        return value

    def _on_result(self, query: Query, before: list[Entry], after: list[Entry], evidence: Evidence) -> None:
        row = query.row
        has_context = bool(before or after)
        category, affects = classify(row, query.bid_diff, query.ask_diff, has_context, bool(evidence))
        self.aggregates.add_result(category, affects, has_context)
        if (affects["best_bid"] or affects["best_ask"] or affects["spread"] or affects["level_count"]
                or affects["top_n_price_membership"]):
            self.quote_or_membership_rows += 1
        if not has_context:
            self.rows_without_context += 1
        market = row.get("market") or {}
        context = {"before_or_at": [self._entry_json(entry) for entry in before],
                   "after": [self._entry_json(entry) for entry in after]}
        evidence_json = [{
            "line_number": entry[1][1],
            "global_sequence": entry[1][2],
            "received_at_utc": entry[1][3],
            "matched_price_changes": [compact_event(part) for part in parts],
        } for entry, parts in evidence]
        if self.multi_ws:
            for item, (entry, _parts) in zip(evidence_json, evidence):
                item["raw_websocket_file"] = self.ws_names[entry[1][0]]
        reference = {
            "comparison_line": query.comparison_line,
            "rest_checkpoint_file": row.get("rest_checkpoint_file"),
            "rest_checkpoint_line": row.get("rest_checkpoint_line"),
            "raw_websocket_file": row.get("raw_websocket_file"),
            "raw_websocket_context_lines": [entry[1][1] for entry in before] + [entry[1][1] for entry in after],
        }
        divergence = {
            "comparison_line": query.comparison_line,
            "classification": category,
            "affects": affects,
            "market_slug": market.get("market_slug"),
            "condition_id": market.get("condition_id"),
            "token_id": query.token,
            "outcome": market.get("outcome"),
            "rest_checkpoint_sequence": row.get("rest_checkpoint_sequence"),
            "rest_checkpoint_received_at_utc": row.get("rest_checkpoint_received_at_utc"),
            "rest_checkpoint_file": row.get("rest_checkpoint_file"),
            "rest_checkpoint_line": row.get("rest_checkpoint_line"),
            "local_last_update_received_at_utc": row.get("last_local_update_received_at_utc"),
            "applied_ws_message_count": row.get("applied_ws_message_count"),
            "applied_ws_line_span": row.get("applied_ws_line_span"),
            "applied_ws_global_sequence_span": row.get("applied_ws_global_sequence_span"),
            "last_applied_ws_line": row.get("last_applied_ws_line"),
            "last_applied_ws_received_at_utc": row.get("last_applied_ws_received_at_utc"),
            "nearest_websocket_messages_for_token": context,
            "nearby_affected_price_change_evidence": evidence_json,
            "bid_top_n_diff": query.bid_diff,
            "ask_top_n_diff": query.ask_diff,
        }
        if self.multi_ws:
            reference["raw_websocket_context_files"] = [self.ws_names[entry[1][0]] for entry in before + after]
        if self.multi_comparison:
            divergence["comparison_file"] = reference["comparison_file"] = self.comparison_names[query.file_index]
        line = report.row_line(divergence) + "\n"  # (a lone surrogate is written escaped)
        dump = exact_dumps if exact_output() else dumps
        self.spool.put(query.seq, (dump(divergence), dump(reference), line.encode("utf-8", "backslashreplace")))

    def _write_record(self, _seq: int, fields: tuple[bytes, ...]) -> None:
        separator = b"\n    " if self._first_output else b",\n    "
        self._first_output = False
        self._rows_file.write(separator + fields[0])
        self._refs_file.write(separator + fields[1])
        self._report_file.write(fields[2])

    # -- sharded analyze -------------------------------------------------------------------

    @property
    def results_path(self) -> Path:
        """Where a sharded engine writes its tagged results. Cost: O(1). Raises nothing."""
        return self.work_dir / "results.bin"

    def _tag_record(self, seq: int, fields: tuple[bytes, ...]) -> None:
        assert self._tagged is not None
        write_record(self._tagged, seq, fields)

    #: Counters a helper hands its driver (:meth:`share_summary`, :meth:`absorb`), its own and its join's.
    _SHARED_COUNTS = ("quote_or_membership_rows", "rows_without_context", "unanalysed_rows")
    _SHARED_JOIN_COUNTS = ("misses", "late_events", "spilled_pending")

    def share_summary(self) -> dict[str, Any]:
        """What a helper's driver adds to its own: result counters and streaming statistics.

        Cost: O(categories + affect names). Raises nothing.
        """
        aggregates = self.aggregates
        return {
            "categories": dict(aggregates.category_counts),
            "affects": dict(aggregates.affect_counts),
            "divergence_results": aggregates.divergence_results,
            "all_size_only": aggregates.all_size_only,
            "all_with_context": aggregates.all_with_context,
            **{name: getattr(self, name) for name in self._SHARED_COUNTS},
            **{name: getattr(self.join, name) for name in self._SHARED_JOIN_COUNTS},
            "spilled_records": self.spool.spilled_records,
            "problems": self.problems,
        }

    def absorb(self, summary: dict[str, Any]) -> None:
        """Add a helper's :meth:`share_summary` (the driver, before publishing).

        Cost: O(categories + affect names); raises KeyError when ``summary`` lacks a counter.
        """
        aggregates = self.aggregates
        aggregates.category_counts.update(summary["categories"])
        aggregates.affect_counts.update(summary["affects"])  # update() keeps zero counts
        aggregates.divergence_results += summary["divergence_results"]
        aggregates.all_size_only = aggregates.all_size_only and summary["all_size_only"]
        aggregates.all_with_context = aggregates.all_with_context and summary["all_with_context"]
        for name in self._SHARED_COUNTS:
            setattr(self, name, getattr(self, name) + summary[name])
        for name in self._SHARED_JOIN_COUNTS:
            setattr(self.join, name, getattr(self.join, name) + summary[name])
        self.spool.spilled_records += summary["spilled_records"]
        self.problems.merge(summary["problems"])

    def seal_results(self) -> Path:
        """Close a helper's tagged results (after :meth:`finish`); returns their path.

        Cost: O(1) plus the last flush; raises OSError from the flush.
        """
        assert self._tagged is not None
        self._tagged.close()
        return self.results_path

    def merge_results(self, others: list[Path]) -> None:
        """Write this engine's tagged results and the helpers' (``others``) in comparison order.

        Call after :meth:`finish`. Cost: O(results), one read of each file.
        :raises RuntimeError: when two processes answered the same row (a bug, never input).
        """
        sources = [read_records(self.seal_results(), 3), *(read_records(path, 3) for path in others)]
        previous = -1
        for seq, fields in heapq.merge(*sources, key=lambda record: record[0]):
            if seq == previous:
                raise RuntimeError(f"comparison row {seq} answered twice")
            previous = seq
            self._write_record(seq, fields)

    def _on_unusable(self, query: Query) -> None:
        """A row whose last line is not a number, for a token with events: skipped and reported."""
        self.problems.add(self.comparison_names[query.file_index], query.comparison_line, UNUSABLE_LINE)
        self.unanalysed_rows += 1
        self.spool.put(query.seq, ())

    def _on_miss(self, query: Query) -> None:
        if self._misses is None:
            self._misses = open(self.work_dir / "misses.jsonl", "wb")
        record = [query.seq, query.file_index, query.comparison_line, query.row]
        self._misses.write((exact_dumps if exact_output() else dumps)(record) + b"\n")

    # -- second pass ----------------------------------------------------------------------------

    def _spooled_misses(self) -> Iterator[Query]:
        assert self._misses is not None
        self._misses.close()
        with open(self.work_dir / "misses.jsonl", "rb") as handle:
            for line in handle:
                record = loads(line)
                if holds_rounded_integer(record):  # (written exactly: read it back so)
                    record = fallback_loads(line)
                seq, file_index, comparison_line, row = record
                yield make_query(seq, file_index, comparison_line, row, parse_time_us)

    def answer_misses(self, ws_rows: Callable[[], Iterable[Any]]) -> int:
        """Answer every miss exactly, :data:`EXACT_BATCH` at a time, one websocket pass each.

        ``ws_rows`` returns a fresh iterator of ``(key, row, parts)`` over all websocket files.
        Returns the number of passes made.
        Cost: ceil(m / EXACT_BATCH) passes + O(m log m), m misses; raises OSError and what ``ws_rows`` does.
        """
        if self._misses is None:
            return 0
        join = self.join
        # No receive time stepped back beyond the allowance in the first pass (the same lines):
        # a row can then be answered as soon as the stream is that far past its evidence window.
        close_after = join.allowance_us if not join.late_events else None
        return self.answer_exactly(self._spooled_misses(), ws_rows, close_after)

    def answer_exactly(self, queries: Iterable[Query], ws_rows: Callable[[], Iterable[Any]],
                       close_after_us: int | None = None) -> int:
        """Answer ``queries`` with targeted passes over the websocket rows; returns the passes made.

        ``close_after_us``: see :func:`streamer.join.answer_exactly`.
        Cost: ceil(q / EXACT_BATCH) passes + O(q log q), q queries; raises OSError and what ``ws_rows`` does.
        """
        passes = 0
        batch: list[tuple[Query, float | None]] = []
        for query in queries:
            self.resolve(query)
            batch.append((query, self.context_key(query)))
            if len(batch) >= EXACT_BATCH:
                answer_exactly(ws_rows(), batch, self.context_limit, self.evidence_seconds, self._on_result,
                               close_after_us, self._on_unusable)
                passes += 1
                batch = []
        if batch:
            answer_exactly(ws_rows(), batch, self.context_limit, self.evidence_seconds, self._on_result,
                           close_after_us, self._on_unusable)
            passes += 1
        return passes

    # -- output ---------------------------------------------------------------------------------

    def summary_fields(self) -> dict[str, Any]:
        """The aggregate keys of the manifest (everything computed from the rows).

        Cost: O(k log k) for k distinct statuses, categories and affects. Raises nothing.
        """
        aggregates = self.aggregates
        affects = aggregates.affect_counts
        results = aggregates.divergence_results
        return {
            "gate_status": (GATE_BLOCKED if self.unanalysed_rows or self.unread_comparison_lines
                            else aggregates.gate()),
            "comparison_status_counts": dict(sorted(aggregates.status_counts.items())),
            "divergence_category_counts": dict(sorted(aggregates.category_counts.items())),
            "divergence_affect_counts": dict(sorted(affects.items())),
            "best_bid_affected": bool(affects.get("best_bid")),
            "best_ask_affected": bool(affects.get("best_ask")),
            "spread_affected": bool(affects.get("spread")),
            "level_count_affected": bool(affects.get("level_count")),
            "top_n_price_membership_affected": bool(affects.get("top_n_price_membership")),
            "schema_assumption_falsified": False,
            "analysis_summary": {
                "all_divergences_size_only": bool(results) and aggregates.all_size_only,
                "raw_context_included_for_all_divergences": bool(results) and aggregates.all_with_context,
                "classification_note": CLASSIFICATION_NOTE,
            },
            "strongest_fake_progress_risk": STRONGEST_RISK,
            "next_smallest_step": NEXT_STEP,
        }

    def finish(self) -> None:
        """Write every result still held, in order (after the main pass and any second pass).

        Cost: O(r log k) for r held records, k runs; raises RuntimeError on a lost/repeated result, OSError.
        """
        self.spool.finish(self.aggregates.comparison_rows)

    def publish(self, manifest_path: Path, report_path: Path, fields: dict[str, Any]) -> None:
        """Assemble and atomically publish the manifest, then the report.

        ``fields`` holds every manifest key except the two row arrays.
        Cost: O(output bytes); raises OSError, or KeyError when ``fields`` lacks a key the report prints.
        """
        for handle in (self._rows_file, self._refs_file, self._report_file):
            handle.close()
        tail = b"\n  " if not self._first_output else b""
        with AtomicFile(manifest_path) as out:
            handle = out.handle
            handle.write(b'{\n  "divergence_rows": [')
            with open(self.work_dir / "divergence_rows.part", "rb") as part:
                shutil.copyfileobj(part, handle, 1 << 20)
            handle.write(tail + b'],\n  "raw_and_rest_row_references": [')
            with open(self.work_dir / "references.part", "rb") as part:
                shutil.copyfileobj(part, handle, 1 << 20)
            handle.write(tail + b"],\n" + json_body(fields).encode("ascii") + b"\n}\n")
        aggregates = self.aggregates
        finding = report.finding(aggregates.divergence_results, aggregates.affect_counts.get("size_only", 0),
                                 self.quote_or_membership_rows, dict(aggregates.affect_counts),
                                 self.rows_without_context, self.unanalysed_rows, self.unread_comparison_lines,
                                 self.context_limit)
        with AtomicFile(report_path) as out:
            out.handle.write(report.head(fields, finding).encode("utf-8", "backslashreplace"))
            with open(self.work_dir / "report_rows.part", "rb") as part:
                shutil.copyfileobj(part, out.handle, 1 << 20)
            out.handle.write(report.tail(fields).encode("utf-8", "backslashreplace"))

    # -- snapshots (follow) -------------------------------------------------------------------

    #: The spool files, by the attribute holding each one's handle (the misses spool is opened
    #: on the first miss).
    SPOOLS = (("_rows_file", "divergence_rows.part"), ("_refs_file", "references.part"),
              ("_report_file", "report_rows.part"), ("_misses", "misses.jsonl"))

    def spool_lengths(self) -> dict[str, int]:
        """Flush the spools and return each one's length by file name. Cost: O(1) plus the flush."""
        lengths = {}
        for attribute, name in self.SPOOLS:
            handle = getattr(self, attribute)
            if handle is not None:
                handle.flush()
                lengths[name] = handle.tell()
        return lengths

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the open spools, which are saved as their lengths.

        The spool files are append-only: a saved state names how much of each is its own, and
        :meth:`reopen` cuts off whatever was written after the save. Cost: O(state).
        """
        state = self.__dict__.copy()
        for attribute, _name in self.SPOOLS:
            handle = state[attribute]
            if handle is not None:
                handle.flush()
                state[attribute] = handle.tell()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled engine; it stays detached from its spools until :meth:`reopen`."""
        self.__dict__.update(state)
        if type(self.problems) is list:  # a state saved before problems were counted (follow's: empty)
            problems, self.problems = self.problems, InputProblems()
            for file_index, line, reason in problems:
                self.problems.add(self.comparison_names[file_index], line, f"mistyped_comparison_field: {reason}")

    def reopen(self, work_dir: Path | None = None) -> None:
        """Reattach an unpickled engine to its spools, cut back to their saved lengths.

        ``work_dir`` moves the engine to a copy of its spool directory (run files included).
        Cost: O(spools + run files); also raises OSError when a spool cannot be cut or reopened.

        :raises ValueError: when a spool is shorter than its saved length (not this state's).
        """
        if work_dir is not None:
            self.work_dir = Path(work_dir)
            self.spool.relocate(self.work_dir)
        for attribute, name in self.SPOOLS:
            length = getattr(self, attribute)
            if length is None:
                continue
            path = self.work_dir / name
            if not path.exists() or path.stat().st_size < length:
                raise ValueError(f"spool {path} is shorter than its saved length {length}")
            os.truncate(path, length)
            setattr(self, attribute, open(path, "ab"))

    def close(self) -> None:
        """Close the spools; their files stay (:func:`remove_work_dir` removes them).

        Cost: O(1); raises the first OSError of a last flush, after closing every spool.
        """
        failure: OSError | None = None
        for handle in (self._rows_file, self._refs_file, self._report_file, self._misses, self._tagged):
            if handle is not None and not handle.closed:
                try:
                    handle.close()
                except OSError as exc:
                    failure = failure or exc
        if failure is not None:
            raise failure


def make_work_dir(near: Path) -> Path:
    """A private spool directory beside ``near`` (same filesystem as the outputs).

    Cost: O(1); raises OSError when the directory cannot be made.
    """
    near.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".streamer-work-", dir=near))


def remove_work_dir(path: Path) -> None:
    """Remove a spool directory and everything in it.

    Cost: O(files in it). Raises nothing (errors are ignored).
    """
    shutil.rmtree(path, ignore_errors=True)

