"""Peak RSS of ``run`` and ``analyze`` by capture length, on shapes that stress memory.

For each case in ``--cases`` and each length in ``--lengths`` (default 25k and 200k websocket
lines, seed 7) it generates the capture (``streamer.synth``, cached under ``benchmarks/_work``),
makes its comparison rows with ``streamer reconstruct`` when ``analyze`` needs them, then runs the
case's command once, in one process (``--workers 1``), as a fresh child, and prints wall seconds
and peak RSS per length and the ratio of the longest length's peak to the shortest's. Memory
should depend on tokens and the configured windows, not on the lines read; a ratio well above 1
names a case where it does not.

Cases (the capture shape; what is done to it; the command):

- ``base``: 10 markets (20 tokens), REST every 5 s; ``run``, and ``analyze``.
- ``many``: 100 markets (200 tokens); ``run``.
- ``rest1s``: REST every second, 5% recorder drops (most comparison rows divergent); ``run``.
- ``rest-out-of-order``: 30 markets, REST lines swapped in pairs (late checkpoints, replayed); ``run``.
- ``shuffled``: ``base`` with its comparison rows shuffled (misses: answered by second passes); ``analyze``.
- ``wide-windows``: ``base``, ``analyze --context-limit 100 --price-evidence-seconds 120``.
- ``churn``: ``base`` plus a new token with a book every 40 lines, never seen again; ``run``
  (memory grows with the tokens ever seen: the books are kept, since a REST checkpoint may ask
  for any of them).
- ``rest1s-shuffled`` (only when named): ``rest1s`` with its comparison rows shuffled; ``analyze``
  (most rows are misses: dozens of second passes).

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --cases base,shuffled --lengths 25000,100000 --csv benchmarks/results/memory.csv
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DEFAULT_WORK_DIR, MIB, ROOT, machine_header, report, run_measured,
)
from streamer.synth import CaptureShape, generate_capture  # noqa: E402

COLUMNS = ("case", "command", "lines", "wall_s", "peak_rss_mib", "rss_ratio_to_shortest")
PRIOR = {"10bc.json": {"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}, "review.json": {"review_gate": "ACCEPTED"}}


def _swap_rest_pairs(capture: Any) -> None:
    """Swap adjacent REST lines: every other checkpoint comes after the stream passed its time."""
    for path in capture.rest_files:
        lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
        for i in range(0, len(lines) - 1, 2):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        path.write_bytes(gzip.compress(b"".join(lines), mtime=0))


def _churn_tokens(capture: Any) -> None:
    """Every 40 websocket lines a fresh token gets a book, and 20 lines later one price change."""
    path = capture.ws_files[0]
    out: list[bytes] = []
    token = None
    for number, line in enumerate(gzip.decompress(path.read_bytes()).splitlines(keepends=True)):
        out.append(line)
        if not line.strip():
            continue
        received = json.loads(line)["received_at_utc"]
        if number % 40 == 0:
            token = str(9 * 10**76 + number)
            payload: Any = [{"event_type": "book", "asset_id": token, "market": "0xchurn", "timestamp": "1",
                             "hash": "h", "bids": [{"price": "0.4", "size": "10"}],
                             "asks": [{"price": "0.6", "size": "10"}]}]
        elif number % 40 == 20 and token is not None:
            payload = {"event_type": "price_change", "market": "0xchurn", "timestamp": "2",
                       "price_changes": [{"asset_id": token, "price": "0.41", "size": "7", "side": "BUY",
                                          "hash": "x", "best_bid": "0.41", "best_ask": "0.6"}]}
        else:
            continue
        out.append(json.dumps({"received_at_utc": received, "global_message_sequence": None,
                               "json": payload}).encode() + b"\n")
    path.write_bytes(gzip.compress(b"".join(out), mtime=0))


#: case -> (capture shape, what is done to the capture, command, extra flags, rows shuffled)
CASES: dict[str, tuple[dict[str, Any], Callable[[Any], None] | None, str, list[str], bool]] = {
    "base-run": ({"markets": 10}, None, "run", [], False),
    "base-analyze": ({"markets": 10}, None, "analyze", [], False),
    "many": ({"markets": 100}, None, "run", [], False),
    "rest1s": ({"markets": 10, "rest_interval_seconds": 1.0, "drop_rate": 0.05}, None, "run", [], False),
    "rest-out-of-order": ({"markets": 30}, _swap_rest_pairs, "run", [], False),
    "shuffled": ({"markets": 10}, None, "analyze", [], True),
    "wide-windows": ({"markets": 10}, None, "analyze", ["--context-limit", "100", "--price-evidence-seconds", "120"],
                     False),
    "churn": ({"markets": 10}, _churn_tokens, "run", [], False),
    # not run by default (a minute at 200k lines): rest1s's rows shuffled, most of them misses
    "rest1s-shuffled": ({"markets": 10, "rest_interval_seconds": 1.0, "drop_rate": 0.05}, None, "analyze", [], True),
}
DEFAULT_CASES = [case for case in CASES if case != "rest1s-shuffled"]


def _capture(work_dir: Path, case: str, lines: int, seed: int, log: Callable[[str], None]) -> Path:
    shape, change, _command, _flags, _shuffled = CASES[case]
    name = "-".join(f"{key}{value}" for key, value in sorted(shape.items()))
    directory = work_dir / f"memory-{name}-{change.__name__.strip('_') if change else 'plain'}-ws{lines}-s{seed}"
    if not (directory / "manifest_10b.json").exists():
        log(f"generating {directory.name}")
        capture = generate_capture(directory, CaptureShape(ws_lines=lines, **shape), seed, path_base=directory)
        if change is not None:
            change(capture)
        for file_name, value in PRIOR.items():
            (directory / file_name).write_text(json.dumps(value))
    return directory


def _analysis_inputs(directory: Path, shuffled: bool, env: dict[str, str]) -> Path:
    """The 10C manifest for analyze: reconstruct's rows, or those rows shuffled (cached)."""
    rows_dir = directory / "rows"
    if not (rows_dir / "10c.json").exists():
        done = run_measured([sys.executable, "-m", "streamer", "reconstruct", "--no-progress", "--manifest-10b",
                             "manifest_10b.json", "--output-rows", "rows/rows.jsonl.gz", "--output-manifest",
                             "rows/10c.json"], directory, env=env)
        if done.returncode != 0:
            raise SystemExit(f"reconstruct failed in {directory}:\n{done.stderr}")
    if not shuffled:
        return rows_dir / "10c.json"
    shuffled_dir = directory / "rows-shuffled"
    if not (shuffled_dir / "10c.json").exists():
        shuffled_dir.mkdir(exist_ok=True)
        lines = gzip.decompress((rows_dir / "rows.jsonl.gz").read_bytes()).splitlines(keepends=True)
        random.Random(1).shuffle(lines)
        (shuffled_dir / "rows.jsonl.gz").write_bytes(gzip.compress(b"".join(lines), mtime=0))
        (shuffled_dir / "10c.json").write_text(json.dumps({
            "gate_status": "BOOK_RECONSTRUCTION_DIVERGENT",
            "output_files": [{"path": "rows-shuffled/rows.jsonl.gz", "kind": "rest_comparison_rows"}]}))
    return shuffled_dir / "10c.json"


