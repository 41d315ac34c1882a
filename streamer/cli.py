"""The command line: flags, exit codes and messages; every command calls one library function."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from . import __version__, batch, decoders
from .errors import StreamerError, Terminated, stop_once
from .shards import default_workers

EXIT_PASS = 0
EXIT_GATE_NOT_PASSED = 1
EXIT_INPUT = 2


def _analysis_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context-limit", type=int, metavar="N", default=5,
                        help="websocket events of context before and after a row's last applied line (default 5)")
    parser.add_argument("--price-evidence-seconds", type=int, metavar="N", default=10,
                        help="window around the checkpoint for price-change evidence (default 10)")
    parser.add_argument("--output-manifest", type=_path, metavar="PATH", default=batch.DEFAULT_OUTPUT_MANIFEST,
                        help="divergence manifest to write (default %(default)s)")
    parser.add_argument("--output-report", type=_path, metavar="PATH", default=batch.DEFAULT_OUTPUT_REPORT,
                        help="markdown report to write (default %(default)s)")


def _say(message: str) -> None:
    """One line on stderr, a line break in a name it quotes escaped (``\\n``). A stderr that cannot
    take it (closed, a full disk) must not change the exit code: the line is dropped. Cost: O(len(message))."""
    if sys.stderr is None:
        return
    try:
        print(message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # (ValueError: a closed file object)
        pass


def _path(text: str) -> Path:
    # Path("") is ".": an unset shell variable ("--out $DIR") would write into the working directory
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return Path(text)


def _positive(text: str, expected: str = "a whole number") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _workers(text: str) -> int:
    return default_workers() if text == "auto" else _positive(text, "a number or auto")


def _workers_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=_workers, metavar="N", default="auto",
                        help=f"{what}: a number, or auto (the usable CPUs, at most 2; the default); "
                             "the outputs are the same for any N")


def _progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="never show progress on stderr (it is shown only on a terminal anyway)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line (not the usage block): exit 2."""

    #: the subcommands' parsers, by name (the top-level parser's)
    commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="streamer",
        description="Audit recorded Polymarket order-book feeds as a stream.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with:\n  streamer demo --out streamer-demo\n\n"
               "Each command's --help has an example. Exit codes: 0 pass, 1 analysis gate not passed, 2 unusable\n"
               "input or flags, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); reconstruct and demo exit 0\n"
               "whatever their gate (it is printed).",
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands.choices

    analyze = commands.add_parser(
        "analyze", help="explain every divergent comparison row (the reference analyzer, streamed)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Explain every divergent REST-vs-websocket comparison row: context, evidence, "
                    "classification, gate.\n\nExample:\n  streamer analyze --manifest-10b data/manifests/10b.json "
                    "--manifest-10c data/manifests/10c.json \\\n    --manifest-10bc data/manifests/10bc.json "
                    "--orchestrator-review data/manifests/review.json")
    analyze.add_argument("--manifest-10b", type=_path, metavar="PATH", default=batch.DEFAULT_10B_MANIFEST,
                         help="10B manifest naming the websocket and REST files (default %(default)s)")
    analyze.add_argument("--manifest-10c", type=_path, metavar="PATH", default=batch.DEFAULT_10C_MANIFEST,
                         help="10C manifest naming the comparison rows (default %(default)s)")
    analyze.add_argument("--manifest-10bc", type=_path, metavar="PATH", default=batch.DEFAULT_10BC_MANIFEST,
                         help="10BC manifest, for its gate (default %(default)s)")
    analyze.add_argument("--orchestrator-review", type=_path, metavar="PATH", default=batch.DEFAULT_ORCHESTRATOR_REVIEW,
                         help="orchestrator review, for its gate (default %(default)s)")
    _analysis_flags(analyze)
    _workers_flag(analyze, "processes sharing the markets (at most one helper per market)")
    _progress_flag(analyze)
    analyze.set_defaults(handler=_analyze)

    reconstruct = commands.add_parser(
        "reconstruct", help="rebuild every book and compare it with each REST checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rebuild every token's book from the websocket capture and write one comparison row per "
                    "REST book summary,\nplus the 10C manifest naming them.\n\nExample:\n"
                    "  streamer reconstruct --manifest-10b capture/manifest_10b.json --output-rows out/rows.jsonl.gz "
                    "\\\n    --output-manifest out/10c.json")
    _reconstruct_flags(reconstruct)
    # --manifest-10c is how run (and analyze) name the same file: either spelling works here
    reconstruct.add_argument("--output-manifest", "--manifest-10c", dest="manifest_10c", type=_path, metavar="PATH",
                             default=batch.DEFAULT_10C_MANIFEST,
                             help="10C manifest to write (default %(default)s)")
    _progress_flag(reconstruct)
    reconstruct.set_defaults(handler=_reconstruct)

    run = commands.add_parser(
        "run", help="reconstruct and analyze in one pass; writes all four outputs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reconstruct and analyze in one pass over the websocket input: the comparison rows, the 10C "
                    "manifest,\nthe divergence manifest and the report, equal to reconstruct then analyze.\n\n"
                    "Example:\n  streamer run --manifest-10b capture/manifest_10b.json --output-rows out/rows.jsonl.gz "
                    "\\\n    --manifest-10c out/10c.json --output-manifest out/10d0.json --output-report out/10d0.md")
    _reconstruct_flags(run)
    run.add_argument("--manifest-10c", type=_path, metavar="PATH", default=batch.DEFAULT_10C_MANIFEST,
                     help="10C manifest to write (default %(default)s)")
    run.add_argument("--manifest-10bc", type=_path, metavar="PATH", default=None,
                     help="10BC manifest, for its gate (optional; read when given or present at "
                          f"{batch.DEFAULT_10BC_MANIFEST})")
    run.add_argument("--orchestrator-review", type=_path, metavar="PATH", default=None,
                     help=f"orchestrator review, for its gate (optional; read when given or present at "
                          f"{batch.DEFAULT_ORCHESTRATOR_REVIEW})")
    _analysis_flags(run)
    _workers_flag(run, "processes (with 2 or more, the analysis runs in a second process beside the "
                       "reconstruction)")
    _progress_flag(run)
    run.set_defaults(handler=_run)

    follow = commands.add_parser(
        "follow", help="run, live, on files a recorder is still writing and rotating; resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Follow the websocket and REST files a recorder is writing (rotating, gzip or plain), rebuild "
                    "the books and\nanalyze divergences as they happen. Each flush publishes a segment under "
                    "OUT/segments/ and\nOUT/status.json and saves the state; a restart with the same --state "
                    "continues where the last\nflush left off. On SIGINT/SIGTERM or after --exit-when-idle, OUT "
                    "holds the four files `streamer run`\nwrites. The 10B manifest supplies the markets; the files "
                    "come from the globs (quote them).\n\nExample:\n"
                    "  streamer follow --ws 'capture/ws-*.jsonl*' --rest 'capture/rest-*.jsonl*' \\\n"
                    "    --manifest-10b capture/manifest_10b.json --out live --state live-state --flush-interval 5")
    follow.add_argument("--ws", required=True, metavar="GLOB",
                        help="glob of the websocket files, in name order (rotated names sort by time)")
    follow.add_argument("--rest", required=True, metavar="GLOB", help="glob of the REST checkpoint files")
    follow.add_argument("--manifest-10b", type=_path, metavar="PATH", required=True,
                        help="10B manifest: its markets label the rows (its output_files are not used)")
    follow.add_argument("--out", type=_path, metavar="DIR", required=True,
                        help="where segments, status.json and, on exit, the four run outputs go")
    follow.add_argument("--state", type=_path, metavar="DIR", default=None,
                        help="state directory (default OUT/.state); reuse it to resume")
    follow.add_argument("--poll", type=float, metavar="S", default=1.0,
                        help="seconds between looks for new files and new bytes (default %(default)s)")
    follow.add_argument("--rotate-wait", type=float, metavar="S", default=5.0,
                        help="a plain file with a newer file beside it is finished after S seconds without "
                             "growth (default %(default)s)")
    follow.add_argument("--rest-wait", type=float, metavar="S", default=5.0,
                        help="hold websocket rows until the REST files have been read to their end S seconds "
                             "after those rows were on disk (default %(default)s)")
    follow.add_argument("--flush-interval", type=float, metavar="S", default=5.0,
                        help="seconds between flushes: segment, state, status (default %(default)s)")
    follow.add_argument("--exit-when-idle", type=float, metavar="S", default=None,
                        help="finish when no new line has come for S seconds (default: follow until a signal)")
    follow.add_argument("--top-n", type=int, metavar="N", default=10, help="levels per side compared (default 10)")
    follow.add_argument("--context-limit", type=int, metavar="N", default=5,
                        help="websocket events of context before and after a row's last applied line (default 5)")
    follow.add_argument("--price-evidence-seconds", type=int, metavar="N", default=10,
                        help="window around the checkpoint for price-change evidence (default 10)")
    follow.add_argument("--manifest-10bc", type=_path, metavar="PATH", default=None,
                        help="10BC manifest, for its gate (optional; read when given or present at "
                             f"{batch.DEFAULT_10BC_MANIFEST})")
    follow.add_argument("--orchestrator-review", type=_path, metavar="PATH", default=None,
                        help=f"orchestrator review, for its gate (optional; read when given or present at "
                             f"{batch.DEFAULT_ORCHESTRATOR_REVIEW})")
    follow.set_defaults(handler=_follow)

    demo = commands.add_parser(
        "demo", help="generate a small realistic capture and run the whole pipeline on it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate a small synthetic capture (several markets, recorder drops, REST lag) and run "
                    "`streamer run` on it.\n\nExample:\n  streamer demo --out streamer-demo")
    demo.add_argument("--out", type=_path, metavar="PATH", default=Path("streamer-demo"), help="directory to write (default %(default)s)")
    demo.add_argument("--seed", type=int, metavar="N", default=2026, help="generator seed (default %(default)s)")
    demo.add_argument("--ws-lines", type=_positive, metavar="N", default=6000,
                      help="websocket lines to generate (default %(default)s)")
    demo.set_defaults(handler=_demo)
    return parser


