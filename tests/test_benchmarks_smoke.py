"""Smoke tests of benchmarks/: each script runs at a tiny size in a subprocess and prints its columns (no timing asserted)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
REFERENCE = ROOT.parent / "shared" / "reference" / "analyze_polymarket_ws_divergences.py"

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The comment lines (``# key: value``) and the rows of a benchmark CSV."""
    lines = text.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    return comments, rows


def test_bench_decoders_tiny(tmp_path: Path) -> None:
    out = tmp_path / "decoders.csv"
    done = run("bench_decoders.py", "--lines", "300", "--markets", "2", "--repeats", "1",
               "--work-dir", str(tmp_path / "work"), "--csv", str(out))
    header = done.stdout.splitlines()
    assert any(line.split()[:3] == ["group", "workload", "runs"] for line in header)
    for name in ("zlib.decompressobj(31)", "isal_zlib.decompressobj(31)", "gzip.open lines", "json.loads",
                 "orjson.loads", "ijson.items(line, '')", "stdlib: gzip.open + json.loads",
                 "fast: isal + split + orjson.loads"):
        assert name in done.stdout
    comments, rows = csv_rows(out.read_text())
    assert {c.split(":")[0] for c in comments} >= {"# python", "# cpu", "# date", "# commit"}
    assert list(rows[0]) == ["group", "workload", "runs", "min_s", "median_s", "max_s", "lines", "input_mb",
                             "mb_per_s", "lines_per_s", "us_per_line", "cpu_s_median", "vs_stdlib"]
    assert {row["group"] for row in rows} == {"gzip", "json", "floor", "deflate", "split"}
    assert all(row["runs"] == "1" for row in rows)


def test_bench_decoders_bare_prints_only_csv(tmp_path: Path) -> None:
    done = run("bench_decoders.py", "--lines", "200", "--markets", "1", "--repeats", "1", "--only", "floor",
               "--work-dir", str(tmp_path / "work"), "--bare")
    comments, rows = csv_rows(done.stdout)
    assert comments and [row["workload"] for row in rows] == ["stdlib: gzip.open + json.loads",
                                                              "fast: isal + split + orjson.loads"]
    assert all(int(row["lines"]) == 200 for row in rows)


def test_bench_analyze_tiny(tmp_path: Path) -> None:
    out = tmp_path / "analyze.csv"
    done = run("bench_analyze.py", "--lengths", "1500,3000", "--markets", "2", "--repeats", "1",
               "--work-dir", str(tmp_path / "work"), "--csv", str(out))
    for column in ("wall_s_median", "mb_per_s", "lines_per_s", "peak_rss_mib", "speedup_vs_reference",
                   "streamer_over_fast_floor", "streamer_over_stdlib_floor"):
        assert column in done.stdout
    assert "streamer peak RSS 3000 lines / 1500 lines" in done.stdout
    comments, rows = csv_rows(out.read_text())
    assert {c.split(":")[0] for c in comments} >= {"# python", "# cpu", "# date", "# commit", "# streamer_cmd"}
    tools = [(row["lines"], row["tool"]) for row in rows]
    assert tools == [(n, t) for n in ("1500", "3000")
                     for t in ("reference", "streamer", "streamer-1w", "floor-fast", "floor-stdlib")]
    for row in rows:
        assert row["note"] == "" or (row["tool"] == "reference" and not REFERENCE.is_file()), row
        if row["tool"].startswith("streamer"):
            assert float(row["wall_s_median"]) > 0 and float(row["peak_rss_mib"]) > 0
            # manifest equality is the differential tests' business; here only that it was checked
            assert row["manifest_equal"] in (("true", "false") if REFERENCE.is_file() else ("",))
        if row["tool"].startswith("floor"):
            assert row["exit_code"] == "0" and row["streamer_over_floor"]


