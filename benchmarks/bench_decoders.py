"""Decoder benchmark: gzip inflate (zlib, isal, gzip.open), JSON per line (json, orjson, ijson) and the floor.

Every workload runs on the same generated websocket capture (cached under benchmarks/_work), one
warm-up then N measured runs; rates are per line and per MB (10^6 bytes) of uncompressed input.

    python benchmarks/bench_decoders.py                      # 200k lines, 10 markets, 3 repeats
    python benchmarks/bench_decoders.py --lines 50000 --repeats 5 --csv benchmarks/results/decoders.csv
    python benchmarks/bench_decoders.py --bare               # CSV only, on stdout
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

COLUMNS = ("group", "workload", "runs", "min_s", "median_s", "max_s", "lines", "input_mb",
           "mb_per_s", "lines_per_s", "us_per_line", "cpu_s_median", "vs_stdlib")

REGISTRY = common.Registry()
workload = REGISTRY.register


@dataclass
class Context:
    """What the workloads read: the compressed file's bytes, its path, and its lines (already split)."""

    path: Path
    compressed: bytes
    lines: list[bytes]
    joined: bytes  #: the uncompressed file
    nlines: int


def _inflate(make: Callable[[int], Any], data: bytes) -> int:
    """Inflate ``data`` in READ_SIZE pieces, as a streaming reader does; return the output size."""
    inflater = make(31)
    out = 0
    step = common.READ_SIZE
    for start in range(0, len(data), step):
        out += len(inflater.decompress(data[start:start + step]))
    return out


# ---------------------------------------------------------------------------------------------
# gzip


@workload("gzip", "zlib.decompressobj(31)")
def gzip_zlib(ctx: Context) -> int:
    """stdlib zlib inflate, 1 MiB input pieces, no line splitting."""
    _inflate(zlib.decompressobj, ctx.compressed)
    return ctx.nlines


@workload("gzip", "isal_zlib.decompressobj(31)")
def gzip_isal(ctx: Context) -> int:
    """isal (ISA-L) inflate, same calls as zlib."""
    from isal import isal_zlib

    _inflate(isal_zlib.decompressobj, ctx.compressed)
    return ctx.nlines


def _open_lines(opener: Callable[..., Any], data: bytes) -> int:
    """Iterate the lines of a gzip file object over ``data``; return how many."""
    with opener(io.BytesIO(data), "rb") as handle:
        return sum(1 for _line in handle)


@workload("gzip", "gzip.open lines")
def gzip_open_lines(ctx: Context) -> int:
    """stdlib gzip.open in binary mode, iterating lines (inflate + readline)."""
    return _open_lines(gzip.open, ctx.compressed)


@workload("gzip", "isal igzip.open lines")
def igzip_open_lines(ctx: Context) -> int:
    """isal's drop-in gzip.open replacement, iterating lines."""
    from isal import igzip

    return _open_lines(igzip.open, ctx.compressed)


# ---------------------------------------------------------------------------------------------
# JSON, one call per line (lines already in memory)


def _each_line(call: Callable[[bytes], Any], lines: list[bytes]) -> int:
    """``call(line)`` for every line; return how many."""
    for line in lines:
        call(line)
    return len(lines)


@workload("json", "json.loads")
def json_stdlib(ctx: Context) -> int:
    """stdlib json.loads on each line (bytes in)."""
    return _each_line(json.loads, ctx.lines)


@workload("json", "orjson.loads")
def json_orjson(ctx: Context) -> int:
    """orjson.loads on each line (bytes in)."""
    import orjson

    return _each_line(orjson.loads, ctx.lines)


@workload("json", "ijson.items(line, '')")
def json_ijson(ctx: Context) -> int:
    """ijson.items on each line: an incremental parser set up and torn down per small document."""
    import ijson

    items = ijson.items
    for line in ctx.lines:
        for _obj in items(line, ""):
            pass
    return len(ctx.lines)


@workload("json", "ijson.items(stream, multiple_values)")
def json_ijson_stream(ctx: Context) -> int:
    """ijson over the whole decompressed stream at once (its intended use), for contrast with per line."""
    import ijson

    n = 0
    for _obj in ijson.items(io.BytesIO(ctx.joined), "", multiple_values=True):
        n += 1
    return n


@workload("json", "scan: asset_id regex per line")
def scan_asset_ids(ctx: Context) -> int:
    """What a process would do to skip lines of other markets unparsed (streamer/shards.py): find
    every ``"asset_id"`` string value of the line with one C regex scan. It costs about what
    orjson.loads does, so sharded analyze parses every line instead."""
    import re

    return _each_line(re.compile(rb'"asset_id"\s*:\s*"([^"\\]*)"').findall, ctx.lines)


# ---------------------------------------------------------------------------------------------
# output: deflate row by row (as writer.GzipRowsWriter does), and splitting one very long line


def _deflate_rows(make: Callable[..., Any], lines: list[bytes]) -> int:
    """Compress ``lines`` one call per line at level 1, gzip framing; return how many."""
    compressor = make(1, 8, 31)
    for line in lines:
        compressor.compress(line)
    compressor.flush()
    return len(lines)


@workload("deflate", "zlib.compressobj(1) per row")
def deflate_zlib(ctx: Context) -> int:
    """stdlib deflate, one call per row: what streamer writes its outputs with (same bytes anywhere)."""
    return _deflate_rows(zlib.compressobj, ctx.lines)