def _reconstruct_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest-10b", type=_path, metavar="PATH", default=batch.DEFAULT_10B_MANIFEST,
                        help="10B manifest naming the websocket and REST files (default %(default)s)")
    parser.add_argument("--top-n", type=int, metavar="N", default=10, help="levels per side compared (default 10)")
    parser.add_argument("--output-rows", type=_path, metavar="PATH", default=batch.DEFAULT_OUTPUT_ROWS,
                        help="comparison rows to write, gzip JSONL (default %(default)s)")


def _print_messages(outcome: batch.Outcome, command: str) -> None:
    """Stderr: skipped lines and truncated inputs, then what qualifies the gates."""
    for message in outcome.problems.messages():
        _say(message)
    for warning in outcome.warnings:
        _say(f"streamer {command}: warning: {warning}")


def _print_outcome(outcome: batch.Outcome, lines: list[str], command: str) -> int:
    _print_messages(outcome, command)
    _print_lines(lines)
    return EXIT_PASS if outcome.gate == "WS_DIVERGENCE_ANALYSIS_PASS" else EXIT_GATE_NOT_PASSED


def _print_lines(lines: list[str]) -> None:
    """Print result lines on stdout. A reader gone (``| head -1``) is no error: the outputs are
    written by now, so the exit code stays the command's. Nor is a closed stdout (``>&-``: Python
    then has no ``sys.stdout``)."""
    if sys.stdout is None:
        return
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout once more at exit: send that to /dev/null, not to the closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _analyze(args: argparse.Namespace) -> int:
    config = batch.AnalyzeConfig(
        manifest_10b=args.manifest_10b, manifest_10c=args.manifest_10c, manifest_10bc=args.manifest_10bc,
        orchestrator_review=args.orchestrator_review, output_manifest=args.output_manifest,
        output_report=args.output_report, context_limit=args.context_limit,
        price_evidence_seconds=args.price_evidence_seconds, progress=args.progress, workers=args.workers)
    outcome = batch.analyze(config)
    return _print_outcome(outcome, [
        f"DIVERGENCE_ANALYSIS_MANIFEST={args.output_manifest}",
        f"DIVERGENCE_ANALYSIS_REPORT={args.output_report}",
        f"DIVERGENCE_ANALYSIS_GATE={outcome.gate}",
    ], "analyze")


