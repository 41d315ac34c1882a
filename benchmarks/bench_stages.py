"""Where ``streamer run``'s time goes: its per-line stages timed in one process, on one capture.

On a generated capture (default 200k websocket lines, 10 markets, seed 0; cached as by the other
scripts) it makes four passes in this process, with the garbage collector off as ``run`` has it,
and reports each stage's wall seconds, µs per websocket line and share of the sum:

- ``read``: read + decompress + split + parse every websocket line, with its receive time
  (``streamer.batch.iter_ws_rows``: what every pass, and each process of ``run``, pays);
- ``apply``: the books, ``Reconstructor.apply`` per row (the read+apply pass minus ``read``, minus
  the REST comparison timed inside that pass);
- ``rest parse``: read + parse the REST checkpoint file (``iter_objects``);
- ``rest compare``: ``Reconstructor.compare`` of each checkpoint at its moment in the stream (as
  ``run`` makes it) plus the serialization of its comparison rows;
- ``join``: the analysis join of every websocket row (``feed_join``, no divergent row taken; the
  read+join pass minus ``read``).

The first four are the driver of ``run --workers 2`` (about ``reconstruct``); ``read`` + ``join``
are most of its helper. Timers are ``time.perf_counter``; a stage's figure is the minimum over
``--repeats`` passes. Nothing is written but the CSV (``--csv``).

    python benchmarks/bench_stages.py
    python benchmarks/bench_stages.py --lines 200000 --repeats 3 --csv benchmarks/results/stages.csv
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DEFAULT_WORK_DIR, machine_header, prepare_capture, report,
)
from streamer.batch import iter_objects, iter_ws_rows  # noqa: E402
from streamer.decoders import dumps  # noqa: E402
from streamer.reconstruct import Reconstructor  # noqa: E402
from streamer.session import AnalysisRun, feed_join, rest_time_us  # noqa: E402
from streamer.sources import InputProblems, InputStats  # noqa: E402

COLUMNS = ("stage", "seconds", "us_per_line", "share")


def _inputs(path: Path, kind: str) -> list[InputStats]:
    return [InputStats(path, path.name, kind)]


def _read(ws: Path) -> int:
    lines = 0
    for _row in iter_ws_rows(_inputs(ws, "raw_websocket_file"), InputProblems()):
        lines += 1
    return lines


def _reconstruct(ws: Path, rest_rows: list[tuple[int, dict[str, Any]]]) -> float:
    """The read+apply pass with each checkpoint compared at its moment; returns the compare seconds."""
    reconstructor = Reconstructor({}, [ws.name], ["rest"])
    clock = time.perf_counter
    compare_s = 0.0
    head = 0
    for _key, row, value, raw in iter_ws_rows(_inputs(ws, "raw_websocket_file"), InputProblems()):
        received_us = row[4]
        while head < len(rest_rows) and received_us is not None and rest_rows[head][0] < received_us:
            started = clock()
            for comparison in reconstructor.compare(0, head + 1, rest_rows[head][1]):
                dumps(comparison)
            compare_s += clock() - started
            head += 1
        reconstructor.apply(row, value, raw)
    return compare_s


def _join(ws: Path, work_dir: Path) -> None:
    analysis = AnalysisRun(5, 10, [ws.name], ["rows"], work_dir / "manifest.json")
    try:
        join = analysis.engine.join
        fed = 0
        for key, row, value, _raw in iter_ws_rows(_inputs(ws, "raw_websocket_file"), InputProblems()):
            fed += 1
            feed_join(join, key, row, value, fed)
    finally:
        analysis.close()


def _timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure(ws: Path, rest: Path, repeats: int) -> tuple[int, dict[str, float]]:
    """Each stage's best seconds over ``repeats`` passes; returns (websocket lines, stage -> seconds)."""
    best: dict[str, float] = {}

    def keep(stage: str, seconds: float) -> None:
        best[stage] = min(seconds, best.get(stage, seconds))

    lines = 0
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as scratch:
        for _ in range(repeats):
            read_s, lines = _timed(lambda: _read(ws))
            keep("read", read_s)
            parse_s, rest_rows = _timed(lambda: [(rest_time_us(value), value) for _f, _l, value, _raw
                                                 in iter_objects(_inputs(rest, "rest_checkpoint_file"),
                                                                 InputProblems())])
            keep("rest parse", parse_s)
            rest_rows = [(stamp if stamp is not None else -1, value) for stamp, value in rest_rows]
            total_s, compare_s = _timed(lambda: _reconstruct(ws, rest_rows))
            keep("rest compare", compare_s)
            keep("apply", total_s - compare_s - read_s)
            join_s, _ = _timed(lambda: _join(ws, Path(scratch)))
            keep("join", join_s - read_s)
    return lines, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000, help="websocket lines (default 200000)")
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="passes per stage (the minimum is kept)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--csv", type=Path, help="also write the table as CSV")
    parser.add_argument("--bare", action="store_true", help="print only the CSV")
    args = parser.parse_args(argv)
    if args.lines <= 0 or args.repeats <= 0:
        parser.error("--lines and --repeats must be positive")

    capture = prepare_capture(args.work_dir, args.lines, args.markets, args.seed, rows=False,
                              log=lambda message: print(message, file=sys.stderr))
    rest = capture.directory / "rest-000.jsonl.gz"
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        lines, seconds = measure(capture.ws_file, rest, args.repeats)
    finally:
        if gc_was_enabled:
            gc.enable()
    total = sum(seconds.values())
    rows = [{"stage": stage, "seconds": round(value, 3), "us_per_line": round(value / lines * 1e6, 2),
             "share": round(value / total, 3)}
            for stage, value in seconds.items()]
    header = machine_header({"capture": f"{lines} websocket lines, {args.markets} markets, seed {args.seed}",
                             "repeats": args.repeats,
                             "command": "python benchmarks/bench_stages.py " + " ".join(sys.argv[1:])})
    report(header, COLUMNS, rows, args.bare, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
