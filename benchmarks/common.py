"""Benchmark harness shared by bench_decoders.py and bench_analyze.py: workload registry, timing, captures, floors, CSV.

Also a small command line used by the benchmarks to run work in a fresh child process::

    python benchmarks/common.py floor {fast,stdlib} WS_FILE   # decompress + split + parse every line
    python benchmarks/common.py prepare --lines N --markets M --seed S --work-dir DIR [--rows]
    python benchmarks/common.py rusage OUT_FILE -- CMD ...     # peak RSS fallback without /usr/bin/time
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
DEFAULT_WORK_DIR = BENCH_DIR / "_work"
RESULTS_DIR = BENCH_DIR / "results"
READ_SIZE = 1 << 20  #: bytes read from a compressed file at a time (streamer's READ_SIZE too)
MB = 1_000_000  #: MB/s use decimal megabytes of uncompressed input
MIB = 1 << 20  #: peak RSS is reported in MiB

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# workload registry and timing


@dataclass(frozen=True)
class Workload:
    """One registered benchmark: ``fn(context)`` does the work once and returns how many lines it handled."""

    name: str
    group: str
    fn: Callable[[Any], int]
    doc: str


class Registry:
    """Workloads registered by decorator, kept in registration order."""

    def __init__(self) -> None:
        self.workloads: list[Workload] = []

    def register(self, group: str, name: str) -> Callable[[Callable[[Any], int]], Callable[[Any], int]]:
        def decorate(fn: Callable[[Any], int]) -> Callable[[Any], int]:
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            self.workloads.append(Workload(name=name, group=group, fn=fn, doc=doc))
            return fn

        return decorate

    def select(self, patterns: Sequence[str] | None) -> list[Workload]:
        if not patterns:
            return list(self.workloads)
        return [w for w in self.workloads if any(p in f"{w.group}/{w.name}" for p in patterns)]


@dataclass(frozen=True)
class Timing:
    """Wall times of N measured runs (after the warm-up) and what one run handled."""

    seconds: list[float]
    lines: int
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)  #: process CPU time of each run

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)


def time_workload(fn: Callable[[], int], repeats: int, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times unmeasured, then ``repeats`` times measured (perf_counter and process_time)."""
    lines = 0
    for _ in range(warmup):
        lines = fn()
    seconds, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        lines = fn()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return Timing(seconds=seconds, lines=lines, cpu_seconds=cpu)


# ---------------------------------------------------------------------------------------------
# machine description


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str:
    """Short HEAD commit, with ``+dirty`` when streamer/ has uncommitted changes (they are measured too)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streamer"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def load_average() -> str:
    """1, 5 and 15 minute load averages: above the core count, other work competed with the benchmark."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_header(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the CSV header comment names: Python, CPU, cores, date, commit, decoder library versions."""
    versions = {}
    for module in ("orjson", "isal", "ijson"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = "absent"
    header: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "libraries": " ".join(f"{k}={v}" for k, v in versions.items()),
    }
    header["loadavg_start"] = load_average()
    forced = {k: v for k, v in os.environ.items() if k in ("STREAMER_JSON", "STREAMER_GZIP")}
    if forced:
        header["environment"] = " ".join(f"{k}={v}" for k, v in forced.items())
    header.update(extra or {})
    return header


# ---------------------------------------------------------------------------------------------
# output


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def write_csv(out: io.TextIOBase | Any, header: dict[str, Any], columns: Sequence[str],
              rows: Iterable[dict[str, Any]]) -> None:
    """CSV with ``# key: value`` comment lines first (Python, CPU, date, commit, parameters)."""
    for key, value in header.items():
        out.write(f"# {key}: {value}\n")
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_cell(row.get(k)) for k in columns})


