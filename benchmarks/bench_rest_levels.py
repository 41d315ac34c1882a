"""What reading REST levels costs: ``parse_levels`` alone, between other work, and inside ``reconstruct``.

On a capture with many tokens (default 200 markets = 400 tokens, REST every 20 s, 200k websocket
lines; cached as by the other scripts) it times, in µs per REST level:

- ``touch``: reading ``price`` and ``size`` of every freshly parsed level object, nothing else;
- ``parse_levels``: :func:`streamer.books.parse_levels` on every side;
  each of these two ``alone`` (side after side) and ``between work`` (a walk over 3 000 keys of a
  200 000-entry dict between two summaries, as the comparison does between two sides);
- ``in reconstruct, cache limit N``: a timer around ``parse_levels`` in a whole ``streamer
  reconstruct`` of the capture, with the decimal caches' limit (``books.CACHE_LIMIT``) at N.

The first two read the first ``--rest-lines`` REST lines (each parsed just before its sides are
timed, as in the run). Timers are ``time.process_time``; each figure is the minimum of ``--repeats``.

    python benchmarks/bench_rest_levels.py
    python benchmarks/bench_rest_levels.py --limits 16384,65536,262144 --csv benchmarks/results/rest-levels.csv
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_WORK_DIR, machine_header, prepare_capture, print_table, write_csv_file  # noqa: E402
from streamer import books, cli  # noqa: E402
from streamer.decoders import loads  # noqa: E402

COLUMNS = ("workload", "us_per_level", "levels")
#: A dict walked between two summaries: other work that pushes the parsed levels out of the caches.
_OTHER = {str(i): i for i in range(200_000)}
_OTHER_KEYS = list(_OTHER)[::7][:3000]


def _touch(levels: list[Any]) -> None:
    for level in levels:
        level["price"]
        level["size"]


def _sides_timed(lines: list[bytes], work: Callable[[list[Any]], Any], between: bool) -> tuple[float, int]:
    spent, levels = 0.0, 0
    clock = time.process_time
    for line in lines:
        row = loads(line)
        for summary in row["json"]:
            for side in ("bids", "asks"):
                started = clock()
                work(summary[side])
                spent += clock() - started
                levels += len(summary[side])
            if between:
                for key in _OTHER_KEYS:
                    _OTHER[key]
    return spent / levels * 1e6, levels


def _in_reconstruct(directory: Path, limit: int) -> tuple[float, int]:
    """µs per level of ``parse_levels`` inside a whole ``reconstruct``, the caches limited to ``limit``."""
    reconstruct_module = importlib.import_module("streamer.reconstruct")
    original = reconstruct_module.parse_levels
    spent = [0.0, 0]

    def timed(levels: Any) -> Any:
        started = time.process_time()
        try:
            return original(levels)
        finally:
            spent[0] += time.process_time() - started
            spent[1] += len(levels) if isinstance(levels, list) else 0

    saved_limit = books.CACHE_LIMIT
    for cache in (books.decimal_cache, books.size_cache, books.positive_cache):
        cache.clear()
    books.CACHE_LIMIT = limit
    reconstruct_module.parse_levels = timed
    try:
        with (tempfile.TemporaryDirectory() as out, contextlib.chdir(directory),  # (the manifest's paths)
              open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet)):
            code = cli.main(["reconstruct", "--manifest-10b", "manifest_10b.json", "--no-progress",
                             "--output-rows", f"{out}/rows.jsonl.gz", "--output-manifest", f"{out}/10c.json"])
        assert code == 0, code
    finally:
        reconstruct_module.parse_levels = original
        books.CACHE_LIMIT = saved_limit
    return spent[0] / spent[1] * 1e6, spent[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000, help="websocket lines of the capture")
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--rest-interval", type=float, default=20.0)
    parser.add_argument("--rest-lines", type=int, default=40, help="REST lines for the isolated workloads")
    parser.add_argument("--limits", default="16384,65536,262144", help="decimal cache limits for the in-run timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    capture = prepare_capture(args.work_dir, args.lines, args.markets, 0, rows=False,
                              rest_interval=args.rest_interval, log=lambda m: print(m, file=sys.stderr))
    rest_file = next(capture.directory.glob("rest-*.jsonl.gz"))
    with gzip.open(rest_file, "rb") as handle:
        lines = list(itertools.islice(handle, args.rest_lines))
    _sides_timed(lines[:2], books.parse_levels, False)  # (warms the decimal caches)
    rows = []
    for name, work in (("touch", _touch), ("parse_levels", books.parse_levels)):
        for between in (False, True):
            results = [_sides_timed(lines, work, between) for _ in range(args.repeats)]
            rows.append({"workload": f"{name}, {'between work' if between else 'alone'}",
                         "us_per_level": min(r[0] for r in results), "levels": results[0][1]})
    for limit in (int(value) for value in args.limits.split(",")):
        results = [_in_reconstruct(capture.directory, limit) for _ in range(args.repeats)]
        rows.append({"workload": f"parse_levels in reconstruct, cache limit {limit}",
                     "us_per_level": min(r[0] for r in results), "levels": results[0][1]})
    print_table(COLUMNS, rows)
    if args.csv is not None:
        write_csv_file(args.csv, machine_header({"capture": capture.directory.name}), COLUMNS, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
