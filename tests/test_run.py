"""``streamer run`` equals ``streamer reconstruct`` then ``streamer analyze``, output for output.

Each case runs the two commands into ``out/``, moves that aside, runs ``run`` into the same paths (the
paths are written inside the manifests), and compares: rows file and 10C manifest byte for byte, the
divergence manifest once loaded (``refcompare.comparable``), the report except its ``Created:`` line,
stdout, and exit codes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from streamer import cli
from streamer.synth import CaptureShape, generate_capture
from tests.refcompare import comparable
from tests.test_reconstruct import (NO, YES, book, change, cli_call, levels, read_rows, rest, summary, write_capture,
                                    ws)

GATE_PASS = "WS_DIVERGENCE_ANALYSIS_PASS"
OUT = {
    "rows": "out/derived/rows.jsonl.gz",
    "manifest_10c": "out/manifests/10c.json",
    "manifest": "out/manifests/10d0.json",
    "report": "out/reports/10d0.md",
}
PRIOR = {"manifest_10bc": "prior/10bc.json", "review": "prior/review.json"}


def _write_prior() -> None:
    Path("prior").mkdir(exist_ok=True)
    Path(PRIOR["manifest_10bc"]).write_text(json.dumps({"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}))
    Path(PRIOR["review"]).write_text(json.dumps({"review_gate": "ACCEPTED"}))


def _reconstruct_then_analyze(manifest_10b: str) -> tuple[int, int, list[str]]:
    code_r, out_r, err_r = cli_call("reconstruct", "--no-progress", "--manifest-10b", manifest_10b,
                                    "--output-rows", OUT["rows"], "--output-manifest", OUT["manifest_10c"])
    assert code_r == 0, err_r
    code_a, out_a, err_a = cli_call("analyze", "--no-progress", "--manifest-10b", manifest_10b,
                                    "--manifest-10c", OUT["manifest_10c"], "--manifest-10bc", PRIOR["manifest_10bc"],
                                    "--orchestrator-review", PRIOR["review"], "--output-manifest", OUT["manifest"],
                                    "--output-report", OUT["report"])
    assert code_a in (0, 1), err_a
    return code_r, code_a, out_r + out_a


def _run(manifest_10b: str, *, prior: bool = True, workers: int = 1) -> tuple[int, list[str], list[str]]:
    extra = ["--manifest-10bc", PRIOR["manifest_10bc"], "--orchestrator-review", PRIOR["review"]] if prior else []
    return cli_call("run", "--no-progress", "--workers", str(workers), "--manifest-10b", manifest_10b,
                    "--output-rows", OUT["rows"], "--manifest-10c", OUT["manifest_10c"],
                    "--output-manifest", OUT["manifest"], "--output-report", OUT["report"], *extra)


def _report_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().split("\n") if not line.startswith("Created: ")]


def assert_run_equals_separate(manifest_10b: str, workers: int = 1) -> dict[str, Any]:
    """Run both ways from the current directory; returns the divergence manifest of ``run``.

    ``workers`` 2: ``run`` analyzes in a helper process fed by the reconstruction's relay.
    """
    _write_prior()
    _, code_analyze, stdout_separate = _reconstruct_then_analyze(manifest_10b)
    separate = Path("separate")
    shutil.rmtree(separate, ignore_errors=True)
    Path("out").rename(separate)
    code_run, stdout_run, stderr_run = _run(manifest_10b, workers=workers)

    def aside(name: str) -> Path:
        return separate / Path(OUT[name]).relative_to("out")

    assert stdout_run == stdout_separate
    assert len(stdout_run) == 6
    assert code_run == code_analyze
    for name in ("rows", "manifest_10c"):
        assert Path(OUT[name]).read_bytes() == aside(name).read_bytes(), name
    manifest_run = json.loads(Path(OUT["manifest"]).read_text())
    manifest_separate = json.loads(aside("manifest").read_text())
    left, right = comparable(json.loads(aside("manifest").read_text())), comparable(dict(manifest_run))
    for key in sorted(set(left) | set(right)):
        assert left.get(key) == right.get(key), f"divergence manifest key {key} differs"
    assert _report_lines(Path(OUT["report"])) == _report_lines(aside("report"))
    gate = manifest_run["gate_status"]
    assert stdout_run[-1] == f"DIVERGENCE_ANALYSIS_GATE={gate}"
    assert code_run == (0 if gate == GATE_PASS else 1)
    assert manifest_separate["accepted_prior_gates"] == manifest_run["accepted_prior_gates"] == {
        "10b": "WS_RAW_SAMPLE_PASS", "10c": json.loads(Path(OUT["manifest_10c"]).read_text())["gate_status"],
        "10bc": "FULL_FIDELITY_SAMPLE_PASS", "orchestrator_review": "ACCEPTED"}
    assert not list(Path("out").rglob(".streamer-work-*"))  # spool directories removed
    return manifest_run


SYNTH_CASES = {
    "default": (CaptureShape(markets=3, ws_lines=2500), 11),
    "multi-file": (CaptureShape(markets=2, ws_lines=3000, ws_files=3, rest_files=2, gzip=False, drop_rate=0.01,
                                duplicate_rate=0.01, blank_line_rate=0.01), 12),
    "legacy": (CaptureShape(markets=3, ws_lines=2500, legacy_price_change_fraction=0.5, drop_rate=0.01), 13),
    "legacy-multi-file": (CaptureShape(markets=4, ws_lines=3000, ws_files=2, rest_files=2, reconnect_every=600,
                                       legacy_price_change_fraction=0.3, book_without_event_type_rate=0.3,
                                       rest_error_rate=0.2, unlisted_token_rate=0.3), 14),
    "clean": (CaptureShape(markets=2, ws_lines=1500, drop_rate=0, rest_lag_ms=(0, 0), unlisted_token_rate=0), 1),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", sorted(SYNTH_CASES))
def test_run_equals_reconstruct_then_analyze_on_synthetic_captures(workdir: Path, case: str, workers: int) -> None:
    shape, seed = SYNTH_CASES[case]
    capture = generate_capture(Path("capture"), shape, seed, path_base=Path("."))
    manifest = assert_run_equals_separate(capture.manifest_10b.as_posix(), workers)
    statuses = manifest["comparison_status_counts"]
    if case == "clean":
        assert manifest["gate_status"] == GATE_PASS and set(statuses) == {"match"}
    else:
        assert statuses.get("divergent") and manifest["gate_status"] != GATE_PASS
    if "multi-file" in case:
        files = {entry["path"] for entry in manifest["input_artifacts"]}
        assert {p.as_posix() for p in capture.ws_files + capture.rest_files} <= files


def _hand_capture(case: str) -> str:
    ahead = summary(bids=levels(("0.48", "10"), ("0.49", "22"), ("0.5", "30")))
    base = [ws(1, 1, [book(), book(NO)]), ws(2, 2, change(YES, "0.49", "21", "BUY")),
            ws(2.3, 3, change(YES, "0.49", "22", "BUY")), ws(4, 4, change(YES, "0.5", "0", "BUY")),
            ws(5, 5, change(YES, "0.49", "23", "BUY"))]
    if case == "size-only-lag":  # divergent, explained by the feed: the analysis passes
        return write_capture([base[:1] + base[2:3]], [[rest(2.0, 1, ahead), rest(3.0, 2, ahead)]])
    if case == "untimed-checkpoint":
        untimed = rest(0, 2, summary())
        del untimed["received_at_utc"]
        return write_capture([base], [[rest(2.5, 1, summary()), untimed, rest(4.5, 3, summary())]])
    if case == "unparseable-ws-time":
        odd = dict(base[2], received_at_utc="not a time")
        return write_capture([[*base[:2], odd, *base[3:]]], [[rest(2.5, 1, summary()), rest(3.5, 2, summary())]])
    if case == "ws-out-of-order":
        return write_capture([[base[0], base[2], base[1], base[4], base[3]]],
                             [[rest(2.5, 1, summary()), rest(3.5, 2, summary()), rest(4.5, 3, summary())]])
    if case == "rest-out-of-order":
        return write_capture([base], [[rest(4.5, 1, summary()), rest(2.5, 2, summary()), rest(3.5, 3, summary())]])
    if case == "rest-late-then-on-time":  # rows of on-time checkpoints wait behind a late one's
        return write_capture([base], [[rest(4.5, 1, summary()), rest(2.5, 2, summary()), rest(5.5, 3, summary()),
                                       rest(6.5, 4, summary(NO))]])
    if case == "malformed-lines":
        return write_capture([[base[0], "{not json", base[1], "[1]", *base[2:]]],
                             [[rest(2.5, 1, summary()), "nope", rest(3.5, 2, summary())]])
    if case == "non-finite-numbers":  # copied into the rows, which JSON cannot hold: the analysis sees them as written
        return write_capture([base], [[rest(2.5, 1, summary()) | {"checkpoint_sequence": math.inf},
                                       rest(4.5, 2, summary()), rest(3.5, 3, summary()) | {"checkpoint_sequence": math.nan}]])
    if case == "multi-file-no-checkpoint":
        return write_capture([base[:2], base[2:]], [[rest(3, 1, status=404) | {"json": {"error": "x"}}]],
                             compress=True)
    raise AssertionError(case)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", ["size-only-lag", "untimed-checkpoint", "unparseable-ws-time", "ws-out-of-order",
                                  "rest-out-of-order", "malformed-lines", "non-finite-numbers",
                                  "multi-file-no-checkpoint"])
def test_run_equals_reconstruct_then_analyze_on_hand_built_captures(workdir: Path, case: str, workers: int) -> None:
    manifest = assert_run_equals_separate(_hand_capture(case), workers)
    if case == "size-only-lag":
        assert manifest["comparison_status_counts"] == {"divergent": 1, "match": 1}
        assert manifest["gate_status"] == GATE_PASS  # exit 0 although a row is divergent
    if case == "multi-file-no-checkpoint":
        assert manifest["row_counts"]["comparison_rows"] == 0
        assert read_rows(OUT["rows"]) == []
    if case == "non-finite-numbers":  # (before: run --workers 1 wrote Infinity and NaN, analyze null)
        assert [row["rest_checkpoint_sequence"] for row in read_rows(OUT["rows"])] == [None, 2, None]
        assert [row["rest_checkpoint_sequence"] for row in manifest["divergence_rows"]] == [None, 2, None]


def test_run_without_prior_manifests_gives_null_gates(workdir: Path) -> None:
    capture = generate_capture(Path("capture"), CaptureShape(markets=2, ws_lines=1200), 3, path_base=Path("."))
    code, stdout, stderr = _run(capture.manifest_10b.as_posix(), prior=False)
    assert code in (0, 1), stderr
    manifest = json.loads(Path(OUT["manifest"]).read_text())
    manifest_10c = json.loads(Path(OUT["manifest_10c"]).read_text())
    assert manifest["accepted_prior_gates"] == {"10b": "WS_RAW_SAMPLE_PASS", "10c": manifest_10c["gate_status"],
                                                "10bc": None, "orchestrator_review": None}
    kinds = [entry["kind"] for entry in manifest["input_artifacts"]]
    assert "10bc_combined_manifest_prior_evidence" not in kinds and "10bc_orchestrator_review" not in kinds
    assert kinds[:2] == ["10b_manifest", "10c_manifest_regenerated_for_10d0"]
    assert stdout[2] == f"RECONSTRUCTION_GATE={manifest_10c['gate_status']}"
    assert code == (0 if manifest["gate_status"] == GATE_PASS else 1)


def test_run_reads_prior_manifests_at_their_default_paths(workdir: Path) -> None:
    capture = generate_capture(Path("capture"), CaptureShape(markets=1, ws_lines=600), 4, path_base=Path("."))
    Path("data/manifests").mkdir(parents=True)
    Path("data/manifests/checkpoint_010bc_full_fidelity_sample_and_reconstruction.json").write_text(
        json.dumps({"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}))
    Path("data/manifests/checkpoint_010bc_orchestrator_review.json").write_text(json.dumps({"status": "REVIEWED"}))
    code, _, stderr = _run(capture.manifest_10b.as_posix(), prior=False)
    assert code in (0, 1), stderr
    gates = json.loads(Path(OUT["manifest"]).read_text())["accepted_prior_gates"]
    assert (gates["10bc"], gates["orchestrator_review"]) == ("FULL_FIDELITY_SAMPLE_PASS", "REVIEWED")


@pytest.mark.parametrize("case", ["no_manifest", "missing_ws", "missing_10bc", "one_file_both_kinds"])
def test_run_unusable_input_exits_2_and_writes_nothing(workdir: Path, run_cli: Callable[..., Any], case: str) -> None:
    manifest = write_capture([[ws(1, 1, [book()])]], [[rest(2, 1, summary())]])
    argv = ["run", "--manifest-10b", manifest, "--output-rows", OUT["rows"], "--manifest-10c", OUT["manifest_10c"],
            "--output-manifest", OUT["manifest"], "--output-report", OUT["report"]]
    if case == "no_manifest":
        argv[2] = "capture/nope.json"
    elif case == "missing_ws":
        Path("capture/ws-0.jsonl").unlink()
    elif case == "one_file_both_kinds":  # (REST summaries read as books: every comparison a match)
        document = json.loads(Path(manifest).read_text())
        document["output_files"].append({"path": "./capture/rest-0.jsonl", "kind": "raw_websocket_messages"})
        Path(manifest).write_text(json.dumps(document))
    else:
        argv += ["--manifest-10bc", "prior/absent.json"]
    result = run_cli(*argv)
    assert result.code == 2
    assert result.stdout == []
    assert len(result.stderr) == 1 and result.stderr[0].startswith("streamer run: error: ")
    if case == "one_file_both_kinds":
        assert result.stderr[0].endswith("names capture/rest-0.jsonl as a rest_books_checkpoints file and "
                                         "./capture/rest-0.jsonl as a raw_websocket_messages file: they are one file")
    assert not Path("out").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_run_answers_rest_rows_out_of_time_order_exactly(workdir: Path, workers: int) -> None:
    """A checkpoint behind the stream is compared at its own time (a replay), in run as in reconstruct."""
    from tests import oracle

    manifest = _hand_capture("rest-out-of-order")
    divergence = assert_run_equals_separate(manifest, workers)
    assert read_rows(OUT["rows"]) == oracle.reconstruct(Path(manifest))
    anomalies = json.loads(Path(OUT["manifest_10c"]).read_text())["anomalies"]
    assert anomalies["late_rest_checkpoint"]["count"] == 2
    assert divergence["row_counts"]["comparison_rows"] == len(read_rows(OUT["rows"]))
    assert divergence["streaming"]["second_passes"] == 1  # the replayed rows were answered exactly


def test_late_checkpoints_wait_for_their_replay_on_disk(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A late checkpoint's REST row (~100 KB for many books) is not held in memory until the end."""
    from streamer.session import RunSession
    from tests import oracle

    waiting: list[Any] = []
    replay = RunSession.replay_late

    def spy(self: RunSession, ws_rows: Any) -> int:
        waiting.extend(entry[-1] for entry in self.late)
        return replay(self, ws_rows)

    monkeypatch.setattr(RunSession, "replay_late", spy)
    manifest = _hand_capture("rest-out-of-order")
    code, _out, err = cli_call("reconstruct", "--no-progress", "--manifest-10b", manifest,
                               "--output-rows", OUT["rows"], "--output-manifest", OUT["manifest_10c"])
    assert code == 0, err
    assert len(waiting) == 2 and all(type(stored) is tuple for stored in waiting)  # (offset, length)
    assert read_rows(OUT["rows"]) == oracle.reconstruct(Path(manifest))
    assert sorted(path.name for path in Path(OUT["rows"]).parent.iterdir()) == [Path(OUT["rows"]).name]


