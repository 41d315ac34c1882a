"""Batch drivers: the files a manifest names, read once in order, fed to the engines.

``analyze`` (SPEC section 4) streams the websocket rows once into the join, takes each comparison
row as the stream passes its checkpoint time, and publishes the divergence manifest and report.
The engines own no file policy; this module owns nothing else.
"""

from __future__ import annotations

import gc
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .analysis import ANALYZER_NAME, DivergenceAnalysis, iso_z, make_work_dir, remove_work_dir
from .classify import Query
from .decoders import GZIP_BACKEND, JSON_BACKEND, loads
from .errors import InputError, UsageError
from .index import LINE_SPAN
from .manifests import KIND_COMPARISON, KIND_REST, KIND_WS, Manifest, read_manifest
from .payloads import analysis_parts, parse_time_us
from .sources import InputProblems, InputStats, check_readable, read_batches

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
SWEEP_EVERY = 1 << 16


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


@dataclass
class Outcome:
    """What a command produced: its gate, the files written and what went wrong in the input."""

    gate: str
    written: dict[str, Path] = field(default_factory=dict)
    problems: InputProblems = field(default_factory=InputProblems)


# -- reading rows ------------------------------------------------------------------------------

def _is_blank(line: bytes) -> bool:
    if not line.strip():
        return True
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