def _reconstruct(args: argparse.Namespace) -> int:
    config = batch.ReconstructConfig(manifest_10b=args.manifest_10b, top_n=args.top_n,
                                     output_rows=args.output_rows, manifest_10c=args.manifest_10c,
                                     progress=args.progress)
    outcome = batch.reconstruct(config)
    _print_messages(outcome, "reconstruct")
    _print_lines([f"RECONSTRUCTION_ROWS={args.output_rows}", f"RECONSTRUCTION_MANIFEST={args.manifest_10c}",
                  f"RECONSTRUCTION_GATE={outcome.gate}"])
    return EXIT_PASS


def _optional(path: Path | None, default: Path) -> Path | None:
    if path is not None:
        return path
    return default if default.exists() else None


def _run_config(args: argparse.Namespace) -> batch.RunConfig:
    return batch.RunConfig(
        manifest_10b=args.manifest_10b, top_n=args.top_n, output_rows=args.output_rows,
        manifest_10c=args.manifest_10c,
        manifest_10bc=_optional(args.manifest_10bc, batch.DEFAULT_10BC_MANIFEST),
        orchestrator_review=_optional(args.orchestrator_review, batch.DEFAULT_ORCHESTRATOR_REVIEW),
        output_manifest=args.output_manifest, output_report=args.output_report,
        context_limit=args.context_limit, price_evidence_seconds=args.price_evidence_seconds,
        progress=args.progress, workers=args.workers)