@pytest.mark.parametrize("fail", [False, True])
def test_rows_spilled_behind_a_late_checkpoint_leave_nothing_beside_the_output(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    """Rows waiting behind a late checkpoint spill to disk; the spill files never outlive the run.

    Every waiting row is forced to spill (a spool without an in-memory buffer). A successful
    reconstruct gives the same rows as the oracle; a failing one (a write error at the end) exits
    2; either way the output directory holds nothing but outputs.
    """
    from streamer import writer
    from tests import oracle

    manifest = _hand_capture("rest-late-then-on-time")
    spilled: list[int] = []

    class UnbufferedSpool(writer.OrderedSpool):
        def __init__(self, sink: Any, width: int, spill_dir: Path, buffer_limit: int = 0) -> None:
            super().__init__(sink, width, spill_dir, buffer_limit=0)

        def finish(self, expected: int) -> None:
            spilled.append(len(self.runs))
            if fail:
                raise OSError(28, "No space left on device")
            super().finish(expected)

    monkeypatch.setattr(writer, "OrderedSpool", UnbufferedSpool)
    code, _out, err = cli_call("reconstruct", "--no-progress", "--manifest-10b", manifest,
                               "--output-rows", OUT["rows"], "--output-manifest", OUT["manifest_10c"])
    assert spilled and spilled[0] > 0, "rows were spilled to run files"
    outputs = Path(OUT["rows"]).parent
    if fail:
        assert code == 2 and len(err) == 1 and "No space left" in err[0], err
        assert not outputs.exists()  # its spill files, and the directory the run made for the outputs
    else:
        assert code == 0, err
        assert read_rows(OUT["rows"]) == oracle.reconstruct(Path(manifest))
        assert sorted(path.name for path in outputs.iterdir()) == [Path(OUT["rows"]).name]


def test_a_failing_spool_flush_still_closes_every_spool_and_removes_the_work_dir(tmp_path: Path) -> None:
    """Closing an analysis whose first spool cannot be flushed (a full disk) closes the others,
    removes the work directory, and reports that first error."""
    from streamer.session import AnalysisRun

    run = AnalysisRun(5, 10, ["ws.jsonl"], ["rows.jsonl.gz"], tmp_path / "out" / "10d0.json")
    engine = run.engine
    first = engine._rows_file
    others = [handle for handle in (engine._refs_file, engine._report_file, engine._misses) if handle is not None]
    assert first is not None and others

    class FullDisk:
        closed = False

        def close(self) -> None:
            first.close()
            raise OSError(28, "No space left on device")

    engine._rows_file = FullDisk()  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space"):
        run.close()
    assert all(handle.closed for handle in others)
    assert not run.work_dir.exists()


STOPS = [(signal.SIGTERM, "process"), (signal.SIGTERM, "group"), (signal.SIGINT, "group"), (signal.SIGINT, "twice")]


def _stop_landing_in(module: Any, monkeypatch: pytest.MonkeyPatch, name: str = "mkdtemp") -> None:
    """Make ``module.tempfile.<name>`` send this process SIGINT once the file system entry exists:
    a stop landing between its making and its naming, the window a stop from outside can hit."""
    real = getattr(module.tempfile, name)

    def make_then_stop(*args: Any, **kwargs: Any) -> Any:
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # (handled at the next bytecode: before the return)
        return made

    monkeypatch.setattr(module.tempfile, name, make_then_stop)


@pytest.mark.parametrize("place", ["work-dir", "shares-dir", "output-temporary", "probe"])
def test_a_stop_between_making_a_temporary_and_naming_it_leaves_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          place: str) -> None:
    """Each temporary beside the outputs is made and named for its cleanup in one step, the stop
    deferred to the step's end (before: the CI run where a SIGINT to the process group left
    `.streamer-shares-*` behind, the directory made, its name not yet kept)."""
    from importlib import import_module

    from streamer.errors import stop_once
    out = tmp_path / "out"
    out.mkdir()
    previous = {signum: signal.signal(signum, stop_once) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt):
            if place == "work-dir":
                _stop_landing_in(import_module("streamer.analysis"), monkeypatch)
                import_module("streamer.session").AnalysisRun(5, 10, ["ws"], ["rows"], out / "m.json")
            elif place == "shares-dir":
                shards = import_module("streamer.shards")
                _stop_landing_in(shards, monkeypatch)
                with shards.Helpers(print, [("job",)], out):
                    pass
            elif place == "output-temporary":
                writer = import_module("streamer.writer")
                _stop_landing_in(writer, monkeypatch, "mkstemp")
                with writer.AtomicFile(out / "m.json") as atomic:
                    atomic.handle.write(b"{}")
            else:
                batch = import_module("streamer.batch")
                _stop_landing_in(batch, monkeypatch, "mkstemp")
                batch.check_outputs({"--output-manifest": out / "m.json"}, [])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert list(out.iterdir()) == []