def write_csv_file(path: Path, header: dict[str, Any], columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as out:
        write_csv(out, header, columns, rows)


def report(header: dict[str, Any], columns: Sequence[str], rows: list[dict[str, Any]], bare: bool,
           csv_path: Path | None) -> None:
    """A script's results: the CSV on stdout (``--bare``) or a table, and the CSV file (``--csv``)."""
    if bare:
        write_csv(sys.stdout, header, columns, rows)
    else:
        print_table(columns, rows)
    if csv_path:
        write_csv_file(csv_path, header, columns, rows)


def print_table(columns: Sequence[str], rows: list[dict[str, Any]], out: Any = None) -> None:
    """A plain aligned text table."""
    out = out or sys.stdout
    cells = [[format_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# captures (cached under benchmarks/_work by length, markets and seed)


@dataclass(frozen=True)
class PreparedCapture:
    """A generated capture (and, with rows, the analysis inputs) ready to benchmark."""

    directory: Path
    ws_file: Path
    ws_lines: int
    ws_bytes: int  #: uncompressed websocket bytes
    ws_gz_bytes: int
    flags: dict[str, str]  #: analyze flags, paths relative to ``directory``
    status_counts: dict[str, int]


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _rows_digest() -> str:
    """What the comparison rows depend on: tests/oracle.py and the two refcompare writers (not the rest of it)."""
    import inspect

    from tests import refcompare

    h = hashlib.sha256((ROOT / "tests" / "oracle.py").read_bytes())
    for fn in (refcompare.write_analysis_inputs, refcompare.write_jsonl_gz):
        h.update(inspect.getsource(fn).encode())
    h.update(json.dumps(refcompare.ANALYSIS_FILES, sort_keys=True).encode())
    return h.hexdigest()[:16]


def capture_dir(work_dir: Path, lines: int, markets: int, seed: int, rest_interval: float = 5.0) -> Path:
    interval = "" if rest_interval == 5.0 else f"-r{rest_interval:g}"  # the default keeps its old name
    return Path(work_dir) / f"capture-ws{lines}-m{markets}-s{seed}{interval}"


def prepare_capture(work_dir: Path, lines: int, markets: int, seed: int, *, rows: bool,
                    log: Callable[[str], None] = lambda _m: None, rest_interval: float = 5.0) -> PreparedCapture:
    """Generate (or reuse) a capture of ``lines`` websocket lines; with ``rows`` also the comparison rows.

    ``rest_interval``: seconds between REST checkpoints (fewer checkpoints, fewer divergent rows).
    The cache is keyed by length, markets, seed and interval, and invalidated when streamer/synth.py (capture)
    or tests/oracle.py / tests/refcompare.py (rows) change. One websocket file and one REST file,
    as the reference analyzer reads only the first of each.
    """
    from streamer.synth import CaptureShape, generate_capture

    directory = capture_dir(work_dir, lines, markets, seed, rest_interval)
    capture_key = _digest(ROOT / "streamer" / "synth.py")
    rows_key = capture_key + "-" + _rows_digest()
    meta_path = directory / "capture.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("key") != capture_key:
        log(f"generating capture: {lines} websocket lines, {markets} markets, seed {seed} -> {directory}")
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        shape = CaptureShape(markets=markets, ws_lines=lines, ws_files=1, rest_files=1,
                             rest_interval_seconds=rest_interval)
        capture = generate_capture(directory, shape, seed, path_base=directory)
        ws_file = capture.ws_files[0]
        ws_bytes, ws_lines = 0, 0
        with gzip.open(ws_file, "rb") as handle:
            while chunk := handle.read(READ_SIZE):
                ws_bytes += len(chunk)
                ws_lines += chunk.count(b"\n")
        meta = {"key": capture_key, "manifest_10b": capture.manifest_10b.name, "ws_file": ws_file.name,
                "ws_lines": ws_lines, "ws_bytes": ws_bytes, "ws_gz_bytes": ws_file.stat().st_size,
                "shape": {"markets": markets, "ws_lines": lines, "seed": seed, "rest_interval_seconds": rest_interval}}
        meta_path.write_text(json.dumps(meta, indent=1))
    flags: dict[str, str] = {}
    status_counts: dict[str, int] = {}
    if rows:
        rows_path = directory / "rows.json"
        rows_meta: dict[str, Any] = json.loads(rows_path.read_text()) if rows_path.is_file() else {}
        if rows_meta.get("key") != rows_key:
            log(f"building comparison rows with tests/oracle.py for {directory.name} (slow: ~10 s per 100k lines)")
            from tests.oracle import reconstruct
            from tests.refcompare import write_analysis_inputs

            previous = os.getcwd()
            os.chdir(directory)  # the manifest's paths are relative to the capture directory
            try:
                comparison = reconstruct(Path(meta["manifest_10b"]))
                flags = write_analysis_inputs(Path("."), meta["manifest_10b"], comparison)
            finally:
                os.chdir(previous)
            counts: dict[str, int] = {}
            for row in comparison:
                counts[row["comparison_status"]] = counts.get(row["comparison_status"], 0) + 1
            rows_meta = {"key": rows_key, "flags": flags, "status_counts": counts}
            rows_path.write_text(json.dumps(rows_meta, indent=1))
        flags, status_counts = rows_meta["flags"], rows_meta["status_counts"]
    return PreparedCapture(directory=directory, ws_file=directory / meta["ws_file"], ws_lines=meta["ws_lines"],
                           ws_bytes=meta["ws_bytes"], ws_gz_bytes=meta["ws_gz_bytes"], flags=flags,
                           status_counts=status_counts)


# ---------------------------------------------------------------------------------------------
# the floor: decompress + split lines + parse every line, nothing else


def floor_fast(path: Path) -> tuple[int, int]:
    """isal inflate in READ_SIZE chunks, split at ``\\n``, ``orjson.loads`` each non-empty line.

    :return: (lines, uncompressed bytes).
    """
    import orjson
    from isal import isal_zlib

    loads = orjson.loads
    lines = nbytes = 0
    tail = b""
    with open(path, "rb") as raw:
        inflater = isal_zlib.decompressobj(31)
        while chunk := raw.read(READ_SIZE):
            data = inflater.decompress(chunk)
            while inflater.eof and inflater.unused_data:  # next gzip member
                rest = inflater.unused_data
                inflater = isal_zlib.decompressobj(31)
                data += inflater.decompress(rest)
            if not data:
                continue
            nbytes += len(data)
            parts = (tail + data).split(b"\n") if tail else data.split(b"\n")
            tail = parts.pop()
            lines += len(parts)
            for line in parts:
                if line:
                    loads(line)
    if tail:
        lines += 1
        loads(tail)
    return lines, nbytes


def floor_stdlib(path: Path) -> tuple[int, int]:
    """``gzip.open`` binary line iteration, ``json.loads`` each non-empty line.

    :return: (lines, uncompressed bytes).
    """
    loads = json.loads
    lines = nbytes = 0
    with gzip.open(path, "rb") as handle:
        for line in handle:
            lines += 1
            nbytes += len(line)
            if line.strip():
                loads(line)
    return lines, nbytes


FLOORS: dict[str, Callable[[Path], tuple[int, int]]] = {"fast": floor_fast, "stdlib": floor_stdlib}


# ---------------------------------------------------------------------------------------------
# measuring a child process: wall time and peak RSS


@dataclass(frozen=True)
class ChildRun:
    seconds: float  #: wall
    cpu_seconds: float  #: user + system of the command (and its children)
    peak_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
                 timeout: float | None = None) -> ChildRun:
    """Run ``argv`` in a fresh child; wall time from perf_counter, peak RSS and CPU from ``/usr/bin/time``.

    Without /usr/bin/time, a fresh Python child runs the command and reads
    ``getrusage(RUSAGE_CHILDREN)`` (its only child, so ``ru_maxrss`` is that command's peak).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss", delete=False) as note:
        note_path = note.name
    try:
        if Path("/usr/bin/time").exists():
            wrapped = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", note_path, *argv]
        else:
            wrapped = [sys.executable, str(Path(__file__).resolve()), "rusage", note_path, "--", *argv]
        start = time.perf_counter()
        done = subprocess.run(wrapped, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        text = Path(note_path).read_text().strip().splitlines()
        # the last line is "<wall> <user> <system> <peak RSS KiB>" (GNU time may add a line above it)
        fields = text[-1].split() if text else ["0", "0", "0", "0"]
        cpu, rss = float(fields[1]) + float(fields[2]), int(fields[3])
    finally:
        os.unlink(note_path)
    return ChildRun(seconds=seconds, cpu_seconds=cpu, peak_rss_kib=rss, returncode=done.returncode, stdout=done.stdout,
                    stderr=done.stderr)


# ---------------------------------------------------------------------------------------------
# command line for child processes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/common.py")
    commands = parser.add_subparsers(dest="command", required=True)
    floor = commands.add_parser("floor", help="decompress + split + parse every line of a websocket file")
    floor.add_argument("kind", choices=sorted(FLOORS))
    floor.add_argument("path", type=Path)
    prepare = commands.add_parser("prepare", help="generate (or reuse) a cached capture")
    prepare.add_argument("--lines", type=int, required=True)
    prepare.add_argument("--markets", type=int, default=10)
    prepare.add_argument("--seed", type=int, default=0)
    prepare.add_argument("--rest-interval", type=float, default=5.0, help="seconds between REST checkpoints")
    prepare.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    prepare.add_argument("--rows", action="store_true", help="also build the comparison rows (analyze inputs)")
    rusage = commands.add_parser("rusage", help="run a command, write '<wall s> <user s> <sys s> <peak RSS KiB>' to a file")
    rusage.add_argument("out", type=Path)
    rusage.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "floor":
        lines, nbytes = FLOORS[args.kind](args.path)
        print(json.dumps({"lines": lines, "bytes": nbytes}))
        return 0
    if args.command == "prepare":
        prepared = prepare_capture(args.work_dir, args.lines, args.markets, args.seed, rows=args.rows,
                                   log=lambda m: print(m, file=sys.stderr, flush=True),
                                   rest_interval=args.rest_interval)
        print(json.dumps({"directory": str(prepared.directory), "ws_file": str(prepared.ws_file),
                          "ws_lines": prepared.ws_lines, "ws_bytes": prepared.ws_bytes,
                          "ws_gz_bytes": prepared.ws_gz_bytes, "flags": prepared.flags,
                          "status_counts": prepared.status_counts}))
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    start = time.perf_counter()
    code = subprocess.call(cmd)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    args.out.write_text(f"{seconds:.2f} {usage.ru_utime:.2f} {usage.ru_stime:.2f} {usage.ru_maxrss}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