def test_bench_analyze_bare_custom_command_and_reference_limit(tmp_path: Path) -> None:
    done = run("bench_analyze.py", "--lengths", "1000", "--markets", "1", "--reference-max-lines", "500",
               "--streamer-cmd", "{python} -m streamer analyze --no-progress {flags}", "--streamer-label", "custom",
               "--tools", "reference,streamer", "--work-dir", str(tmp_path / "work"), "--bare")
    comments, rows = csv_rows(done.stdout)
    assert "# streamer_cmd: {python} -m streamer analyze --no-progress {flags}" in comments
    assert [row["tool"] for row in rows] == ["reference", "custom"]
    assert rows[0]["runs"] == "0" and rows[0]["note"]
    assert rows[1]["runs"] == "1" and rows[1]["exit_code"] in ("0", "1")


def test_bench_run_tiny(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    done = run("bench_run.py", "--lengths", "800,1600", "--markets", "2", "--work-dir", str(tmp_path / "work"),
               "--csv", str(out))
    assert "run peak RSS, largest / smallest length" in done.stdout
    comments, rows = csv_rows(out.read_text())
    assert {c.split(":")[0] for c in comments} >= {"# python", "# cpu", "# date", "# commit"}
    assert [(row["lines"], row["tool"]) for row in rows] == [
        (n, t) for n in ("800", "1600") for t in ("run", "run-1w", "reconstruct", "floor-fast", "floor-stdlib")]
    for row in rows:
        assert float(row["wall_s"]) > 0 and float(row["peak_rss_mib"]) > 0
        assert (row["vs_fast_floor"] != "") == (not row["tool"].startswith("floor"))


def test_bench_stages_tiny(tmp_path: Path) -> None:
    out = tmp_path / "stages.csv"
    done = run("bench_stages.py", "--lines", "2000", "--markets", "2", "--work-dir", str(tmp_path / "work"),
               "--csv", str(out))
    assert done.stdout.splitlines()[0].split() == ["stage", "seconds", "us_per_line", "share"]
    comments, rows = csv_rows(out.read_text())
    assert {c.split(":")[0] for c in comments} >= {"# python", "# cpu", "# date", "# commit", "# command"}
    assert [row["stage"] for row in rows] == ["read", "rest parse", "rest compare", "apply", "join"]
    # shares are printed to 3 significant digits: five of them may round off by up to 0.005 each
    assert abs(sum(float(row["share"]) for row in rows) - 1) <= 0.025


def test_bench_rest_levels_tiny(tmp_path: Path) -> None:
    out = tmp_path / "rest-levels.csv"
    done = run("bench_rest_levels.py", "--lines", "1500", "--markets", "3", "--rest-interval", "5", "--rest-lines", "3",
               "--limits", "64,16384", "--repeats", "1", "--work-dir", str(tmp_path / "work"), "--csv", str(out))
    assert done.stdout.splitlines()[0].split() == ["workload", "us_per_level", "levels"]
    _comments, rows = csv_rows(out.read_text())
    assert [row["workload"] for row in rows] == [
        "touch, alone", "touch, between work", "parse_levels, alone", "parse_levels, between work",
        "parse_levels in reconstruct, cache limit 64", "parse_levels in reconstruct, cache limit 16384"]
    assert all(int(row["levels"]) > 0 for row in rows)


def test_bench_memory_tiny(tmp_path: Path) -> None:
    out = tmp_path / "memory.csv"
    done = run("bench_memory.py", "--lengths", "600,1200", "--work-dir", str(tmp_path / "work"), "--csv", str(out))
    assert done.stdout.splitlines()[0].split() == ["case", "command", "lines", "wall_s", "peak_rss_mib",
                                                   "rss_ratio_to_shortest"]
    comments, rows = csv_rows(out.read_text())
    assert {c.split(":")[0] for c in comments} >= {"# python", "# cpu", "# date", "# commit", "# command"}
    cases = ["base-run", "base-analyze", "many", "rest1s", "rest-out-of-order", "shuffled", "wide-windows", "churn"]
    assert [(row["case"], row["lines"]) for row in rows] == [(case, n) for case in cases for n in ("600", "1200")]
    for row in rows:
        assert float(row["peak_rss_mib"]) > 0
        if row["lines"] == "600":  # each case's shortest length: the ratio's base
            assert float(row["rss_ratio_to_shortest"]) == 1
    shuffled = tmp_path / "work" / "memory-markets10-plain-ws1200-s7"
    assert (shuffled / "rows-shuffled" / "rows.jsonl.gz").exists()  # analyze read the shuffled rows