def test_stops_held_defers_a_stop_to_the_end_of_the_outermost_block() -> None:
    from streamer.errors import Terminated, stop_once, stops_held
    previous = {signum: signal.signal(signum, stop_once) for signum in (signal.SIGINT, signal.SIGTERM)}
    steps = []
    try:
        with pytest.raises(Terminated):
            with stops_held():
                with stops_held():
                    os.kill(os.getpid(), signal.SIGTERM)
                    steps.append("inner body ran on")
                steps.append("inner end raised nothing")
        steps.append("outer end raised")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert steps == ["inner body ran on", "inner end raised nothing", "outer end raised"]
    with stops_held():  # nothing pending is left: a later block ends quietly
        pass


@pytest.mark.parametrize("signum, target", STOPS, ids=[f"{s.name}-{t}" for s, t in STOPS])
@pytest.mark.parametrize("command, workers", [("run", 1), ("run", 2), ("analyze", 2)])
def test_a_signal_mid_run_unwinds_leaving_nothing_in_the_output_directory(tmp_path: Path, command: str, workers: int,
                                                                          signum: signal.Signals, target: str) -> None:
    """SIGTERM (a service stopped, a container shut down) unwinds as Ctrl-C does: one line, exit
    143 (130 for SIGINT), and no temporary file or work directory left beside the outputs (the
    helper's included). Also when the signal reaches the whole process group, as the terminal's
    Ctrl-C does (the helper too, then its driver's SIGTERM), and when it comes twice (a second
    Ctrl-C while the first unwinds): neither may break into the cleanup with a traceback."""
    capture = generate_capture(tmp_path / "cap", CaptureShape(markets=4, ws_lines=60_000), 5)
    out = tmp_path / "out"
    run_flags = ["--manifest-10b", str(capture.manifest_10b), "--output-rows", str(tmp_path / "rows.jsonl.gz"),
                 "--manifest-10c", str(tmp_path / "10c.json"), "--output-manifest", str(out / "m.json"),
                 "--output-report", str(out / "r.md"), "--no-progress", "--workers", str(workers)]
    if command == "analyze":
        assert subprocess.run([sys.executable, "-m", "streamer", "run", *run_flags], cwd=tmp_path).returncode in (0, 1)
        shutil.rmtree(out)
        (tmp_path / "10bc.json").write_text('{"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}')
        (tmp_path / "review.json").write_text('{"review_gate": "ACCEPTED"}')
        flags = ["--manifest-10b", str(capture.manifest_10b), "--manifest-10c", str(tmp_path / "10c.json"),
                 "--manifest-10bc", "10bc.json", "--orchestrator-review", "review.json", "--output-manifest",
                 str(out / "m.json"), "--output-report", str(out / "r.md"), "--no-progress", "--workers", str(workers)]
    else:
        flags = run_flags
    out.mkdir()
    with subprocess.Popen([sys.executable, "-m", "streamer", command, *flags], cwd=tmp_path, start_new_session=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 60
        while not any(out.iterdir()) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # (waiting for the run to have made its work directory, not for time)
        if process.poll() is not None:
            pytest.skip("the run ended before it could be stopped")
        if target == "group":
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
            if target == "twice":
                process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    interrupted = signum == signal.SIGINT
    assert process.returncode == (130 if interrupted else 143)
    assert stderr == f"streamer {command}: {'interrupted' if interrupted else 'terminated'}\n" and stdout == ""
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "reconstruct"])
def test_a_websocket_input_that_builds_no_book_is_said_on_stderr(workdir: Path, command: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong or garbled websocket file still gives gates (the reference's rules), but the user
    is told they say nothing; a good capture gets no such line."""
    capture = generate_capture(workdir / "cap", CaptureShape(markets=2, ws_lines=400), 4)
    flags = {"run": ["--manifest-10c", "o/c.json", "--output-manifest", "o/m.json", "--output-report", "o/r.md"],
             "reconstruct": ["--output-manifest", "o/c.json"]}[command]
    good = cli.main([command, "--manifest-10b", str(capture.manifest_10b), "--output-rows", "o/r.gz", *flags])
    assert good in (0, 1) and "no websocket row gave" not in capsys.readouterr().err
    capture.ws_files[0].write_bytes(gzip.compress(b"PONG\n" * 50))
    cli.main([command, "--manifest-10b", str(capture.manifest_10b), "--output-rows", "o/r.gz", *flags])
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"streamer {command}: warning: no websocket row gave any token a book") for line in err)


@pytest.mark.parametrize("flags, noted", [
    (["--output-manifest", "out/10c.json"], True),  # reconstruct's spelling of the 10C manifest, in run
    (["--output-manifest", "out/10d0.json", "--manifest-10c", "out/10c.json"], False),
    ([], False),  # every default: the SPEC's layout, nothing to say
])
def test_run_says_where_its_10c_manifest_goes_when_only_the_divergence_manifest_is_named(
        workdir: Path, run_cli: Callable[..., Any], flags: list[str], noted: bool) -> None:
    manifest = write_capture([[ws(1, 1, [book()])]], [[rest(2, 1, summary())]])
    result = run_cli("run", "--no-progress", "--manifest-10b", manifest, *flags)
    assert result.code in (0, 1), result.stderr
    note = ("streamer run: note: the 10C manifest goes to data/manifests/checkpoint_010c_book_reconstruction_sample.json, "
            "its default (--manifest-10c names it; run's --output-manifest is the divergence manifest)")
    assert (note in result.stderr) is noted, result.stderr
    assert result.stdout[1] == "RECONSTRUCTION_MANIFEST=" + (
        "out/10c.json" if "--manifest-10c" in flags else "data/manifests/checkpoint_010c_book_reconstruction_sample.json")