@workload("deflate", "isal_zlib.compressobj(1) per row")
def deflate_isal(ctx: Context) -> int:
    """ISA-L deflate, same calls: faster, but its bytes depend on how the data is fed (not used)."""
    from isal import isal_zlib

    return _deflate_rows(isal_zlib.compressobj, ctx.lines)


@workload("split", "LineSplitter: the file as one line, 64 KiB pieces")
def split_one_long_line(ctx: Context) -> int:
    """streamer.sources.LineSplitter fed the file with its newlines removed, 64 KiB at a time: one
    line as long as the file (a line spanning many reads must not cost time quadratic in its length)."""
    from streamer.sources import LineSplitter

    data = ctx.joined.replace(b"\n", b" ")
    splitter = LineSplitter()
    for start in range(0, len(data), 1 << 16):
        splitter.feed(data[start:start + (1 << 16)])
    assert splitter.feed(b"\n") == [data]
    return 1


# ---------------------------------------------------------------------------------------------
# the floor: read the file, inflate, split, parse every line


@workload("floor", "stdlib: gzip.open + json.loads")
def floor_stdlib(ctx: Context) -> int:
    """common.floor_stdlib on the file (the floor bench_analyze measures too)."""
    return common.floor_stdlib(ctx.path)[0]


@workload("floor", "fast: isal + split + orjson.loads")
def floor_fast(ctx: Context) -> int:
    """common.floor_fast on the file (the floor bench_analyze measures too)."""
    return common.floor_fast(ctx.path)[0]


STDLIB_OF = {"gzip": "zlib.decompressobj(31)", "json": "json.loads", "floor": "stdlib: gzip.open + json.loads",
             "deflate": "zlib.compressobj(1) per row"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000, help="websocket lines in the capture (default 200000)")
    parser.add_argument("--markets", type=int, default=10, help="binary markets, 2 tokens each (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="measured runs after one warm-up (default 3)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="run only workloads whose 'group/name' contains TEXT (repeatable)")
    parser.add_argument("--work-dir", type=Path, default=common.DEFAULT_WORK_DIR,
                        help="where generated captures are cached (default benchmarks/_work)")
    parser.add_argument("--csv", type=Path, help="also write the results as CSV here")
    parser.add_argument("--bare", action="store_true", help="print only the CSV (machine-readable) on stdout")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.lines < 1:
        parser.error("--repeats and --lines must be positive")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    prepared = common.prepare_capture(args.work_dir, args.lines, args.markets, args.seed, rows=False, log=log)
    compressed = prepared.ws_file.read_bytes()
    joined = gzip.decompress(compressed)
    lines = [line for line in joined.split(b"\n") if line.strip()]
    ctx = Context(path=prepared.ws_file, compressed=compressed, lines=lines, joined=joined, nlines=prepared.ws_lines)
    header = common.machine_header({
        "benchmark": "bench_decoders.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "capture": f"{prepared.ws_lines} websocket lines, {args.markets} markets, seed {args.seed}, "
                   f"{prepared.ws_bytes} bytes uncompressed, {prepared.ws_gz_bytes} bytes gzip",
        "method": f"1 warm-up + {args.repeats} runs each; seconds per run; rates at the median; "
                  "MB = 10^6 bytes of uncompressed input; gzip/json workloads run from memory, floors read the file",
    })
    try:
        import ijson

        header["ijson_backend"] = ijson.backend
    except ImportError:
        pass
    if not args.bare:
        for key, value in header.items():
            print(f"# {key}: {value}")

    rows: list[dict[str, Any]] = []
    medians: dict[str, float] = {}
    for item in REGISTRY.select(args.only):
        try:
            timing = common.time_workload(lambda: item.fn(ctx), args.repeats)
        except ImportError as exc:
            log(f"skip {item.group}/{item.name}: {exc}")
            continue
        medians[item.name] = timing.median
        lines_done = timing.lines
        baseline = medians.get(STDLIB_OF.get(item.group, ""))
        row = {
            "group": item.group, "workload": item.name, "runs": len(timing.seconds),
            "min_s": timing.min, "median_s": timing.median, "max_s": timing.max,
            "lines": lines_done, "input_mb": prepared.ws_bytes / common.MB,
            "mb_per_s": prepared.ws_bytes / common.MB / timing.median,
            "lines_per_s": round(lines_done / timing.median),
            "us_per_line": timing.median / lines_done * 1e6,
            "cpu_s_median": statistics.median(timing.cpu_seconds),
            "vs_stdlib": baseline / timing.median if baseline else None,
        }
        rows.append(row)
        if not args.bare:
            log(f"{item.group}/{item.name}: median {timing.median:.3f} s")
    header["loadavg_end"] = common.load_average()
    if args.bare:
        common.write_csv(sys.stdout, header, COLUMNS, rows)
    else:
        print()
        common.print_table(COLUMNS, rows)
        print("\nvs_stdlib = stdlib median / this median (same group); >1 is faster than the stdlib.")
        print(f"# loadavg_end: {header['loadavg_end']}")
    if args.csv:
        common.write_csv_file(args.csv, header, COLUMNS, rows)
        if not args.bare:
            print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