def _argv(command: str, flags: list[str], manifest_10c: Path | None) -> list[str]:
    common = ["--no-progress", "--workers", "1", "--manifest-10b", "manifest_10b.json", *flags,
              "--output-manifest", "out/10d0.json", "--output-report", "out/10d0.md"]
    if command == "run":
        return [sys.executable, "-m", "streamer", "run", *common, "--output-rows", "out/rows.jsonl.gz",
                "--manifest-10c", "out/10c.json", "--manifest-10bc", "10bc.json", "--orchestrator-review",
                "review.json"]
    return [sys.executable, "-m", "streamer", "analyze", *common, "--manifest-10c", str(manifest_10c),
            "--manifest-10bc", "10bc.json", "--orchestrator-review", "review.json"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument("--lengths", default="25000,200000", help="comma-separated websocket line counts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--csv", type=Path, help="also write the results as CSV here")
    parser.add_argument("--bare", action="store_true", help="print only the CSV")
    args = parser.parse_args(argv)
    log = (lambda _m: None) if args.bare else (lambda m: print(m, file=sys.stderr, flush=True))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    lengths = [int(value) for value in args.lengths.split(",")]
    rows: list[dict[str, Any]] = []
    for case in [name for name in args.cases.split(",") if name]:
        if case not in CASES:
            parser.error(f"unknown case {case!r}")
        _shape, _change, command, flags, shuffled = CASES[case]
        peaks: dict[int, int] = {}
        for lines in lengths:
            directory = _capture(args.work_dir, case, lines, args.seed, log)
            manifest_10c = _analysis_inputs(directory, shuffled, env) if command == "analyze" else None
            done = run_measured(_argv(command, flags, manifest_10c), directory, env=env)
            if done.returncode not in (0, 1):
                print(f"{case} failed at {lines} lines:\n{done.stderr}", file=sys.stderr)
                return 3
            peaks[lines] = done.peak_rss_kib
            log(f"{case} {lines}: {done.seconds:.2f} s, {done.peak_rss_kib / 1024:.0f} MiB")
            rows.append({"case": case, "command": " ".join([command, *flags]), "lines": lines,
                         "wall_s": round(done.seconds, 2), "peak_rss_mib": round(done.peak_rss_kib * 1024 / MIB, 1),
                         "rss_ratio_to_shortest": round(done.peak_rss_kib / peaks[min(peaks)], 2)})
    header = machine_header({"command": " ".join(["python", "benchmarks/bench_memory.py", *(argv or sys.argv[1:])])})
    report(header, COLUMNS, rows, args.bare, args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
