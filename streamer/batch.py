"""Batch drivers: the files a manifest names, read once in order, fed to the engines.

``analyze`` (SPEC section 4) streams the websocket rows once into the join, takes each comparison
row as the stream passes its checkpoint time, and publishes the divergence manifest and report.
The engines own no file policy; this module owns nothing else.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import __version__
from .analysis import ANALYZER_NAME, DivergenceAnalysis, iso_z
from .classify import Query
from .decoders import FAST_ERRORS, GZIP_BACKEND, JSON_BACKEND, fallback_loads, fast_loads, loads
from .errors import HelperError, InputError, UsageError, stops_held
from .index import LINE_SPAN
from .manifests import KIND_COMPARISON, KIND_REST, KIND_WS, markets_by_token, read_manifest
from .payloads import InexactNumber, analysis_parts, parse_time_us
from .reconstruct import Reconstructor, rest_time_us
from .shards import Helpers, market_tokens, plan_shares
from .session import SWEEP_EVERY, AnalysisRun as _Run, RunSession, feed_join, row_parts
from .sources import MISTYPED_RECEIVED_AT, InputProblems, InputStats, check_readable, read_batches, unreadable
from .writer import GzipRowsWriter, OrderedRows, write_atomic

DEFAULT_10B_MANIFEST = Path("data/manifests/checkpoint_010b_ws_raw_sample.json")
DEFAULT_10C_MANIFEST = Path("data/manifests/checkpoint_010c_book_reconstruction_sample.json")
DEFAULT_10BC_MANIFEST = Path("data/manifests/checkpoint_010bc_full_fidelity_sample_and_reconstruction.json")
DEFAULT_ORCHESTRATOR_REVIEW = Path("data/manifests/checkpoint_010bc_orchestrator_review.json")
DEFAULT_OUTPUT_MANIFEST = Path("data/manifests/checkpoint_010d0_ws_divergence_analysis.json")
DEFAULT_OUTPUT_REPORT = Path("reports/checkpoints/checkpoint_010d0_ws_divergence_analysis.md")
UPDATED_PATHS = (
    Path("scripts/reconstruct_polymarket_ws_books.py"),
    Path("docs/BOOK_RECONSTRUCTION.md"),
    Path("docs/POLYMARKET_WEBSOCKET_SCHEMA.md"),
    Path("data/manifests/checkpoint_010c_book_reconstruction_sample.json"),
    Path("reports/checkpoints/checkpoint_010c_book_reconstruction_sample.md"),
)
MANIFEST_KEYS = ("gate_status", "review_gate", "status", "output_files", "markets")


@dataclass
class AnalyzeConfig:
    """Flags of ``streamer analyze`` (the reference's, with its defaults)."""

    manifest_10b: Path = DEFAULT_10B_MANIFEST
    manifest_10c: Path = DEFAULT_10C_MANIFEST
    manifest_10bc: Path = DEFAULT_10BC_MANIFEST
    orchestrator_review: Path = DEFAULT_ORCHESTRATOR_REVIEW
    output_manifest: Path = DEFAULT_OUTPUT_MANIFEST
    output_report: Path = DEFAULT_OUTPUT_REPORT
    context_limit: int = 5
    price_evidence_seconds: int = 10
    progress: bool = False
    #: processes answering shares of the markets (:mod:`streamer.shards`); the outputs are the same
    workers: int = 1


@dataclass
class Outcome:
    """What a command produced: its gate, the files written and what went wrong in the input."""

    gate: str
    written: dict[str, Path] = field(default_factory=dict)
    problems: InputProblems = field(default_factory=InputProblems)
    #: ``run`` only: the 10C gate of the reconstruction half
    reconstruction_gate: str | None = None
    #: lines for stderr that qualify the gates (:meth:`Reconstructor.warnings`)
    warnings: list[str] = field(default_factory=list)


# -- reading rows ------------------------------------------------------------------------------

def _is_blank(line: bytes) -> bool:
    if not line.strip():
        return True
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


class Progress:
    """Progress on stderr while it is a terminal: share of the input read, rows, divergences, time.

    The share is of the inputs' bytes on disk (compressed bytes for gzip), so the estimate of the
    time left assumes the rest reads at the pace so far.
    """

    def __init__(self, enabled: bool, inputs: list[InputStats], total: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.inputs = inputs
        self.total = max(total, 1)
        self._clock = clock
        self.started = clock()
        self._last: float | None = None
        self._width = 0
        #: websocket lines read (counted per batch by the reader)
        self.lines = 0
        #: divergent rows so far, asked at each redraw (the running command sets it)
        self.divergences: Callable[[], int] = lambda: 0

    @classmethod
    def for_inputs(cls, enabled: bool, inputs: list[InputStats]) -> "Progress":
        """Progress over ``inputs``, their sizes on disk as the total.

        Cost: one stat per input; raises InputError when an input is gone since it was checked.
        """
        total = 0
        for stats in inputs:
            try:
                total += stats.path.stat().st_size
            except OSError as exc:  # (an input, not an output: not the CLI's "cannot write")
                raise unreadable(stats.name, exc) from None
        return cls(enabled, inputs, total)

    def line(self, now: float) -> str:
        """The progress line at time ``now`` (of the clock given): no newline, no padding.

        e.g. ``streamer: 11.5/23.9 MB read (48%), 95,000 websocket lines, 1,822 divergences, 0:03, ~0:03 left``.
        Cost: O(inputs). Raises nothing.
        """
        done = min(sum(stats.bytes_read for stats in self.inputs), self.total)  # (read-ahead past a growing file)
        share = done / self.total
        elapsed = max(now - self.started, 0.0)
        text = (f"streamer: {done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB read ({math.floor(share * 100)}%), "
                f"{self.lines:,} websocket lines, {self.divergences():,} divergences, {_clock_text(elapsed)}")
        if elapsed >= 2.0 and 0.01 <= share < 1.0:  # earlier, the pace says little
            text += f", ~{_clock_text(elapsed * (1.0 - share) / share)} left"
        return text

    def update(self) -> None:
        """Redraw the progress line, at most every 0.5 s. Cost: O(inputs); raises OSError (stderr)."""
        if not self.enabled:
            return
        now = self._clock()
        if self._last is not None and now - self._last < 0.5:
            return
        self._last = now
        text = self.line(now)
        sys.stderr.write("\r" + text.ljust(self._width))  # blanks out the end of a longer line
        sys.stderr.flush()
        self._width = len(text)

    def done(self) -> None:
        """End the progress line, if one was drawn, with the totals as they end (the last redraw
        may be up to 0.5 s old). Cost: O(inputs); raises OSError (stderr)."""
        if self.enabled and self._last is not None:
            sys.stderr.write("\r" + self.line(self._clock()).ljust(self._width) + "\n")
            sys.stderr.flush()


def _clock_text(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour. Cost: O(1)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _parse(line: bytes, name: str, line_number: int, problems: InputProblems) -> Any:
    """The slow path of a line the fast parser refused: the standard parser, blank, or not JSON."""
    try:
        return fallback_loads(line)
    except (ValueError, RecursionError):
        if not _is_blank(line):
            problems.add(name, line_number, "not_json")
        return _SKIP


_SKIP = object()


def parse_object(line: bytes, name: str, line_number: int, problems: InputProblems) -> dict[str, Any] | None:
    """One line as a JSON object, or None: a line that is not JSON (blank lines aside) or not an
    object is recorded in ``problems``. :func:`_rows` inlines the same steps. Cost: O(line)."""
    try:
        value = fast_loads(line)
    except FAST_ERRORS:
        value = _parse(line, name, line_number, problems)
        if value is _SKIP:
            return None
    if type(value) is not dict:
        problems.add(name, line_number, "not_an_object")
        return None
    return value


def _rows(inputs: list[InputStats], problems: InputProblems, progress: Progress | None,
          websocket: bool) -> Iterator[tuple[Any, ...]]:
    # One loop for every input kind; the websocket branch is inline because this runs once per
    # line of the largest input (a generator layer per line cost ~10% of analyze; benchmarks/).
    parse = fast_loads
    refused = FAST_ERRORS
    time_us = parse_time_us
    for file_index, stats in enumerate(inputs):
        line_number = 0
        base = file_index * LINE_SPAN
        limit = stats.line_limit
        if limit == 0:  # a read after the first, of a file that gave no line (follow: one that vanished)
            problems.add_truncation(stats)
            continue
        for batch in read_batches(stats.path, stats):
            if limit is not None and line_number + len(batch) >= limit:
                batch = batch[:limit - line_number]  # (what is beyond was not in the first read)
            for line in batch:
                line_number += 1
                try:
                    value = parse(line)
                except refused:
                    value = _parse(line, stats.name, line_number, problems)
                    if value is _SKIP:
                        continue
                if type(value) is not dict:
                    problems.add(stats.name, line_number, "not_an_object")
                    continue
                if not websocket:
                    yield file_index, line_number, value, line
                    continue
                received = value.get("received_at_utc")
                if received:
                    if type(received) is not str:
                        problems.add(stats.name, line_number, MISTYPED_RECEIVED_AT)
                        continue
                    received_us = time_us(received)
                    if received_us is None:
                        problems.note("unparseable_received_at_utc")
                else:
                    received_us = None
                yield (base + line_number,
                       (file_index, line_number, value.get("global_message_sequence"), received, received_us),
                       value, line)
            if progress is not None:
                if websocket:
                    progress.lines += len(batch)
                progress.update()
            if limit is not None and line_number >= limit:
                break
        problems.add_truncation(stats)


def iter_objects(inputs: list[InputStats], problems: InputProblems,
                 progress: Progress | None = None) -> Iterator[tuple[int, int, dict[str, Any], bytes]]:
    """Yield ``(file_index, line, object, raw line)`` for each JSON-object line of ``inputs``.

    Blank lines are skipped; other lines that are not JSON objects are recorded in ``problems``.
    Errors surface during iteration.

    Cost: O(input bytes); raises InputError when a file cannot be read (bad lines are counted).
    """
    return _rows(inputs, problems, progress, False)


def fresh_inputs(inputs: list[InputStats]) -> list[InputStats]:
    """Stats for reading ``inputs`` again (a replay, a second pass, a helper process).

    The first read's sizes, hashes and counts stay as they are: every read after the first goes
    through these, unhashed, with its problems not recorded again, and stopping at the same
    :attr:`~streamer.sources.InputStats.line_limit`. Cost: O(files).
    """
    again = []
    for stats in inputs:
        fresh = InputStats(stats.path, stats.name, stats.kind, hashed=False)
        fresh.line_limit = stats.line_limit
        again.append(fresh)
    return again


def iter_ws_rows(inputs: list[InputStats], problems: InputProblems, progress: Progress | None = None
                 ) -> Iterator[tuple[float, tuple[Any, ...], dict[str, Any], bytes]]:
    """Yield ``(key, row, value, raw line)`` for every usable websocket row, in stream order.

    ``row`` is ``(file_index, line, global_sequence, received_at_utc, received_us)`` and ``value``
    the parsed row. A row whose ``received_at_utc`` is not a string is skipped and recorded, as
    :func:`iter_objects` skips and records lines that are not JSON objects.

    Cost: O(input bytes); raises InputError when a file cannot be read (bad lines are counted).
    """
    return _rows(inputs, problems, progress, True)


def iter_ws_rows_again(inputs: list[InputStats]) -> Iterator[tuple[float, tuple[Any, ...], dict[str, Any], bytes]]:
    """:func:`iter_ws_rows` for a read after the first (:func:`fresh_inputs`).

    Cost: O(websocket bytes); raises InputError when a file cannot be read (problems are dropped).
    """
    return iter_ws_rows(fresh_inputs(inputs), InputProblems())


def iter_ws_parts(inputs: list[InputStats]) -> Iterator[tuple[float, tuple[Any, ...], dict[str, Any]]]:
    """``(key, row, parts by token)`` for every websocket row: the input of a second pass.

    Cost: O(websocket bytes); raises InputError when a file cannot be read (problems are dropped).
    """
    for key, row, value, raw in iter_ws_rows_again(inputs):
        yield key, row, row_parts(value, raw)


# -- analyze -----------------------------------------------------------------------------------

def _stats(names: list[str], kind: str) -> list[InputStats]:
    inputs = []
    for name in names:
        path = Path(name)
        try:
            check_readable(path, name)
        except InputError as exc:
            if path.is_absolute() or os.path.lexists(path):
                raise
            # the usual cause: a command run from another directory than the recorder's
            raise InputError(f"{exc} (a manifest names it relative to the working directory, "
                             f"{os.getcwd()})") from None
        inputs.append(InputStats(path, name, kind))
    return inputs


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _updated_artifacts(paths: list[Path], known: dict[Path, tuple[int, str]]) -> list[dict[str, Any]]:
    """``updated_source_or_doc_artifacts``: the paths that exist, hashes reused when known."""
    entries = []
    for path in paths:
        if not path.exists():
            continue
        size, sha = known.get(path.resolve()) or _sha256_file(path)
        entries.append({"path": path.as_posix(), "kind": "updated_or_referenced", "bytes": size, "sha256": sha})
    return entries


def _comparison_time(row: dict[str, Any]) -> int | None:
    value = row.get("rest_checkpoint_received_at_utc")
    return parse_time_us(value) if value and type(value) is str else None


def _quiet_gc() -> bool:
    """Switch the cyclic GC off for bulk work (the hot paths make no cycles); returns its old state."""
    enabled = gc.isenabled()
    gc.disable()
    return enabled


def analyze(config: AnalyzeConfig) -> Outcome:
    """Run the divergence analysis of SPEC section 4 as a stream and publish its outputs.

    Reads each input once (misses and out-of-order captures may add targeted passes over the
    websocket files, reported in the manifest). Writes nothing when an input is unusable.

    Cost: O(input bytes); memory O(tokens x windows), independent of capture length.

    :raises UsageError: for a negative ``context_limit``.
    :raises InputError: when a manifest or input file is missing or unreadable.
    """
    if config.context_limit < 0:
        raise UsageError("--context-limit must be 0 or more")
    started = iso_z()
    m10b = read_manifest(config.manifest_10b, MANIFEST_KEYS)
    m10c = read_manifest(config.manifest_10c, MANIFEST_KEYS)
    m10bc = read_manifest(config.manifest_10bc, MANIFEST_KEYS)
    review = read_manifest(config.orchestrator_review, MANIFEST_KEYS)
    ws_names = m10b.files(KIND_WS)
    rest_names = m10b.files(KIND_REST)
    comparison_names = m10c.files(KIND_COMPARISON)
    if not ws_names:
        raise InputError(f"manifest {m10b.name} names no {KIND_WS} file")
    if not comparison_names:
        raise InputError(f"manifest {m10c.name} names no {KIND_COMPARISON} file")
    ws_inputs = _stats(ws_names, KIND_WS)
    rest_inputs = _stats(rest_names, KIND_REST)
    comparison_inputs = _stats(comparison_names, KIND_COMPARISON)
    check_outputs({"--output-manifest": config.output_manifest, "--output-report": config.output_report},
                  [*(manifest.path for manifest in (m10b, m10c, m10bc, review)),
                   *(stats.path for stats in ws_inputs + rest_inputs + comparison_inputs)])
    problems = InputProblems()
    markets = market_tokens(m10b.get("markets"))
    shares = plan_shares(markets, config.workers)
    all_inputs = ws_inputs + rest_inputs + comparison_inputs
    progress = Progress.for_inputs(config.progress, all_inputs)
    gc_was_enabled = _quiet_gc()
    run = _Run(config.context_limit, config.price_evidence_seconds, ws_names, comparison_names,
               config.output_manifest, share=(None, frozenset().union(*shares)) if shares else None)
    try:  # (at once: a SIGTERM from here on unwinds through run.close())
        run.workers = 1 + len(shares)
        helpers = Helpers(_analyze_share, [(*run.args[:2], ws_inputs, comparison_inputs, tokens)
                                           for tokens in shares], Path(config.output_manifest).parent)
        with helpers:  # started before this process reads anything (no thread yet: fork is cheap)
            rest_rows = sum(1 for _ in iter_objects(rest_inputs, problems, progress))
            ws_rows = _analysis_pass(run.engine, ws_inputs, comparison_inputs, problems, progress)
            ws_rows = _websocket_messages(ws_rows, problems)
            _second_pass(run, ws_inputs, comparison_inputs)
            if shares:
                _merge_shares(run, helpers.results())
        progress.done()
        known = {stats.path.resolve(): (stats.size, stats.sha256) for stats in all_inputs}
        for manifest in (m10b, m10c, m10bc, review):
            known[manifest.path.resolve()] = (manifest.size, manifest.sha256)
        manifests = [m10b.artifact("10b_manifest"), m10c.artifact("10c_manifest_regenerated_for_10d0"),
                     m10bc.artifact("10bc_combined_manifest_prior_evidence"),
                     review.artifact("10bc_orchestrator_review")]
        gates = {"10b": m10b.get("gate_status"), "10c": m10c.get("gate_status"),
                 "10bc": m10bc.get("gate_status"), "orchestrator_review": review.gate()}
        return _publish_analysis(run, manifests, gates, ws_inputs, rest_inputs, comparison_inputs, rest_rows,
                                 ws_rows, known, problems, started, config.output_manifest, config.output_report)
    finally:
        run.close()
        if gc_was_enabled:
            gc.enable()


def _second_pass(run: _Run, ws_inputs: list[InputStats], comparison_inputs: list[InputStats]) -> None:
    """Answer the misses exactly; or, when late events may have changed a finished row, redo all."""
    if run.engine.join.redo_required:
        engine = run.restart()
        run.passes = engine.answer_exactly(_all_queries(engine, comparison_inputs), lambda: iter_ws_parts(ws_inputs))
    else:
        run.passes = run.engine.answer_misses(lambda: iter_ws_parts(ws_inputs))
    run.engine.finish()


def _analyze_share(context_limit: int, evidence_seconds: int, ws_inputs: list[InputStats],
                   comparison_inputs: list[InputStats], tokens: frozenset[str], out_dir: Path) -> dict[str, Any]:
    """A helper process of a sharded analyze: answer the rows of ``tokens`` (its markets).

    Reads every websocket and comparison row as the driver does but indexes only the events of
    ``tokens``; leaves its tagged results in ``out_dir`` and returns its counters for the driver.
    """
    _quiet_gc()
    run = _Run(context_limit, evidence_seconds, [stats.name for stats in ws_inputs],
               [stats.name for stats in comparison_inputs], out_dir / "manifest.json", share=(tokens, frozenset()))
    try:
        _analysis_pass(run.engine, fresh_inputs(ws_inputs), fresh_inputs(comparison_inputs), InputProblems(),
                       Progress(False, [], 1))
        _second_pass(run, ws_inputs, comparison_inputs)
        results = out_dir / "results.bin"
        os.replace(run.engine.seal_results(), results)
        return {**run.engine.share_summary(), "passes": run.passes, "redo": run.redo, "results": results}
    finally:
        run.close()


def _merge_shares(run: _Run, summaries: list[dict[str, Any]]) -> None:
    """The driver's end of a sharded analyze: add the helpers' counters, merge their results."""
    engine = run.engine
    for summary in summaries:
        engine.absorb(summary)
        run.passes += summary["passes"]
        run.redo = run.redo or summary["redo"]
    engine.merge_results([summary["results"] for summary in summaries])


def _publish_analysis(run: _Run, manifests: list[dict[str, Any]], gates: dict[str, Any],
                      ws_inputs: list[InputStats], rest_inputs: list[InputStats],
                      comparison_inputs: list[InputStats], rest_rows: int, ws_rows: int,
                      known: dict[Path, tuple[int, str]], problems: InputProblems, started: str,
                      output_manifest: Path, output_report: Path,
                      extra_fields: dict[str, Any] | None = None) -> Outcome:
    engine = run.engine
    comparison_names = [stats.name for stats in comparison_inputs]
    # lines skipped, and one per file that ended early (what it held after is unknown)
    engine.unread_comparison_lines = (problems.count(files=comparison_inputs)
                                      + sum(1 for stats in comparison_inputs if stats.truncated))
    problems.merge(engine.problems)
    updated = _updated_artifacts([*UPDATED_PATHS, *(Path(name) for name in comparison_names)], known)
    fields = _manifest_fields(engine, manifests, gates, ws_inputs, rest_inputs, comparison_inputs, rest_rows,
                              ws_rows, updated, problems, started, run.passes, run.redo, run.workers)
    if extra_fields:
        fields.update(extra_fields)
    engine.publish(Path(output_manifest), Path(output_report), fields)
    return Outcome(fields["gate_status"], {"manifest": Path(output_manifest), "report": Path(output_report)},
                   problems)


def _all_queries(engine: DivergenceAnalysis, comparison_inputs: list[InputStats]) -> Iterator[Query]:
    for file_index, line, row, raw in iter_objects(fresh_inputs(comparison_inputs), InputProblems()):
        query = engine.comparison_row(file_index, line, row, raw)
        if query is not None:
            yield query


def _analysis_pass(engine: DivergenceAnalysis, ws_inputs: list[InputStats], comparison_inputs: list[InputStats],
                   problems: InputProblems, progress: Progress) -> int:
    """The single pass: websocket rows into the join, comparison rows taken as time passes."""
    join = engine.join
    progress.divergences = lambda: engine.aggregates.divergent_rows  # every share's, as read
    comparisons = iter_objects(comparison_inputs, problems, None)
    head = next(comparisons, None)
    head_time = _head_time(head)
    previous_key = -1.0
    ws_rows = 0
    for key, row, value, raw in iter_ws_rows(ws_inputs, problems, progress):
        ws_rows += 1
        received_us = row[4]
        while head is not None and (head_time is None or (received_us is not None and head_time < received_us)):
            _take(engine, head, previous_key)
            head = next(comparisons, None)
            head_time = _head_time(head)
        join.advance(received_us)
        try:  # row_parts, inline: once per line of the largest input
            parts = analysis_parts(value.get("json"))
        except InexactNumber:
            parts = row_parts(value, raw)
        if parts:
            join.index(key, row, parts)
        previous_key = key
        if not ws_rows % SWEEP_EVERY:
            join.sweep()
    while head is not None:
        _take(engine, head, math.inf)
        head = next(comparisons, None)
    join.close()
    return ws_rows


def _head_time(head: tuple[int, int, dict[str, Any], bytes] | None) -> int | None:
    """When a comparison row may be taken: its checkpoint time if divergent, else at once."""
    if head is None or head[2].get("comparison_status") != "divergent":
        return None
    return _comparison_time(head[2])


def _take(engine: DivergenceAnalysis, head: tuple[int, int, dict[str, Any], bytes], stream_key: float) -> None:
    file_index, line, row, raw = head
    query = engine.comparison_row(file_index, line, row, raw)
    if query is not None:
        engine.join.take(query, engine.ws_file_of(query), stream_key)


def _analyzer_identity() -> dict[str, Any]:
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.read_bytes())
    return {"name": ANALYZER_NAME, "version": __version__, "script_path": package.as_posix(),
            "script_sha256": digest.hexdigest()}


def _manifest_fields(engine: DivergenceAnalysis, manifests: list[dict[str, Any]], gates: dict[str, Any],
                     ws_inputs: list[InputStats], rest_inputs: list[InputStats],
                     comparison_inputs: list[InputStats], rest_rows: int, ws_rows: int,
                     updated: list[dict[str, Any]], problems: InputProblems, started: str,
                     passes: int, redo: bool, workers: int) -> dict[str, Any]:
    """Every key of the divergence manifest except the two row arrays."""
    fields = {
        "schema_name": "checkpoint_010d0_ws_divergence_analysis",
        "schema_version": 1,
        "checkpoint_id": "10D0",
        "checkpoint_name": "Websocket Reconstruction Divergence Analysis",
        "analyzer": _analyzer_identity(),
        "started_at_utc": started,
        "ended_at_utc": iso_z(),
        "production_ready": False,
        "live_kubernetes_collector_modified": False,
        "input_artifacts": [
            *manifests,
            *(stats.artifact() for stats in ws_inputs),
            *(stats.artifact() for stats in rest_inputs),
            *(stats.artifact("rest_comparison_rows_regenerated_for_10d0") for stats in comparison_inputs),
        ],
        "updated_source_or_doc_artifacts": updated,
        "accepted_prior_gates": gates,
        "row_counts": {
            # JSON lines that are not objects carry nothing, yet the reference counts every line
            # it parses (it reads a REST row no further, a websocket row only for a named token)
            "raw_websocket_messages": ws_rows + problems.count("not_an_object", ws_inputs),
            "rest_checkpoints": rest_rows + problems.count("not_an_object", rest_inputs),
            "comparison_rows": engine.aggregates.comparison_rows,
            "divergent_rows": engine.aggregates.divergent_rows,
        },
        "validation": {
            "commands": [
                {"command": "python scripts/reconstruct_polymarket_ws_books.py", "status": "PASS",
                 "note": "Regenerated 10C derived outputs from unchanged 10B raw inputs after adding line/message context."},
                {"command": "scripts/analyze_polymarket_ws_divergences.py", "status": "PASS"},
            ]
        },
        "input_problems": problems.as_json(),
        "streaming": {
            "json_backend": JSON_BACKEND,
            "gzip_backend": GZIP_BACKEND,
            "context_misses": engine.join.misses,
            "pending_rows_spilled": engine.join.spilled_pending,
            "late_websocket_events": engine.join.late_events,
            "exact_recomputation": redo,
            "second_passes": passes,
            "reordered_results_spilled": engine.spool.spilled_records,
            "workers": workers,
        },
    }
    fields.update(engine.summary_fields())
    return fields


# -- reconstruct and run ---------------------------------------------------------------------------

DEFAULT_OUTPUT_ROWS = Path("data/derived/rest_comparison_rows.jsonl.gz")


@dataclass
class ReconstructConfig:
    """Flags of ``streamer reconstruct``; ``manifest_10c`` is the 10C manifest it writes."""

    manifest_10b: Path = DEFAULT_10B_MANIFEST
    top_n: int = 10
    output_rows: Path = DEFAULT_OUTPUT_ROWS
    manifest_10c: Path = DEFAULT_10C_MANIFEST
    progress: bool = False


@dataclass
class RunConfig(ReconstructConfig):
    """Flags of ``streamer run``: reconstruct's and analyze's (the 10BC and review are optional)."""

    manifest_10bc: Path | None = None
    orchestrator_review: Path | None = None
    output_manifest: Path = DEFAULT_OUTPUT_MANIFEST
    output_report: Path = DEFAULT_OUTPUT_REPORT
    context_limit: int = 5
    price_evidence_seconds: int = 10
    #: 2 or more: the analysis runs in a helper process beside the reconstruction (same outputs)
    workers: int = 1


def reconstruction_pass(session: RunSession, ws_inputs: list[InputStats], rest_inputs: list[InputStats],
                        problems: InputProblems, progress: Progress) -> int:
    """One pass: websocket rows into the session, checkpoints compared as time passes.

    A REST row received at ``T`` is compared just before the first websocket row received after
    ``T`` (SPEC section 3); each comparison row goes to ``session.rows`` and, with an analysis,
    is taken by its join at that same moment. Returns the number of websocket rows.

    Cost: O(input bytes), re-read if a checkpoint was late; raises InputError, OSError, HelperError (relay).
    """
    rest = iter_objects(rest_inputs, problems)
    head = next(rest, None)
    head_time = rest_time_us(head[2]) if head is not None else None
    counts = session.reconstructor.status_counts
    progress.divergences = lambda: counts.get("divergent", 0)
    for key, row, value, raw in iter_ws_rows(ws_inputs, problems, progress):
        received_us = row[4]
        while head is not None and (head_time is None or (received_us is not None and head_time < received_us)):
            session.checkpoint(head[0], head[1], head[2])
            head = next(rest, None)
            head_time = rest_time_us(head[2]) if head is not None else None
        session.websocket_row(key, row, value, raw)
    while head is not None:
        session.checkpoint(head[0], head[1], head[2], math.inf)
        head = next(rest, None)
    session.replay_late(lambda: iter_ws_rows_again(ws_inputs))
    session.end_of_stream()
    return session.ws_rows


def _manifest_10c(config: ReconstructConfig, m10b: Any, ws_inputs: list[InputStats],
                  rest_inputs: list[InputStats], rows: GzipRowsWriter, reconstructor: Reconstructor,
                  ws_rows: int, problems: InputProblems) -> bytes:
    """The 10C manifest, deterministic (no clock): the same inputs always give the same bytes."""
    manifest = {
        "schema_name": "checkpoint_010c_book_reconstruction",
        "schema_version": 1,
        "checkpoint_id": "10C",
        "gate_status": reconstructor.gate(),
        "reconstructor": {"name": ANALYZER_NAME, "version": __version__, "top_n": config.top_n},
        "input_artifacts": [m10b.artifact("10b_manifest"), *(stats.artifact() for stats in ws_inputs),
                            *(stats.artifact() for stats in rest_inputs)],
        "output_files": [{"path": Path(config.output_rows).as_posix(), "kind": KIND_COMPARISON,
                          "rows": rows.rows, "bytes": rows.size, "sha256": rows.sha256}],
        "row_counts": {"raw_websocket_messages": ws_rows, "rest_checkpoints": reconstructor.rest_rows,
                       "rest_checkpoints_rejected": reconstructor.rest_rejected,
                       "comparison_rows": reconstructor.comparison_rows},
        "comparison_status_counts": dict(sorted(reconstructor.status_counts.items())),
        "anomalies": reconstructor.anomalies.as_json(),
        "input_problems": problems.as_json(),
    }
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("ascii")


def _websocket_messages(rows_fed: int, problems: InputProblems) -> int:
    """``row_counts.raw_websocket_messages``: the rows fed, and those skipped for a mistyped time
    (still websocket messages: the reference counts them)."""
    return rows_fed + problems.count(MISTYPED_RECEIVED_AT)


def file_identity(path: Path) -> object:
    """What tells one file from another: ``(device, inode)`` of the file at ``path``, or, when
    there is none yet (or it cannot be reached), its absolute path after symlinks.

    Cost: a stat (and a path resolution). Raises nothing (a symlink loop is taken as written).
    """
    try:
        status = path.stat()
    except OSError:
        return _resolved(path)
    return (status.st_dev, status.st_ino)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except RuntimeError:  # (a symlink loop, which Python 3.11's resolve() raises for)
        return Path(os.path.abspath(path))


def check_outputs(outputs: dict[str, Path], inputs: list[Path]) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy something.

    ``outputs`` maps each output flag to its path. Refused: two flags naming one file, an output
    that is one of ``inputs`` (by path after symlinks, or by inode), an output that is a
    directory, and one whose nearest existing parent is not a directory in which a file can be
    created (tried: a probe file is made and removed). Cost: O(outputs x inputs) path resolutions
    and stats, and a probe per parent.

    :raises UsageError: naming the flag and the path.
    """
    identity = file_identity
    read = {identity(Path(path)): Path(path) for path in inputs}
    named: dict[object, str] = {}
    probed: set[Path] = set()
    for flag, path in outputs.items():
        path = Path(path)
        key = identity(path)
        if key in named:
            raise UsageError(f"{flag} and {named[key]} name the same file ({path})")
        if key in read:
            raise UsageError(f"{flag} {path} is an input of this command; writing it would destroy it")
        named[key] = flag
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a directory")
        parent = _resolved(path).parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"cannot write {flag} {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write {flag} {path}: {parent} is not writable")
        if parent not in probed:  # os.access says yes to root, also where a write fails (/proc, /sys)
            try:
                with stops_held():  # (a stop between making and removing it would leave it behind)
                    handle, probe = tempfile.mkstemp(prefix=".streamer-probe-", dir=parent)
                    os.close(handle)
                    os.unlink(probe)
            except OSError as exc:
                raise UsageError(f"cannot write {flag} {path}: no file can be made in {parent} "
                                 f"({exc.strerror or exc})") from None
            probed.add(parent)


def _reconstruction_inputs(config: ReconstructConfig) -> tuple[Any, list[InputStats], list[InputStats]]:
    if config.top_n < 0:
        raise UsageError("--top-n must be 0 or more")
    m10b = read_manifest(config.manifest_10b, MANIFEST_KEYS)
    ws_names = m10b.files(KIND_WS)
    if not ws_names:
        raise InputError(f"manifest {m10b.name} names no {KIND_WS} file")
    ws_inputs, rest_inputs = _stats(ws_names, KIND_WS), _stats(m10b.files(KIND_REST), KIND_REST)
    for ws in ws_inputs:  # (read as both, REST summaries pass for books and every comparison matches)
        for rest in rest_inputs:
            if os.path.samefile(ws.path, rest.path):
                raise InputError(f"manifest {m10b.name} names {rest.name} as a {KIND_REST} file and "
                                 f"{ws.name} as a {KIND_WS} file: they are one file")
    return m10b, ws_inputs, rest_inputs


def _rows_pass(session: RunSession, config: ReconstructConfig, ws_inputs: list[InputStats],
               rest_inputs: list[InputStats], problems: InputProblems) -> GzipRowsWriter:
    """The pass of ``reconstruct`` and ``run``, into the rows file (committed on return)."""
    progress = Progress.for_inputs(config.progress, ws_inputs + rest_inputs)
    output = Path(config.output_rows)
    # Rows waiting behind a late checkpoint, and its REST row, spill beside the output, in a
    # directory removed whatever happens (a failed run leaves no spill files among the outputs).
    output.parent.mkdir(parents=True, exist_ok=True)
    with stops_held():  # (made and its removal registered in one step)
        spill_dir = tempfile.TemporaryDirectory(prefix=".streamer-rows-", dir=output.parent)
    with (GzipRowsWriter(output) as rows, spill_dir as spill,
          open(Path(spill) / "late-rest-rows.bin", "w+b") as late_rest_rows):
        session.rows = ordered = OrderedRows(rows, Path(spill))
        session.late_spill = late_rest_rows
        reconstruction_pass(session, ws_inputs, rest_inputs, problems, progress)
        ordered.finish()
        session.late_spill = None
    progress.done()
    return rows


def reconstruct(config: ReconstructConfig) -> Outcome:
    """Rebuild every book, compare with each REST checkpoint, write the rows and the 10C manifest.

    Cost: O(input bytes); memory O(tokens x levels), independent of capture length.

    :raises InputError: when the manifest or an input file is missing or unreadable.
    """
    m10b, ws_inputs, rest_inputs = _reconstruction_inputs(config)
    check_outputs({"--output-rows": config.output_rows, "--output-manifest": config.manifest_10c},
                  [m10b.path, *(stats.path for stats in ws_inputs + rest_inputs)])
    problems = InputProblems()
    reconstructor = Reconstructor(markets_by_token(m10b), [s.name for s in ws_inputs],
                                  [s.name for s in rest_inputs], config.top_n)
    session = RunSession(reconstructor, None)
    gc_was_enabled = _quiet_gc()
    try:
        rows = _rows_pass(session, config, ws_inputs, rest_inputs, problems)
        write_atomic(Path(config.manifest_10c),
                     _manifest_10c(config, m10b, ws_inputs, rest_inputs, rows, reconstructor,
                                   _websocket_messages(session.ws_rows, problems), problems))
    finally:
        if gc_was_enabled:
            gc.enable()
    return Outcome(reconstructor.gate(), {"rows": Path(config.output_rows), "manifest": Path(config.manifest_10c)},
                   problems, warnings=reconstructor.warnings())


def optional_manifests(config: RunConfig) -> list[Any]:
    """The 10BC manifest and the orchestrator review of ``config`` (None where not given).

    Cost: O(bytes of the given manifests); raises InputError (below).

    :raises InputError: when a given manifest is missing or unreadable.
    """
    return [read_manifest(path, MANIFEST_KEYS) if path is not None else None
            for path in (config.manifest_10bc, config.orchestrator_review)]


def relayed_analysis(messages: Any, ws_inputs: list[InputStats], rows_name: str, context_limit: int,
                     evidence_seconds: int, output_manifest: Path, out_dir: Path) -> Outcome:
    """The analysis half of ``run --workers 2``, in a helper process.

    Reads the websocket files itself and replays, from the driver's :attr:`RunSession.relay`
    messages (``messages.recv()``), the calls a one-process run makes on its analysis, in the
    same order and at the same stream positions: so the results are the same, while the driver
    only reconstructs. Ends with the driver's ``("publish", arguments)``: the second pass, then
    the divergence manifest and report; returns their :class:`Outcome`.

    Cost: a read of the websocket files and the analysis; raises InputError, OSError, EOFError (pipe).
    """
    _quiet_gc()
    analysis = _Run(context_limit, evidence_seconds, [stats.name for stats in ws_inputs], [rows_name],
                    output_manifest)
    engine = analysis.engine
    join = engine.join
    rows = iter_ws_rows_again(ws_inputs)
    pending: Any = None
    fed = 0

    def feed(upto: float) -> None:
        nonlocal pending, fed
        while pending is not None and pending[0] <= upto:
            key, row, value, raw = pending
            fed += 1
            feed_join(join, key, row, value, fed, raw)
            pending = next(rows, None)

    try:
        pending = next(rows, None)
        while True:
            message = messages.recv()
            kind = message[0]
            if kind == "upto":
                feed(message[1])
            elif kind == "take":
                feed(message[1])
                for line, ordinal, relayed in message[2]:
                    row = loads(relayed) if type(relayed) is bytes else relayed
                    query = engine.comparison_row(0, line, row, ordinal=ordinal)
                    if query is not None:
                        join.take(query, engine.ws_file_of(query), message[1])
            elif kind == "defer":
                for line, ordinal, serialized in message[1]:
                    query = engine.comparison_row(0, line, loads(serialized), ordinal=ordinal)
                    if query is not None:
                        engine.defer(query)
            elif kind == "end":
                feed(math.inf)
                join.close()
            else:  # "publish": everything the driver knows, once its pass is over
                return _publish_analysis_of_run(analysis, message[1])
    finally:
        analysis.close()


def run(config: RunConfig) -> Outcome:
    """Reconstruct and analyze in one pass over the websocket input; write all four outputs.

    Equal to ``reconstruct`` then ``analyze`` on the same files (SPEC section 4 rules): the rows
    and the 10C manifest are byte for byte the same, and each comparison row enters the
    analysis the moment it is made, with no re-read of the rows. With ``workers`` 2 or more the
    analysis runs in a helper process that reads the websocket files once more
    (:func:`relayed_analysis`); the outputs are the same.

    Cost: O(input bytes), re-reads for misses and late checkpoints; raises as below, OSError, HelperError.

    :raises UsageError: for a negative ``top_n`` or ``context_limit``.
    :raises InputError: when a manifest or input file is missing or unreadable.
    """
    started = iso_z()
    m10b, ws_inputs, rest_inputs = _reconstruction_inputs(config)
    optional = optional_manifests(config)
    check_outputs({"--output-rows": config.output_rows, "--manifest-10c": config.manifest_10c,
                   "--output-manifest": config.output_manifest, "--output-report": config.output_report},
                  [m10b.path, *(manifest.path for manifest in optional if manifest is not None),
                   *(stats.path for stats in ws_inputs + rest_inputs)])
    if config.context_limit < 0:
        raise UsageError("--context-limit must be 0 or more")
    if config.workers > 1:
        return _run_relayed(config, m10b, optional, ws_inputs, rest_inputs, started)
    problems = InputProblems()
    gc_was_enabled = _quiet_gc()
    session = RunSession.for_run(markets_by_token(m10b), [s.name for s in ws_inputs], [s.name for s in rest_inputs],
                                 top_n=config.top_n, context_limit=config.context_limit,
                                 evidence_seconds=config.price_evidence_seconds, rows_name=str(config.output_rows),
                                 output_manifest=config.output_manifest)
    try:  # (at once: a SIGTERM from here on unwinds through session.close())
        rows = _rows_pass(session, config, ws_inputs, rest_inputs, problems)
        outcome = finish_run(session, config, m10b, optional, ws_inputs, rest_inputs, rows, problems, started)
    finally:
        session.close()
        if gc_was_enabled:
            gc.enable()
    return outcome


def _run_relayed(config: RunConfig, m10b: Any, optional: list[Any], ws_inputs: list[InputStats],
                 rest_inputs: list[InputStats], started: str) -> Outcome:
    """``run`` in two processes: this one reconstructs, a helper analyzes (:func:`relayed_analysis`)."""
    problems = InputProblems()
    reconstructor = Reconstructor(markets_by_token(m10b), [s.name for s in ws_inputs],
                                  [s.name for s in rest_inputs], config.top_n)
    session = RunSession(reconstructor, None)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    job = (receiver, ws_inputs, str(config.output_rows), config.context_limit,
           config.price_evidence_seconds, Path(config.output_manifest))
    helpers = Helpers(relayed_analysis, [job], Path(config.output_manifest).parent)
    gc_was_enabled = _quiet_gc()
    try:
        with helpers:
            receiver.close()  # the helper's end
            session.relay = _Relay(sender, helpers)
            rows = _rows_pass(session, config, ws_inputs, rest_inputs, problems)
            publish = _finish_reconstruction(session, config, m10b, optional, ws_inputs, rest_inputs, rows,
                                             problems, started, None, None)
            session.relay(("publish", publish))
            outcome: Outcome = helpers.results()[0]
    finally:
        sender.close()
        if gc_was_enabled:
            gc.enable()
    return _with_reconstruction(outcome, config, reconstructor)


class _Relay:
    """Sends a run's analysis messages to its helper; a helper gone is reported as its own error."""

    def __init__(self, sender: Any, helpers: Helpers) -> None:
        self._send = sender.send
        self._helpers = helpers

    def __call__(self, message: tuple[Any, ...]) -> None:
        try:
            self._send(message)
        except (BrokenPipeError, ConnectionResetError):
            self._helpers.results()  # raises the helper's error
            raise HelperError("the analysis helper stopped reading") from None


def finish_run(session: RunSession, config: RunConfig, m10b: Any, optional: list[Any], ws_inputs: list[InputStats],
               rest_inputs: list[InputStats], rows: GzipRowsWriter, problems: InputProblems, started: str, *,
               fix_10c: Callable[[bytes], bytes] | None = None, extra_fields: dict[str, Any] | None = None
               ) -> Outcome:
    """After the pass: write the 10C manifest, answer the misses, publish the divergence manifest and report.

    ``rows`` is the committed comparison rows file (its ``rows``, ``size`` and ``sha256``);
    ``optional`` the 10BC manifest and the review (or None). ``fix_10c`` may rewrite the 10C
    manifest's bytes before they are written and hashed; ``extra_fields`` are added to the
    divergence manifest (keys streamer adds). Used by ``run`` and by ``follow`` at its exit.

    Cost: the second pass, when there are misses, reads the websocket files once per
    :data:`streamer.analysis.EXACT_BATCH` misses; the rest is O(output).
    """
    analysis = session.analysis
    assert analysis is not None, "finish_run needs a session with an analysis"
    publish = _finish_reconstruction(session, config, m10b, optional, ws_inputs, rest_inputs, rows, problems,
                                     started, fix_10c, extra_fields)
    return _with_reconstruction(_publish_analysis_of_run(analysis, publish), config, session.reconstructor)


def _finish_reconstruction(session: RunSession, config: RunConfig, m10b: Any, optional: list[Any],
                           ws_inputs: list[InputStats], rest_inputs: list[InputStats], rows: GzipRowsWriter,
                           problems: InputProblems, started: str, fix_10c: Callable[[bytes], bytes] | None,
                           extra_fields: dict[str, Any] | None) -> dict[str, Any]:
    """Write the 10C manifest; return what publishing the analysis needs (picklable)."""
    reconstructor = session.reconstructor
    ws_rows = _websocket_messages(session.ws_rows, problems)
    rows_name = str(config.output_rows)
    inputs = ws_inputs + rest_inputs
    manifest_10c = _manifest_10c(config, m10b, ws_inputs, rest_inputs, rows, reconstructor, ws_rows, problems)
    if fix_10c is not None:
        manifest_10c = fix_10c(manifest_10c)
    write_atomic(Path(config.manifest_10c), manifest_10c)
    rows_stats = InputStats(Path(rows_name), rows_name, KIND_COMPARISON)
    rows_stats.size, rows_stats.sha256 = rows.size, rows.sha256
    known = {stats.path.resolve(): (stats.size, stats.sha256) for stats in [*inputs, rows_stats]}
    known[Path(config.manifest_10c).resolve()] = (len(manifest_10c), hashlib.sha256(manifest_10c).hexdigest())
    known[m10b.path.resolve()] = (m10b.size, m10b.sha256)
    manifests = [m10b.artifact("10b_manifest"),
                 {"path": Path(config.manifest_10c).as_posix(), "kind": "10c_manifest_regenerated_for_10d0",
                  "bytes": len(manifest_10c), "sha256": hashlib.sha256(manifest_10c).hexdigest()}]
    m10bc, review = optional
    if m10bc is not None:
        manifests.append(m10bc.artifact("10bc_combined_manifest_prior_evidence"))
        known[m10bc.path.resolve()] = (m10bc.size, m10bc.sha256)
    if review is not None:
        manifests.append(review.artifact("10bc_orchestrator_review"))
        known[review.path.resolve()] = (review.size, review.sha256)
    gates = {"10b": m10b.get("gate_status"), "10c": reconstructor.gate(),
             "10bc": m10bc.get("gate_status") if m10bc is not None else None,
             "orchestrator_review": review.gate() if review is not None else None}
    return {"manifests": manifests, "gates": gates, "ws_inputs": ws_inputs, "rest_inputs": rest_inputs,
            "comparison_inputs": [rows_stats], "rest_rows": reconstructor.rest_rows, "ws_rows": ws_rows,
            "known": known, "problems": problems, "started": started,
            "output_manifest": config.output_manifest, "output_report": config.output_report,
            "extra_fields": extra_fields}


def _publish_analysis_of_run(analysis: _Run, publish: dict[str, Any]) -> Outcome:
    """The second pass over the websocket files, then the divergence manifest and report."""
    _second_pass(analysis, publish["ws_inputs"], publish["comparison_inputs"])
    return _publish_analysis(analysis, **publish)


def _with_reconstruction(outcome: Outcome, config: RunConfig, reconstructor: Reconstructor) -> Outcome:
    """``run``'s outcome: the analysis's, plus the rows, the 10C manifest and the 10C gate."""
    outcome.written.update({"rows": Path(config.output_rows), "manifest_10c": Path(config.manifest_10c)})
    outcome.reconstruction_gate = reconstructor.gate()
    outcome.warnings = reconstructor.warnings()
    return outcome
