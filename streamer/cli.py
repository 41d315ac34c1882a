"""The command line: flags, exit codes and messages; every command calls one library function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__, batch
from .errors import StreamerError

EXIT_PASS = 0
EXIT_GATE_NOT_PASSED = 1
EXIT_INPUT = 2


def _analysis_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context-limit", type=int, default=5,
                        help="websocket events of context before and after a row's last applied line (default 5)")
    parser.add_argument("--price-evidence-seconds", type=int, default=10,
                        help="window around the checkpoint for price-change evidence (default 10)")
    parser.add_argument("--output-manifest", type=Path, default=batch.DEFAULT_OUTPUT_MANIFEST,
                        help="divergence manifest to write (default %(default)s)")
    parser.add_argument("--output-report", type=Path, default=batch.DEFAULT_OUTPUT_REPORT,
                        help="markdown report to write (default %(default)s)")


def _progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="never show progress on stderr (it is shown only on a terminal anyway)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Audit recorded Polymarket order-book feeds as a stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    analyze = commands.add_parser(
        "analyze", help="explain every divergent comparison row (the reference analyzer, streamed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain every divergent REST-vs-websocket comparison row: context, evidence, "
                    "classification, gate.\n\nExample:\n  streamer analyze --manifest-10b data/manifests/10b.json "
                    "--manifest-10c data/manifests/10c.json \\\n    --manifest-10bc data/manifests/10bc.json "
                    "--orchestrator-review data/manifests/review.json")
    analyze.add_argument("--manifest-10b", type=Path, default=batch.DEFAULT_10B_MANIFEST,
                         help="10B manifest naming the websocket and REST files (default %(default)s)")
    analyze.add_argument("--manifest-10c", type=Path, default=batch.DEFAULT_10C_MANIFEST,
                         help="10C manifest naming the comparison rows (default %(default)s)")
    analyze.add_argument("--manifest-10bc", type=Path, default=batch.DEFAULT_10BC_MANIFEST,
                         help="10BC manifest, for its gate (default %(default)s)")
    analyze.add_argument("--orchestrator-review", type=Path, default=batch.DEFAULT_ORCHESTRATOR_REVIEW,
                         help="orchestrator review, for its gate (default %(default)s)")
    _analysis_flags(analyze)
    _progress_flag(analyze)
    analyze.set_defaults(handler=_analyze)
    return parser


def _print_outcome(outcome: batch.Outcome, lines: list[str]) -> int:
    for message in outcome.problems.messages():
        print(message, file=sys.stderr)
    for line in lines:
        print(line)
    return EXIT_PASS if outcome.gate == "WS_DIVERGENCE_ANALYSIS_PASS" else EXIT_GATE_NOT_PASSED


def _analyze(args: argparse.Namespace) -> int:
    config = batch.AnalyzeConfig(
        manifest_10b=args.manifest_10b, manifest_10c=args.manifest_10c, manifest_10bc=args.manifest_10bc,
        orchestrator_review=args.orchestrator_review, output_manifest=args.output_manifest,
        output_report=args.output_report, context_limit=args.context_limit,
        price_evidence_seconds=args.price_evidence_seconds, progress=args.progress)
    outcome = batch.analyze(config)
    return _print_outcome(outcome, [
        f"DIVERGENCE_ANALYSIS_MANIFEST={args.output_manifest}",
        f"DIVERGENCE_ANALYSIS_REPORT={args.output_report}",
        f"DIVERGENCE_ANALYSIS_GATE={outcome.gate}",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamer`` command; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except StreamerError as exc:
        print(f"streamer {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"streamer {args.command}: interrupted", file=sys.stderr)
        return 130