def _run_lines(config: batch.RunConfig, outcome: batch.Outcome) -> list[str]:
    return [
        f"RECONSTRUCTION_ROWS={config.output_rows}",
        f"RECONSTRUCTION_MANIFEST={config.manifest_10c}",
        f"RECONSTRUCTION_GATE={outcome.reconstruction_gate}",
        f"DIVERGENCE_ANALYSIS_MANIFEST={config.output_manifest}",
        f"DIVERGENCE_ANALYSIS_REPORT={config.output_report}",
        f"DIVERGENCE_ANALYSIS_GATE={outcome.gate}",
    ]


def _run(args: argparse.Namespace) -> int:
    config = _run_config(args)
    if config.manifest_10c == batch.DEFAULT_10C_MANIFEST and config.output_manifest != batch.DEFAULT_OUTPUT_MANIFEST:
        # reconstruct's --output-manifest is its 10C manifest; run's is the divergence manifest
        _say(f"streamer run: note: the 10C manifest goes to {config.manifest_10c}, its default (--manifest-10c "
             "names it; run's --output-manifest is the divergence manifest)")
    outcome = batch.run(config)
    return _print_outcome(outcome, _run_lines(config, outcome), "run")


def _follow(args: argparse.Namespace) -> int:
    from .follow import STATUS_NAME, FollowConfig, follow

    config = FollowConfig(
        ws=args.ws, rest=args.rest, manifest_10b=args.manifest_10b, out=args.out, state=args.state, poll=args.poll,
        rotate_wait=args.rotate_wait, rest_wait=args.rest_wait, flush_interval=args.flush_interval,
        exit_when_idle=args.exit_when_idle, top_n=args.top_n, context_limit=args.context_limit,
        price_evidence_seconds=args.price_evidence_seconds,
        manifest_10bc=_optional(args.manifest_10bc, batch.DEFAULT_10BC_MANIFEST),
        orchestrator_review=_optional(args.orchestrator_review, batch.DEFAULT_ORCHESTRATOR_REVIEW))
    # follow handles SIGINT/SIGTERM while it runs; before and after that (it has published by then)
    # they are ignored: a second signal while it winds down must not kill it with a traceback
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    result = follow(config)
    if result.outcome is None:
        return EXIT_INPUT
    _print_outcome(result.outcome, [*_run_lines(result.config, result.outcome),
                                    f"FOLLOW_STATUS={args.out / STATUS_NAME}"], "follow")
    return EXIT_PASS


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    on_terminal = sys.stderr is not None and sys.stderr.isatty()
    if on_terminal:  # (a large --ws-lines takes a while before run's progress line can start)
        _say(f"streamer demo: generating {args.ws_lines:,} websocket lines into {args.out / 'capture'}")
    config, outcome = run_demo(args.out, seed=args.seed, ws_lines=args.ws_lines, progress=on_terminal)
    code = _print_outcome(outcome, [*_run_lines(config, outcome),
                                    f"demo: capture and outputs are in {args.out}/ (open {config.output_report} first)"],
                          "demo")
    return EXIT_PASS if code in (EXIT_PASS, EXIT_GATE_NOT_PASSED) else code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streamer`` command; returns the exit code.

    Cost: the command's; raises SystemExit (bad flags, --help); StreamerError, OSError become exit codes.
    """
    if decoders.SETTING_ERRORS:
        _say(f"streamer: error: {decoders.SETTING_ERRORS[0]}")
        return EXIT_INPUT
    parser = _build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # no command: what there is, not just an error
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser, so that the hint names the help that lists its flags
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    previous = _stop_once_on_signals() if args.command != "follow" else {}  # (follow handles its own)
    made = _directories_to_make(args)
    done = False
    try:
        code = handler(args)
        done = True
        return code
    except StreamerError as exc:
        _say(f"streamer {args.command}: error: {exc}")
        return exc.exit_code
    except OSError as exc:  # an output that cannot be written (inputs raise InputError first)
        where = f" {exc.filename}" if exc.filename else f" in {_output_places(args)}"
        _say(f"streamer {args.command}: error: cannot write{where}: {exc.strerror or exc}")
        return EXIT_INPUT
    except KeyboardInterrupt as exc:  # every temporary file and work directory is gone by now
        terminated = isinstance(exc, Terminated)
        _say(f"streamer {args.command}: {'terminated' if terminated else 'interrupted'}")
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if not done:
            _remove_empty(made)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: Per command, the flags naming what it writes (files; ``demo``'s is a directory). ``follow``'s
#: --out and --state outlive a failed start on purpose: they are its state.
_OUTPUTS = {"analyze": ("output_manifest", "output_report"), "reconstruct": ("output_rows", "manifest_10c"),
            "run": ("output_rows", "manifest_10c", "output_manifest", "output_report"), "demo": ("out",)}


def _output_places(args: argparse.Namespace) -> str:
    """Where the command writes (its outputs' directories, where its work files go too), for an
    error that names no file (a full disk under a work file). Cost: O(outputs)."""
    if args.command == "follow":
        places = [args.out, args.state or Path(args.out) / ".state"]
    else:
        places = _output_directories(args)
    return ", ".join(sorted({str(place) for place in places}))


def _output_directories(args: argparse.Namespace) -> list[Path]:
    """The directory each output of the command goes in (``demo``'s is its ``--out``). Cost: O(outputs)."""
    return [Path(getattr(args, name)) if args.command == "demo" else Path(getattr(args, name)).parent
            for name in _OUTPUTS.get(args.command, ())]


def _directories_to_make(args: argparse.Namespace) -> list[Path]:
    """The outermost directories the command's outputs need that do not exist yet. Cost: O(outputs x depth)."""
    roots: set[Path] = set()
    for directory in _output_directories(args):
        missing = directory.absolute()
        if missing.exists():
            continue
        while not missing.parent.exists():
            missing = missing.parent
        roots.add(missing)
    return sorted(roots)


def _remove_empty(roots: list[Path]) -> None:
    """After a failure: remove the directories under ``roots`` (all made by this run) left empty.

    A directory holding a file (an output published before the failure) stays. Cost: O(entries).
    """
    for root in roots:
        for directory, _subdirectories, _files in os.walk(root, topdown=False):
            try:
                os.rmdir(directory)
            except OSError:  # not empty
                pass


def _stop_once_on_signals() -> dict[int, Any]:
    """Make SIGINT and SIGTERM unwind once (so outputs' temporaries and work directories are
    removed, and a second signal does not break into that); return the handlers they replace,
    none where none can be set (not the main thread)."""
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop_once)
    except ValueError:
        pass
    return previous
