"""``streamer run`` (reconstruct + analyze in one pass) by capture length, next to the decode floor.

For each length in ``--lengths`` (default 200k and 1.6M websocket lines, 10 markets = 20 tokens,
the same shape and seed so the same divergence rate) it generates the capture once (cached under
``benchmarks/_work``, no comparison rows: ``run`` makes its own), then runs as fresh child
processes: ``streamer run`` (``--workers auto``: the analysis in a second process on a machine
with 2 CPUs), ``run-1w`` (``--workers 1``), ``streamer reconstruct`` (``--tools``), and the two floors
(decompress + split + parse every websocket line: isal + orjson, and gzip + json). It prints wall
time, CPU time, MB/s of uncompressed websocket input, lines/s and peak RSS per tool, the ratio of
``run`` to each floor, and the peak-RSS ratio between the largest and the smallest length.

The reference analyzer has no reconstruction step, so it has no ``run`` to compare with; its
``analyze`` numbers, side by side with streamer's, are in ``bench_analyze.py``.

    python benchmarks/bench_run.py
    python benchmarks/bench_run.py --lengths 200000 --repeats 3 --csv benchmarks/results/run.csv
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    DEFAULT_WORK_DIR, MB, MIB, ROOT, machine_header, prepare_capture, print_table, run_measured, write_csv,
    write_csv_file,
)

TOOLS = ("run", "run-1w", "reconstruct", "floor-fast", "floor-stdlib")
COLUMNS = ("lines", "tool", "wall_s", "cpu_s", "mb_per_s", "lines_per_s", "peak_rss_mib", "vs_fast_floor",
           "vs_stdlib_floor")


def _argv(tool: str, capture: Any, out: Path) -> list[str]:
    python = sys.executable
    manifest = str(capture.directory / "manifest_10b.json")
    if tool in ("run", "run-1w"):  # run: --workers auto (the default); run-1w: one process
        workers = ["--workers", "1"] if tool == "run-1w" else []
        return [python, "-m", "streamer", "run", "--no-progress", *workers, "--manifest-10b", manifest,
                "--output-rows", str(out / "rows.jsonl.gz"), "--manifest-10c", str(out / "10c.json"),
                "--output-manifest", str(out / "10d0.json"), "--output-report", str(out / "10d0.md")]
    if tool == "reconstruct":
        return [python, "-m", "streamer", "reconstruct", "--no-progress", "--manifest-10b", manifest,
                "--output-rows", str(out / "rows.jsonl.gz"), "--output-manifest", str(out / "10c.json")]
    kind = tool.split("-", 1)[1]
    return [python, str(ROOT / "benchmarks" / "common.py"), "floor", kind, str(capture.ws_file)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="200000,1600000", help="comma-separated websocket line counts")
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rest-interval", type=float, default=5.0,
                        help="seconds between REST checkpoints (default 5; fewer checkpoints, less REST work)")
    parser.add_argument("--repeats", type=int, default=1, help="measured runs per tool and length (median kept)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--csv", type=Path, help="also write the results as CSV here")
    parser.add_argument("--bare", action="store_true", help="print only the CSV")
    args = parser.parse_args(argv)
    tools = [tool for tool in args.tools.split(",") if tool]
    log = (lambda _m: None) if args.bare else (lambda m: print(m, file=sys.stderr, flush=True))
    rows: list[dict[str, Any]] = []
    peaks: dict[int, int] = {}
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    for lines in [int(value) for value in args.lengths.split(",")]:
        capture = prepare_capture(args.work_dir, lines, args.markets, args.seed, rows=False, log=log,
                                  rest_interval=args.rest_interval)
        out = capture.directory / "out-run"
        out.mkdir(exist_ok=True)
        measured: dict[str, tuple[float, float, int]] = {}
        for tool in tools:
            runs = []
            for _ in range(args.repeats):
                done = run_measured(_argv(tool, capture, out), capture.directory, env=env)
                if done.returncode not in (0, 1):
                    print(f"{tool} failed at {lines} lines:\n{done.stderr}", file=sys.stderr)
                    return 3
                runs.append(done)
            wall = statistics.median(run.seconds for run in runs)
            cpu = statistics.median(run.cpu_seconds for run in runs)
            rss = max(run.peak_rss_kib for run in runs)
            measured[tool] = (wall, cpu, rss)
            if tool == "run":
                peaks[lines] = rss
            log(f"{lines} {tool}: {wall:.2f} s wall, {cpu:.2f} s cpu, {rss / 1024:.0f} MiB")
        for tool, (wall, cpu, rss) in measured.items():
            row = {"lines": capture.ws_lines, "tool": tool, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                   "mb_per_s": round(capture.ws_bytes / MB / wall, 1), "lines_per_s": round(capture.ws_lines / wall),
                   "peak_rss_mib": round(rss * 1024 / MIB, 1)}
            for floor, column in (("floor-fast", "vs_fast_floor"), ("floor-stdlib", "vs_stdlib_floor")):
                if floor in measured and not tool.startswith("floor"):
                    row[column] = round(wall / measured[floor][0], 2)
            rows.append(row)
    header = machine_header({"command": " ".join(["python", "benchmarks/bench_run.py", *(argv or sys.argv[1:])])})
    if len(peaks) > 1:
        header["run_peak_rss_ratio_largest_to_smallest"] = round(peaks[max(peaks)] / peaks[min(peaks)], 3)
    if args.bare:
        write_csv(sys.stdout, header, COLUMNS, rows)
    else:
        print_table(COLUMNS, rows)
        if "run_peak_rss_ratio_largest_to_smallest" in header:
            print(f"run peak RSS, largest / smallest length: {header['run_peak_rss_ratio_largest_to_smallest']}")
    if args.csv:
        write_csv_file(args.csv, header, COLUMNS, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