class Progress:
    """Progress on stderr while it is a terminal: input bytes read of total, rows, divergences."""

    def __init__(self, enabled: bool, inputs: list[InputStats], total: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.inputs = inputs
        self.total = max(total, 1)
        self._last = 0.0
        self.rows = 0
        self.divergences = 0

    def update(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        self._last = now
        done = sum(stats.bytes_read for stats in self.inputs)
        sys.stderr.write(f"\rstreamer: {done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB read, "
                         f"{self.rows:,} rows, {self.divergences:,} divergences ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def iter_objects(inputs: list[InputStats], problems: InputProblems,
                 progress: Progress | None = None) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Yield ``(file_index, line, object)`` for each JSON-object line of ``inputs``, in order.

    Blank lines are skipped; other lines that are not JSON objects are recorded in ``problems``.
    Errors surface during iteration.
    """
    for file_index, stats in enumerate(inputs):
        line_number = 0
        for batch in read_batches(stats.path, stats):
            for line in batch:
                line_number += 1
                try:
                    value = loads(line)
                except (ValueError, RecursionError):
                    if not _is_blank(line):
                        problems.add(stats.name, line_number, "not_json")
                    continue
                if type(value) is not dict:
                    problems.add(stats.name, line_number, "not_an_object")
                    continue
                yield file_index, line_number, value
            if progress is not None:
                progress.update()
        problems.add_truncation(stats)


def iter_ws_rows(inputs: list[InputStats], problems: InputProblems,
                 progress: Progress | None = None) -> Iterator[tuple[float, tuple[Any, ...], dict[str, Any]]]:
    """Yield ``(key, row, parts)`` for every usable websocket row, in stream order.

    ``row`` is ``(file_index, line, global_sequence, received_at_utc, received_us)`` and ``parts``
    the row's compact parts by token (:func:`~streamer.payloads.analysis_parts`). A row whose
    ``received_at_utc`` is not a string is skipped and recorded.
    """
    for file_index, line, value in iter_objects(inputs, problems, progress):
        received = value.get("received_at_utc")
        if received and type(received) is not str:
            problems.add(inputs[file_index].name, line, "mistyped_received_at_utc")
            continue
        received_us = parse_time_us(received) if received else None
        if received and received_us is None:
            problems.note("unparseable_received_at_utc")
        yield (file_index * LINE_SPAN + line,
               (file_index, line, value.get("global_message_sequence"), received, received_us),
               analysis_parts(value.get("json")))


# -- analyze -----------------------------------------------------------------------------------

def _stats(names: list[str], kind: str) -> list[InputStats]:
    inputs = []
    for name in names:
        path = Path(name)
        check_readable(path, name)
        inputs.append(InputStats(path, name, kind))
    return inputs


def _summary(path: Path, known: dict[Path, tuple[int, str]]) -> dict[str, Any] | None:
    """``updated_source_or_doc_artifacts`` entry for ``path`` if it exists (hash reused if known)."""
    if not path.exists():
        return None
    known_entry = known.get(path.resolve())
    if known_entry is None:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        known_entry = (path.stat().st_size, digest.hexdigest())
    return {"path": path.as_posix(), "kind": "updated_or_referenced", "bytes": known_entry[0],
            "sha256": known_entry[1]}


def _comparison_time(row: dict[str, Any]) -> int | None:
    value = row.get("rest_checkpoint_received_at_utc")
    return parse_time_us(value) if value and type(value) is str else None


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
    comparison_inputs = _stats(comparison_names, "rest_comparison_rows_regenerated_for_10d0")
    problems = InputProblems()
    work_dir = make_work_dir(Path(config.output_manifest).parent)
    engine = DivergenceAnalysis(config.context_limit, config.price_evidence_seconds, ws_names,
                                comparison_names, work_dir)
    all_inputs = ws_inputs + rest_inputs + comparison_inputs
    progress = Progress(config.progress, all_inputs, sum(stats.path.stat().st_size for stats in all_inputs))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        rest_rows = sum(1 for _ in iter_objects(rest_inputs, problems, progress))
        ws_rows, passes = _main_pass(engine, ws_inputs, comparison_inputs, problems, progress)
        for file_index, line, reason in engine.problems:
            problems.add(comparison_names[file_index], line, f"mistyped_comparison_field: {reason}")
        redo = engine.join.redo_required
        if redo:
            engine.close()
            remove_work_dir(work_dir)
            work_dir = make_work_dir(Path(config.output_manifest).parent)
            engine = DivergenceAnalysis(config.context_limit, config.price_evidence_seconds, ws_names,
                                        comparison_names, work_dir)
            queries = _all_queries(engine, comparison_inputs)
            passes = engine.answer_exactly(queries, lambda: iter_ws_rows(ws_inputs, InputProblems()))
        progress.done()
        engine.finish()
        known = {stats.path.resolve(): (stats.size, stats.sha256) for stats in all_inputs}
        for manifest in (m10b, m10c, m10bc, review):
            known[manifest.path.resolve()] = (manifest.size, manifest.sha256)
        updated = [entry for entry in (_summary(path, known) for path in
                                       [*UPDATED_PATHS, *(Path(name) for name in comparison_names)])
                   if entry is not None]
        fields = _manifest_fields(config, engine, m10b, m10c, m10bc, review, ws_inputs, rest_inputs,
                                  comparison_inputs, rest_rows, ws_rows, updated, problems, started,
                                  passes, redo)
        engine.publish(Path(config.output_manifest), Path(config.output_report), fields)
        return Outcome(fields["gate_status"], {"manifest": Path(config.output_manifest),
                                                "report": Path(config.output_report)}, problems)
    finally:
        engine.close()
        remove_work_dir(work_dir)
        if gc_was_enabled:
            gc.enable()


def _all_queries(engine: DivergenceAnalysis, comparison_inputs: list[InputStats]) -> Iterator[Query]:
    for file_index, line, row in iter_objects(comparison_inputs, InputProblems()):
        query = engine.comparison_row(file_index, line, row)
        if query is not None:
            yield query


def _main_pass(engine: DivergenceAnalysis, ws_inputs: list[InputStats], comparison_inputs: list[InputStats],
               problems: InputProblems, progress: Progress) -> tuple[int, int]:
    """The single pass: websocket rows into the join, comparison rows taken as time passes."""
    join = engine.join
    comparisons = iter_objects(comparison_inputs, problems, None)
    head = next(comparisons, None)
    head_time = _head_time(head)
    previous_key = -1.0
    ws_rows = 0
    for key, row, parts in iter_ws_rows(ws_inputs, problems, progress):
        ws_rows += 1
        received_us = row[4]
        while head is not None and (head_time is None or (received_us is not None and head_time < received_us)):
            _take(engine, head, previous_key)
            head = next(comparisons, None)
            head_time = _head_time(head)
        join.advance(received_us)
        if parts:
            join.index(key, row, parts)
        previous_key = key
        if not ws_rows % SWEEP_EVERY:
            join.sweep()
            progress.rows = ws_rows
            progress.divergences = engine.aggregates.divergence_results
    while head is not None:
        _take(engine, head, math.inf)
        head = next(comparisons, None)
    join.close()
    passes = engine.answer_misses(lambda: iter_ws_rows(ws_inputs, InputProblems()))
    return ws_rows, passes


def _head_time(head: tuple[int, int, dict[str, Any]] | None) -> int | None:
    """When a comparison row may be taken: its checkpoint time if divergent, else at once."""
    if head is None or head[2].get("comparison_status") != "divergent":
        return None
    return _comparison_time(head[2])


def _take(engine: DivergenceAnalysis, head: tuple[int, int, dict[str, Any]], stream_key: float) -> None:
    file_index, line, row = head
    query = engine.comparison_row(file_index, line, row)
    if query is not None:
        engine.join.take(query, engine.ws_file_of(query), stream_key)


def _manifest_fields(config: AnalyzeConfig, engine: DivergenceAnalysis, m10b: Manifest, m10c: Manifest,
                     m10bc: Manifest, review: Manifest, ws_inputs: list[InputStats],
                     rest_inputs: list[InputStats], comparison_inputs: list[InputStats], rest_rows: int,
                     ws_rows: int, updated: list[dict[str, Any]], problems: InputProblems, started: str,
                     passes: int, redo: bool) -> dict[str, Any]:
    """Every key of the divergence manifest except the two row arrays."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.read_bytes())
    fields = {
        "schema_name": "checkpoint_010d0_ws_divergence_analysis",
        "schema_version": 1,
        "checkpoint_id": "10D0",
        "checkpoint_name": "Websocket Reconstruction Divergence Analysis",
        "analyzer": {
            "name": ANALYZER_NAME,
            "version": __version__,
            "script_path": package.as_posix(),
            "script_sha256": digest.hexdigest(),
        },
        "started_at_utc": started,
        "ended_at_utc": iso_z(),
        "production_ready": False,
        "live_kubernetes_collector_modified": False,
        "input_artifacts": [
            m10b.artifact("10b_manifest"),
            m10c.artifact("10c_manifest_regenerated_for_10d0"),
            m10bc.artifact("10bc_combined_manifest_prior_evidence"),
            review.artifact("10bc_orchestrator_review"),
            *(stats.artifact() for stats in ws_inputs),
            *(stats.artifact() for stats in rest_inputs),
            *(stats.artifact() for stats in comparison_inputs),
        ],
        "updated_source_or_doc_artifacts": updated,
        "accepted_prior_gates": {
            "10b": m10b.get("gate_status"),
            "10c": m10c.get("gate_status"),
            "10bc": m10bc.get("gate_status"),
            "orchestrator_review": review.gate(),
        },
        "row_counts": {
            "raw_websocket_messages": ws_rows,
            "rest_checkpoints": rest_rows,
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
            "context_misses": engine.miss_count,
            "pending_rows_spilled": engine.join.spilled_pending,
            "late_websocket_events": engine.join.late_events,
            "exact_recomputation": redo,
            "second_passes": passes,
            "reordered_results_spilled": engine.spool.spilled_records,
        },
    }
    fields.update(engine.summary_fields())
    return fields
