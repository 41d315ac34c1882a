"""End-to-end benchmark of ``analyze``: the reference analyzer vs streamer vs the decode floor, by capture length.

For each length a capture of the same shape (so the same divergence rate) and its comparison rows
are generated once and cached under benchmarks/_work. Then every tool runs as a fresh child process
on identical inputs, measured for wall time and peak RSS:

- ``reference``: ../shared/reference/analyze_polymarket_ws_divergences.py (skipped above
  --reference-max-lines: it is quadratic; skipped when absent);
- ``streamer``: ``python -m streamer analyze --no-progress`` (or --streamer-cmd);
- ``floor-fast`` / ``floor-stdlib``: only decompress + split + parse every websocket line
  (isal + orjson / gzip + json), the least any analyzer reading that file must spend.

    python benchmarks/bench_analyze.py
    python benchmarks/bench_analyze.py --lengths 50000,100000 --repeats 3 --csv benchmarks/results/analyze.csv
    python benchmarks/bench_analyze.py --streamer-cmd "{python} -m streamer analyze --no-progress" --bare
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

REFERENCE = common.ROOT.parent / "shared" / "reference" / "analyze_polymarket_ws_divergences.py"
DEFAULT_STREAMER_CMD = "{python} -m streamer analyze --no-progress"

COLUMNS = ("lines", "markets", "seed", "input_mb", "gz_mb", "comparison_rows", "divergent_rows", "tool", "runs",
           "wall_s_min", "wall_s_median", "wall_s_max", "mb_per_s", "lines_per_s", "cpu_s_median", "peak_rss_mib",
           "exit_code", "streamer_speedup", "streamer_over_floor", "manifest_equal", "note")
TABLE_COLUMNS = ("lines", "tool", "runs", "wall_s_min", "wall_s_median", "wall_s_max", "mb_per_s", "lines_per_s",
                 "cpu_s_median", "peak_rss_mib", "exit_code", "streamer_speedup", "streamer_over_floor", "manifest_equal", "note")
SUMMARY_COLUMNS = ("lines", "input_mb", "divergent_rows", "reference_s", "streamer_s", "speedup_vs_reference",
                   "streamer_over_fast_floor", "streamer_over_stdlib_floor", "speedup_cpu", "over_fast_floor_cpu",
                   "over_stdlib_floor_cpu", "streamer_rss_mib", "manifest_equal")


@dataclass
class Case:
    """One capture length, prepared: where it is and what the tools get."""

    lines: int
    directory: Path
    ws_file: Path
    ws_lines: int
    ws_bytes: int
    ws_gz_bytes: int
    flags: dict[str, str]
    status_counts: dict[str, int]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    """A registered tool: how to build its command, which exit codes are success, whether it writes a manifest."""

    name: str
    argv: Callable[[Case, argparse.Namespace], list[str] | None]  #: None: skip (the reason in ``skip``)
    ok_codes: tuple[int, ...]
    manifest: bool
    skip: Callable[[Case, argparse.Namespace], str | None] = lambda _c, _a: None


TOOLS: list[Tool] = []


def tool(name: str, ok_codes: tuple[int, ...], manifest: bool,
         skip: Callable[[Case, argparse.Namespace], str | None] = lambda _c, _a: None
         ) -> Callable[[Callable[[Case, argparse.Namespace], list[str] | None]], Callable[..., Any]]:
    def decorate(fn: Callable[[Case, argparse.Namespace], list[str] | None]) -> Callable[..., Any]:
        TOOLS.append(Tool(name=name, argv=fn, ok_codes=ok_codes, manifest=manifest, skip=skip))
        return fn

    return decorate


def _analyze_flags(case: Case, out: str) -> list[str]:
    flags = [item for pair in case.flags.items() for item in pair]
    return flags + ["--output-manifest", f"{out}/manifest.json", "--output-report", f"{out}/report.md"]


def _reference_skip(case: Case, args: argparse.Namespace) -> str | None:
    if not REFERENCE.is_file():
        return f"reference absent ({REFERENCE})"
    if case.lines > args.reference_max_lines:
        return f"skipped: > --reference-max-lines {args.reference_max_lines} (quadratic)"
    return None


# exit code 1 is the analyzers' "gate blocked" verdict (divergences unexplained): a normal outcome
@tool("reference", ok_codes=(0, 1), manifest=True, skip=_reference_skip)
def reference_argv(case: Case, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(REFERENCE), *_analyze_flags(case, "out-reference")]


@tool("streamer", ok_codes=(0, 1), manifest=True)
def streamer_argv(case: Case, args: argparse.Namespace) -> list[str]:
    """--streamer-cmd, a template: {python}, {flags}, {manifest_10b}, {manifest_10c}, {manifest_10bc},
    {review}, {out} expand; when it names nothing but {python}, the analyze flags are appended."""
    out = f"out-{args.streamer_label}"
    values = {"python": sys.executable, "out": out, "manifest_10b": case.flags.get("--manifest-10b", ""),
              "manifest_10c": case.flags.get("--manifest-10c", ""),
              "manifest_10bc": case.flags.get("--manifest-10bc", ""),
              "review": case.flags.get("--orchestrator-review", "")}
    fields = {name for _lit, name, _spec, _conv in string.Formatter().parse(args.streamer_cmd) if name}
    argv: list[str] = []
    for token in shlex.split(args.streamer_cmd):
        if token == "{flags}":
            argv += _analyze_flags(case, out)
        else:
            argv.append(token.format(**values))
    if fields <= {"python"}:
        argv += _analyze_flags(case, out)
    return argv


@tool("streamer-1w", ok_codes=(0, 1), manifest=True)
def streamer_one_worker_argv(case: Case, args: argparse.Namespace) -> list[str]:
    """streamer in one process (``--workers 1``), beside the default (``auto``: up to 2)."""
    return [sys.executable, "-m", "streamer", "analyze", "--no-progress", "--workers", "1",
            *_analyze_flags(case, "out-streamer-1w")]


@tool("floor-fast", ok_codes=(0,), manifest=False)
def floor_fast_argv(case: Case, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(common.__file__).resolve()), "floor", "fast", case.ws_file.name]


@tool("floor-stdlib", ok_codes=(0,), manifest=False)
def floor_stdlib_argv(case: Case, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(common.__file__).resolve()), "floor", "stdlib", case.ws_file.name]


def export_streamer(rev: str, work_dir: Path) -> Path:
    """``git archive REV streamer`` into WORK_DIR/src-<short sha> (reused when present)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", f"{rev}^{{commit}}"], cwd=common.ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"bench_analyze: --streamer-rev {rev}: {exc.stderr.strip()}")
    target = work_dir / f"src-{sha}"
    if not (target / "streamer" / "__init__.py").is_file():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", sha, "streamer"], cwd=common.ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def prepare(lines: int, args: argparse.Namespace, log: Callable[[str], None]) -> Case:
    """Generate or reuse the capture and comparison rows in a child process (the oracle is memory-hungry)."""
    argv = [sys.executable, str(Path(common.__file__).resolve()), "prepare", "--lines", str(lines),
            "--markets", str(args.markets), "--seed", str(args.seed), "--work-dir", str(args.work_dir), "--rows",
            "--rest-interval", str(args.rest_interval)]
    done = subprocess.run(argv, capture_output=True, text=True)
    for line in done.stderr.splitlines():
        log(line)
    if done.returncode != 0:
        raise SystemExit(f"bench_analyze: preparing {lines} lines failed:\n{done.stderr}")
    info = json.loads(done.stdout)
    return Case(lines=lines, directory=Path(info["directory"]), ws_file=Path(info["ws_file"]),
                ws_lines=info["ws_lines"], ws_bytes=info["ws_bytes"], ws_gz_bytes=info["ws_gz_bytes"],
                flags=info["flags"], status_counts=info["status_counts"])


