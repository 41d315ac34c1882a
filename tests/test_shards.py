"""Sharded analyze (``--workers``): the deal of markets into shares, the helper processes, and
outputs equal to a single process's whatever the number of workers."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import batch, shards
from streamer.errors import HelperError, InputError
from streamer.synth import CaptureShape, generate_capture
from tests import refcompare
from tests.oracle import reconstruct

MANIFEST_10B = refcompare.CAPTURE_FILES["manifest_10b"]


# -- the deal --------------------------------------------------------------------------------

token_ids = st.sampled_from(["1", "2", "3", "4", "5", "6", "None", "x"])
market_layouts = st.lists(st.tuples(st.sampled_from(["0xa", "0xb", "0xc", "0xd", 7]),
                                    st.lists(token_ids, max_size=3)), max_size=8)


@given(markets=market_layouts, workers=st.integers(1, 4))
def test_shares_are_disjoint_listed_tokens_without_none(markets: list[tuple[Any, list[str]]], workers: int) -> None:
    shares = shards.plan_shares(markets, workers)
    listed = {token for _market, tokens in markets for token in tokens}
    assert len(shares) <= workers - 1
    seen: set[str] = set()
    for share in shares:
        assert share, "an empty share starts a helper for nothing"
        assert share <= listed - {"None"}
        assert not share & seen, "a token in two shares would be answered twice"
        seen |= share
    # a market's tokens stay together (tokens listed under one market id only)
    owners: dict[str, set[Any]] = {}
    for market, tokens in markets:
        for token in tokens:
            owners.setdefault(token, set()).add(market)
    for market in {market for market, _tokens in markets}:
        own = {token for other, tokens in markets if other == market for token in tokens
               if token != "None" and owners[token] == {market}}
        holders = {next((number for number, share in enumerate(shares) if token in share), "driver")
                   for token in own}
        assert len(holders) <= 1


def test_one_worker_or_one_market_means_no_helper() -> None:
    markets = [("0xa", ["1", "2"]), ("0xb", ["3", "4"])]
    assert shards.plan_shares(markets, 1) == []
    assert shards.plan_shares([("0xa", ["1", "2"])], 4) == []
    assert shards.plan_shares([("0xa", ["1"]), ("0xa", ["2"])], 4) == []  # one market, listed twice
    assert shards.plan_shares([("0xa", ["None"]), ("0xb", ["3"])], 2) == []  # only one market with a token


def test_driver_gets_the_lighter_share() -> None:
    markets = [(f"0x{number}", [f"{number}a", f"{number}b"]) for number in range(10)]
    shares = shards.plan_shares(markets, 2)
    assert len(shares) == 1
    assert len(shares[0]) == 2 * 6  # 6 markets to the helper, 4 to the driver (weight 0.8)


def test_market_tokens_reads_the_manifest_list() -> None:
    markets = [
        {"condition_id": "0xa", "tokens": [{"token_id": "1"}, {"token_id": 2}, {"outcome": "No"}, "junk"]},
        {"tokens": [{"token_id": "3"}]},  # no condition id: its position names it
        {"condition_id": "0xa", "tokens": [{"token_id": "4"}]},
        "junk",
        {"condition_id": "0xb", "tokens": "junk"},
    ]
    assert shards.market_tokens(markets) == [("0xa", ["1", "2"]), (1, ["3"]), ("0xa", ["4"])]
    assert shards.market_tokens({"not": "a list"}) == []
    assert shards.market_tokens(None) == []


# -- the helpers -----------------------------------------------------------------------------

def _returns(value: Any, out_dir: Path) -> Any:
    assert out_dir.is_dir()
    return value


def _raises_input_error(out_dir: Path) -> None:
    raise InputError("cannot read ws.jsonl.gz: No such file or directory")


def _raises(out_dir: Path) -> None:
    raise ValueError("broken")


def _disk_full(out_dir: Path) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _dies(out_dir: Path) -> None:
    os._exit(3)


@pytest.mark.parametrize("threads", [1, 2], ids=["fork", "spawn"])
def test_helpers_return_results_in_job_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    monkeypatch.setattr(shards.threading, "active_count", lambda: threads)  # 2: spawn, as with threads
    with shards.Helpers(_returns, [("first",), ({"second": 2},)], tmp_path) as helpers:
        assert helpers.results() == ["first", {"second": 2}]
        assert helpers.dir is not None and helpers.dir.exists()
    assert list(tmp_path.iterdir()) == [], "the helpers' files are removed"


def test_no_jobs_start_nothing(tmp_path: Path) -> None:
    with shards.Helpers(_returns, [], tmp_path / "never") as helpers:
        assert helpers.results() == []
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("target, error, message", [
    (_raises_input_error, InputError, "cannot read ws.jsonl.gz: No such file or directory"),
    (_raises, HelperError, "failed: ValueError: broken"),
    # a write that failed is the driver's write error (the CLI's "cannot write ..."), not a helper's failure
    (_disk_full, OSError, "No space left on device"),
    (_dies, HelperError, "died (exit code 3)"),
])
def test_a_failing_helper_is_one_clear_error(tmp_path: Path, target: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        with shards.Helpers(target, [()], tmp_path) as helpers:
            helpers.results()
    assert list(tmp_path.iterdir()) == []
    if error is OSError:
        assert not isinstance(raised.value, HelperError) and raised.value.errno == errno.ENOSPC


# -- outputs equal whatever the number of workers ---------------------------------------------

def _analyze(work: Path, rows: list[dict[str, Any]], workers: int) -> tuple[dict[str, Any], str, str]:
    flags = refcompare.write_analysis_inputs(work, MANIFEST_10B, rows)
    out = work / f"out-{workers}"
    config = batch.AnalyzeConfig(
        manifest_10b=Path(flags["--manifest-10b"]), manifest_10c=Path(flags["--manifest-10c"]),
        manifest_10bc=Path(flags["--manifest-10bc"]), orchestrator_review=Path(flags["--orchestrator-review"]),
        output_manifest=out / "manifest.json", output_report=out / "report.md", workers=workers)
    with contextlib.chdir(work):
        outcome = batch.analyze(config)
        manifest = refcompare.load_manifest(out / "manifest.json")
        report = (out / "report.md").read_text()
    streaming = manifest.pop("streaming")
    for key in ("started_at_utc", "ended_at_utc"):
        manifest.pop(key)
    report = "\n".join(line for line in report.split("\n") if not line.startswith("Created: "))
    return {**manifest, "workers": streaming["workers"]}, report, outcome.gate


@settings(max_examples=int(os.environ.get("STREAMER_DIFF_EXAMPLES", "12")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(markets=st.integers(2, 5), ws_files=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       drop_rate=st.sampled_from([0.0, 0.05]), legacy=st.sampled_from([0.0, 0.3]),
       unlisted=st.sampled_from([0.0, 0.2]), workers=st.sampled_from([2, 3, 5]))
def test_outputs_equal_for_any_number_of_workers(markets: int, ws_files: int, seed: int, drop_rate: float,
                                                 legacy: float, unlisted: float, workers: int) -> None:
    shape = CaptureShape(markets=markets, ws_lines=1500, ws_files=ws_files, drop_rate=drop_rate,
                         legacy_price_change_fraction=legacy, unlisted_token_rate=unlisted,
                         rest_interval_seconds=1.0, rest_lag_ms=(-500, 1500), duplicate_rate=0.01)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_capture(work / "capture", shape, seed, path_base=work)
        with contextlib.chdir(work):
            rows = reconstruct(Path(MANIFEST_10B))
        single, single_report, single_gate = _analyze(work, rows, 1)
        sharded, sharded_report, sharded_gate = _analyze(work, rows, workers)
    assert single.pop("workers") == 1
    assert 1 < sharded.pop("workers") <= workers
    refcompare.assert_equal_manifests(single, sharded)
    assert sharded_report == single_report
    assert sharded_gate == single_gate


@pytest.mark.parametrize("workers", [2, 3])
def test_rows_skipped_as_unusable_are_counted_once_for_any_number_of_workers(workers: int) -> None:
    """Every process checks every row; each skipped row is counted by the one answering its token
    (a last line that is not a number: after that process's second pass), and the helpers' skips
    reach the manifest: its problems, counts and gate equal one process's."""
    shape = CaptureShape(markets=4, ws_lines=1500, rest_interval_seconds=1.0, drop_rate=0.05)
    mistakes = [{"last_applied_ws_line": "x"}, {"market": 5}, {"last_applied_ws_line": [3]},
                {"bid_top_n_diff": [1]}, {"token_id": "999", "last_applied_ws_line": "y"}]  # (the last: no events)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_capture(work / "capture", shape, 5, path_base=work)
        with contextlib.chdir(work):
            rows = reconstruct(Path(MANIFEST_10B))
        divergent = [index for index, row in enumerate(rows) if row["comparison_status"] == "divergent"]
        for number, index in enumerate(divergent):
            rows[index] = {**rows[index], **mistakes[number % len(mistakes)]}
        single, single_report, _ = _analyze(work, rows, 1)
        sharded, sharded_report, _ = _analyze(work, rows, workers)
    assert single.pop("workers") == 1 and sharded.pop("workers") > 1
    skipped = sum(item["count"] for item in single["input_problems"]["skipped"])
    answered = len(divergent) // len(mistakes) + (len(divergent) % len(mistakes) > 4)  # the no-events rows
    assert skipped == len(divergent) - answered and len(single["divergence_rows"]) == answered
    refcompare.assert_equal_manifests(single, sharded)
    assert sharded_report == single_report


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_cli_rejects_a_bad_workers_value(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    from streamer import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["analyze", "--workers", bad])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "argument --workers" in err and "Traceback" not in err


def _broken_share(*args: Any) -> None:
    raise ValueError("a bug in a helper")


def test_a_failing_helper_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                run_cli: Any) -> None:
    generate_capture(tmp_path / "capture", CaptureShape(markets=2, ws_lines=400), 7, path_base=tmp_path)
    monkeypatch.chdir(tmp_path)
    flags = refcompare.write_analysis_inputs(tmp_path, MANIFEST_10B, reconstruct(Path(MANIFEST_10B)))
    monkeypatch.setattr(batch, "_analyze_share", _broken_share)
    monkeypatch.setattr(shards.threading, "active_count", lambda: 1)  # fork: the helper runs the patch
    run = run_cli("analyze", "--workers", "2", *[item for pair in flags.items() for item in pair],
                  "--output-manifest", "out/manifest.json", "--output-report", "out/report.md")
    assert run.code == 2
    assert run.stdout == []
    assert len(run.stderr) == 1 and "analysis helper streamer-share-1 failed: ValueError: a bug in a helper" in run.stderr[0]
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out").exists(), "spools, helper files and the directory the run made are removed"