def warm_page_cache(case: Case) -> None:
    for path in case.directory.rglob("*"):
        if path.is_file() and not path.parent.name.startswith("out-"):
            with open(path, "rb") as handle:
                while handle.read(common.READ_SIZE):
                    pass


def measure(case: Case, item: Tool, args: argparse.Namespace, env: dict[str, str],
            log: Callable[[str], None]) -> dict[str, Any]:
    reason = item.skip(case, args)
    row: dict[str, Any] = {"tool": args.streamer_label if item.name == "streamer" else item.name, "runs": 0}
    if reason:
        row["note"] = reason
        log(f"  {row['tool']}: {reason}")
        return row
    argv = item.argv(case, args)
    assert argv is not None
    seconds, cpu, rss, codes = [], [], [], []
    repeats = args.reference_repeats if item.name == "reference" else args.repeats
    for attempt in range(repeats):
        shutil.rmtree(case.directory / f"out-{row['tool']}", ignore_errors=True)
        run = common.run_measured(argv, cwd=case.directory, env=env, timeout=args.timeout)
        seconds.append(run.seconds)
        cpu.append(run.cpu_seconds)
        rss.append(run.peak_rss_kib)
        codes.append(run.returncode)
        log(f"  {row['tool']} run {attempt + 1}/{repeats}: {run.seconds:.2f} s wall, {run.cpu_seconds:.2f} s cpu, "
            f"{run.peak_rss_kib / 1024:.0f} MiB, exit {run.returncode}")
        if run.returncode not in item.ok_codes:
            row["note"] = "FAILED: " + (run.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
            log(f"  {row['tool']} failed ({' '.join(argv)}):\n{run.stderr[-2000:]}")
            break
        if item.name.startswith("floor"):
            counted = json.loads(run.stdout)
            if counted["lines"] != case.ws_lines or counted["bytes"] != case.ws_bytes:
                row["note"] = f"FAILED: floor read {counted}, expected {case.ws_lines} lines"
                break
    if item.manifest and not row.get("note"):
        path = case.directory / f"out-{row['tool']}" / "manifest.json"
        row["_manifest"] = json.loads(path.read_text()) if path.is_file() else None
    timing = common.Timing(seconds=seconds, lines=case.ws_lines)
    row.update({
        "runs": len(seconds), "wall_s_min": timing.min, "wall_s_median": timing.median, "wall_s_max": timing.max,
        "mb_per_s": case.ws_bytes / common.MB / timing.median, "lines_per_s": round(case.ws_lines / timing.median),
        "cpu_s_median": statistics.median(cpu), "peak_rss_mib": max(rss) / 1024, "exit_code": codes[-1],
    })
    return row


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="50000,100000,200000,400000",
                        help="comma-separated websocket line counts (default 50000,100000,200000,400000)")
    parser.add_argument("--markets", type=int, default=10, help="binary markets, 2 tokens each (default 10)")
    parser.add_argument("--rest-interval", type=float, default=5.0,
                        help="seconds between REST checkpoints (default 5; 20 gives ~1/4 of the divergent rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="measured runs per tool and length (default 1)")
    parser.add_argument("--reference-repeats", type=int, default=None,
                        help="measured runs of the reference (default: --repeats; it is slow)")
    parser.add_argument("--reference-max-lines", type=int, default=200_000,
                        help="skip the reference analyzer above this many lines (default 200000; it is quadratic)")
    parser.add_argument("--streamer-cmd", default=DEFAULT_STREAMER_CMD,
                        help=f"command to benchmark as streamer (default {DEFAULT_STREAMER_CMD!r}); see streamer_argv")
    parser.add_argument("--streamer-rev", default=None, metavar="REV",
                        help="benchmark streamer/ as committed at REV (exported with git archive under the work "
                             "dir, first on PYTHONPATH) instead of the working tree, e.g. HEAD")
    parser.add_argument("--streamer-label", default="streamer", help="its name in the results (default streamer)")
    parser.add_argument("--tools", default=None,
                        help="comma-separated subset of reference,streamer,streamer-1w,floor-fast,floor-stdlib (default all)")
    parser.add_argument("--work-dir", type=Path, default=common.DEFAULT_WORK_DIR,
                        help="where captures are cached (default benchmarks/_work)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per run (default none)")
    parser.add_argument("--csv", type=Path, help="also write the results as CSV here")
    parser.add_argument("--bare", action="store_true", help="print only the CSV (machine-readable) on stdout")
    args = parser.parse_args(argv)
    try:
        lengths = [int(text) for text in args.lengths.split(",") if text.strip()]
    except ValueError:
        parser.error(f"--lengths: expected comma-separated integers, got {args.lengths!r}")
    if args.reference_repeats is None:
        args.reference_repeats = args.repeats
    if not lengths or min(lengths) < 1 or args.repeats < 1 or args.reference_repeats < 1:
        parser.error("--lengths and --repeats must be positive")
    if not args.streamer_label.replace("-", "").replace("_", "").isalnum() or args.streamer_label == "reference":
        parser.error("--streamer-label: letters, digits, - and _ only, not 'reference'")
    wanted = set(args.tools.split(",")) if args.tools else {t.name for t in TOOLS}
    unknown = wanted - {t.name for t in TOOLS}
    if unknown:
        parser.error(f"--tools: unknown {', '.join(sorted(unknown))}")
    args.work_dir = args.work_dir.resolve()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    env = dict(os.environ, PYTHONPATH=str(common.ROOT))
    streamer_env = env
    source = f"working tree at {common.git_commit()}"
    if args.streamer_rev:
        exported = export_streamer(args.streamer_rev, args.work_dir)
        streamer_env = dict(os.environ, PYTHONPATH=f"{exported}{os.pathsep}{common.ROOT}")
        source = f"git {exported.name.removeprefix('src-')} (exported to {exported})"
    header = common.machine_header({
        "streamer_source": source,
        "benchmark": "bench_analyze.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "streamer_cmd": args.streamer_cmd,
        "reference": str(REFERENCE) if REFERENCE.is_file() else "absent",
        "method": (f"each tool a fresh child process, {args.repeats} run(s) (reference {args.reference_repeats}), no warm-up run (inputs read once "
                   "to warm the page cache); wall s incl. interpreter start; rates at the median; peak RSS = max "
                   "over runs (/usr/bin/time %M); cpu = user + system s; MB = 10^6 bytes of uncompressed websocket input; "
                   "streamer_speedup = reference / streamer wall; streamer_over_floor = streamer / floor wall"),
    })

    cases = [prepare(length, args, log) for length in lengths]
    if not args.bare:
        for key, value in header.items():
            print(f"# {key}: {value}")
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    failed = False
    for case in cases:
        divergent = case.status_counts.get("divergent", 0)
        log(f"{case.ws_lines} websocket lines, {case.ws_bytes / common.MB:.1f} MB uncompressed, "
            f"{sum(case.status_counts.values())} comparison rows ({divergent} divergent)")
        warm_page_cache(case)
        for item in TOOLS:
            if item.name not in wanted:
                continue
            row = measure(case, item, args, streamer_env if item.name.startswith("streamer") else env, log)
            failed = failed or str(row.get("note", "")).startswith("FAILED")
            row.update({"lines": case.ws_lines, "markets": args.markets, "seed": args.seed,
                        "input_mb": case.ws_bytes / common.MB, "gz_mb": case.ws_gz_bytes / common.MB,
                        "comparison_rows": sum(case.status_counts.values()), "divergent_rows": divergent})
            case.results[item.name] = row
            rows.append(row)
        by = case.results
        ok = {name: r for name, r in by.items() if r.get("runs") and not r.get("note")}
        s_row = ok.get("streamer")
        line: dict[str, Any] = {"lines": case.ws_lines, "input_mb": case.ws_bytes / common.MB,
                                "divergent_rows": divergent}
        if s_row:
            streamer_s = s_row["wall_s_median"]
            line.update({"streamer_s": streamer_s, "streamer_rss_mib": s_row["peak_rss_mib"]})
            if "reference" in ok:
                ok["reference"]["streamer_speedup"] = ok["reference"]["wall_s_median"] / streamer_s
                line.update({"reference_s": ok["reference"]["wall_s_median"],
                             "speedup_vs_reference": ok["reference"]["streamer_speedup"],
                             "speedup_cpu": _ratio(ok["reference"]["cpu_s_median"], s_row["cpu_s_median"])})
                from tests.refcompare import comparable

                left = ok["reference"].get("_manifest")
                for other in (s_row, ok.get("streamer-1w")):
                    right = other.get("_manifest") if other else None
                    if left is None or right is None:
                        continue
                    equal = comparable(left) == comparable(right) and ok["reference"]["exit_code"] == other["exit_code"]
                    other["manifest_equal"] = equal
                    line["manifest_equal"] = line.get("manifest_equal", True) and equal
                    if not equal:
                        log(f"  MANIFESTS DIFFER at {case.ws_lines} lines (see {case.directory}/out-*/manifest.json)")
            for floor in ("floor-fast", "floor-stdlib"):
                if floor in ok:
                    ok[floor]["streamer_over_floor"] = streamer_s / ok[floor]["wall_s_median"]
                    line[f"streamer_over_{floor.split('-')[1]}_floor"] = ok[floor]["streamer_over_floor"]
                    line[f"over_{floor.split('-')[1]}_floor_cpu"] = _ratio(s_row["cpu_s_median"], ok[floor]["cpu_s_median"])
        summary.append(line)

    header["loadavg_end"] = common.load_average()
    if args.bare:
        common.write_csv(sys.stdout, header, COLUMNS, rows)
    else:
        print()
        common.print_table(TABLE_COLUMNS, rows)
        print()
        common.print_table(SUMMARY_COLUMNS, summary)
        print("(ratios on median wall s; *_cpu: the same on median user+system CPU s, less sensitive to other load)")
        with_rss = [c for c in cases if c.results.get("streamer", {}).get("peak_rss_mib")]
        if len(with_rss) >= 2:
            small, large = min(with_rss, key=lambda c: c.ws_lines), max(with_rss, key=lambda c: c.ws_lines)
            ratio = large.results["streamer"]["peak_rss_mib"] / small.results["streamer"]["peak_rss_mib"]
            print(f"\n{args.streamer_label} peak RSS {large.ws_lines} lines / {small.ws_lines} lines: {ratio:.2f}x "
                  f"({large.ws_lines / small.ws_lines:.0f}x the input)")
    if not args.bare:
        print(f"# loadavg_end: {header['loadavg_end']}")
    if args.csv:
        common.write_csv_file(args.csv, header, COLUMNS, rows)
        if not args.bare:
            print(f"wrote {args.csv}")
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