# -- run --workers 2: the analysis in a helper fed by the reconstruction's relay -----------------

def _run_into(work: Path, workers: int) -> dict[str, Any]:
    config = batch.RunConfig(manifest_10b=Path(MANIFEST_10B), output_rows=Path("out/rows.jsonl.gz"),
                             manifest_10c=Path("out/10c.json"), output_manifest=Path("out/10d0.json"),
                             output_report=Path("out/10d0.md"), workers=workers)
    with contextlib.chdir(work):
        outcome = batch.run(config)
        manifest = refcompare.load_manifest(Path("out/10d0.json"))
        result = {
            "gates": (outcome.gate, outcome.reconstruction_gate),
            "problems": outcome.problems.messages(),
            "rows": Path("out/rows.jsonl.gz").read_bytes(),
            "10c": Path("out/10c.json").read_bytes(),
            "report": [line for line in Path("out/10d0.md").read_text().split("\n") if not line.startswith("Created: ")],
            "manifest": {key: value for key, value in manifest.items() if key not in ("started_at_utc", "ended_at_utc")},
            "leftovers": sorted(path.name for path in Path("out").iterdir()),
        }
        Path("out").rename(f"out-{workers}")
    return result


@settings(max_examples=int(os.environ.get("STREAMER_DIFF_EXAMPLES", "10")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(markets=st.integers(1, 4), ws_files=st.integers(1, 3), rest_files=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1), drop_rate=st.sampled_from([0.0, 0.05]),
       legacy=st.sampled_from([0.0, 0.3]), rest_lag=st.sampled_from([(0, 0), (-3000, 1500), (-500, 4000)]),
       blank=st.sampled_from([0.0, 0.02]), rest_error=st.sampled_from([0.0, 0.1]))
def test_run_outputs_equal_with_the_analysis_in_a_helper(markets: int, ws_files: int, rest_files: int, seed: int,
                                                          drop_rate: float, legacy: float, rest_lag: tuple[int, int],
                                                          blank: float, rest_error: float) -> None:
    shape = CaptureShape(markets=markets, ws_lines=1500, ws_files=ws_files, rest_files=rest_files,
                         drop_rate=drop_rate, legacy_price_change_fraction=legacy, rest_lag_ms=rest_lag,
                         blank_line_rate=blank, rest_error_rate=rest_error, duplicate_rate=0.01,
                         rest_interval_seconds=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_capture(work / "capture", shape, seed, path_base=work)
        single = _run_into(work, 1)
        relayed = _run_into(work, 2)
    assert relayed["rows"] == single["rows"]
    assert relayed["10c"] == single["10c"]
    refcompare.assert_equal_manifests(single["manifest"], relayed["manifest"])
    for key in ("report", "gates", "problems", "leftovers"):
        assert relayed[key] == single[key], key


def _broken_analysis(messages: Any, *args: Any) -> None:
    messages.recv()
    raise ValueError("a bug in the analysis helper")


def test_a_failing_run_helper_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               run_cli: Any) -> None:
    generate_capture(tmp_path / "capture", CaptureShape(markets=2, ws_lines=3000), 3, path_base=tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "relayed_analysis", _broken_analysis)
    monkeypatch.setattr(shards.threading, "active_count", lambda: 1)  # fork: the helper runs the patch
    run = run_cli("run", "--workers", "2", "--manifest-10b", MANIFEST_10B, "--output-rows", "out/rows.jsonl.gz",
                  "--manifest-10c", "out/10c.json", "--output-manifest", "out/10d0.json",
                  "--output-report", "out/10d0.md")
    assert run.code == 2
    assert run.stdout == []
    assert len(run.stderr) == 1
    assert "analysis helper streamer-share-1 failed: ValueError: a bug in the analysis helper" in run.stderr[0]
    assert not (tmp_path / "out" / "10d0.json").exists()
    assert not (tmp_path / "out").exists()  # nothing left: no spool, no helper file, not the directory it made


@pytest.mark.parametrize("command", ["analyze", "run"])
def test_spawned_helpers_give_the_same_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """With other threads alive, helpers are spawned (a fresh interpreter), not forked."""
    shape = CaptureShape(markets=3, ws_lines=1200, drop_rate=0.05, rest_interval_seconds=1.0, rest_lag_ms=(-800, 800))
    generate_capture(tmp_path / "capture", shape, 5, path_base=tmp_path)
    monkeypatch.setattr(shards.threading, "active_count", lambda: 2)
    if command == "run":
        single = _run_into(tmp_path, 1)
        spawned = _run_into(tmp_path, 2)
        assert (spawned["rows"], spawned["10c"], spawned["report"]) == (single["rows"], single["10c"], single["report"])
        refcompare.assert_equal_manifests(single["manifest"], spawned["manifest"])
    else:
        with contextlib.chdir(tmp_path):
            rows = reconstruct(Path(MANIFEST_10B))
        single, single_report, _ = _analyze(tmp_path, rows, 1)
        spawned, spawned_report, _ = _analyze(tmp_path, rows, 2)
        assert spawned.pop("workers") == 2 and single.pop("workers") == 1
        refcompare.assert_equal_manifests(single, spawned)
        assert spawned_report == single_report


def test_a_helper_ends_when_its_driver_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "driver.py"
    script.write_text(
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from streamer import shards\n"
        "from tests.test_shards import _sleeps\n"
        "helpers = shards.Helpers(_sleeps, [()], Path(sys.argv[1])).__enter__()\n"
        "print(helpers._processes[0][0].pid, flush=True)\n"
        "time.sleep(60)\n")
    root = Path(__file__).resolve().parent.parent
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out")], stdout=subprocess.PIPE, text=True,
                              cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    assert driver.stdout is not None
    helper = int(driver.stdout.readline())
    os.kill(helper, 0)  # alive
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(helper, signal.SIGKILL)
    raise AssertionError("the helper outlived its driver")


def _sleeps(out_dir: Path) -> None:
    import time

    time.sleep(60)


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000\n", None), ("50000 100000\n", 1), ("150000 100000\n", 1), ("400000 100000\n", None),
    ("garbage\n", None), ("100000 0\n", None),
])
def test_auto_workers_respects_a_container_cpu_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    unlimited = shards.default_workers(tmp_path / "absent")
    assert 1 <= unlimited <= 2
    assert shards.default_workers(path) == (unlimited if expected is None else min(expected, unlimited))


def test_more_workers_than_markets_deal_one_market_each_without_a_share_per_worker() -> None:
    """``--workers 1000000000``: a share per market, no list per worker asked for (it used to
    allocate one, exhausting memory before looking at the markets)."""
    markets = [(f"0x{number}", [f"{number}a", f"{number}b"]) for number in range(4)]
    shares = shards.plan_shares(markets, 10**9)
    assert sorted(sorted(share) for share in shares) == [[f"{n}a", f"{n}b"] for n in range(4)]
    assert shares == shards.plan_shares(markets, 5)
