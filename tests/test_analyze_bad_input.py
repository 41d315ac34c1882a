"""``streamer analyze`` on bad input (SPEC section 6, README "Input lines"), in-process.

A malformed line is skipped, counted by file and reason in ``input_problems``, named on stderr, and
the run goes on: every other output equals the run on the same file with those lines blanked (so
that the line numbers of the other rows do not move), and, when the reference analyzer is present,
the reference's run on that blanked file. A missing or unreadable input is one stderr line and exit
2, with no output written. Gzip or plain is decided by content; multi-member gzip is read through.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Callable

import pytest

from streamer.synth import CaptureShape, generate_capture
from tests import refcompare
from tests.conftest import CliRun
from tests.oracle import reconstruct

WS = refcompare.CAPTURE_FILES["ws"]
REST = refcompare.CAPTURE_FILES["rest"]
MANIFEST_10B = refcompare.CAPTURE_FILES["manifest_10b"]
COMPARISON = refcompare.ANALYSIS_FILES["comparison_rows"]
SHAPE = CaptureShape(markets=2, ws_lines=400, drop_rate=0.05, rest_interval_seconds=1.0, blank_line_rate=0.01,
                     rest_error_rate=0.1)
OUT_MANIFEST = "out/manifest.json"
OUT_REPORT = "out/report.md"

RunCli = Callable[..., CliRun]


# ---------------------------------------------------------------------------------------------
# helpers


def _gunzip_lines(path: Path) -> list[bytes]:
    return gzip.decompress(path.read_bytes()).split(b"\n")[:-1]


@pytest.fixture
def capture(workdir: Path) -> tuple[list[bytes], list[bytes]]:
    """The websocket and REST lines of a small synthetic capture (drops, REST errors, blank lines)."""
    generated = generate_capture(workdir / "synth", SHAPE, 11)
    return _gunzip_lines(generated.ws_files[0]), _gunzip_lines(generated.rest_files[0])


def _insert(lines: list[bytes], bad: dict[int, bytes]) -> tuple[list[bytes], list[bytes]]:
    """``lines`` with ``bad`` inserted so that each lands on its line number; also the blanked twin."""
    out, clean = list(lines), list(lines)
    for number in sorted(bad):
        out.insert(number - 1, bad[number])
        clean.insert(number - 1, b"")
    return out, clean


def _setup(root: Path, ws: list[bytes], rest: list[bytes], rows: list[dict[str, Any]] | None = None,
           comparison: list[bytes] | None = None) -> dict[str, str]:
    """Write a capture and the analysis inputs under ``root``; comparison rows from the oracle by default."""
    root.mkdir(parents=True, exist_ok=True)
    refcompare.write_capture(root, ws, rest)
    if rows is None:
        with contextlib.chdir(root):
            rows = reconstruct(Path(MANIFEST_10B))
    flags = refcompare.write_analysis_inputs(root, MANIFEST_10B, rows)
    if comparison is not None:
        refcompare.write_jsonl_gz(root / COMPARISON, [], raw_lines=comparison)
    return flags


def _rows(root: Path) -> list[dict[str, Any]]:
    """The comparison rows written under ``root``."""
    return [json.loads(line) for line in _gunzip_lines(root / COMPARISON) if line.strip()]


def _same_report(left: str, right: str) -> bool:
    """Reports equal but for their creation time."""
    strip = lambda text: [line for line in text.split("\n") if not line.startswith("Created: ")]  # noqa: E731
    return strip(left) == strip(right)


def _analyze(run_cli: RunCli, root: Path, flags: dict[str, str], *extra: str) -> tuple[CliRun, Any, Any]:
    """Run ``streamer analyze`` in-process with ``root`` as the working directory."""
    with contextlib.chdir(root):
        run = run_cli("analyze", "--no-progress", *[item for pair in flags.items() for item in pair], *extra,
                      "--output-manifest", OUT_MANIFEST, "--output-report", OUT_REPORT)
    manifest = root / OUT_MANIFEST
    report = root / OUT_REPORT
    return (run, json.loads(manifest.read_text()) if manifest.exists() else None,
            report.read_text() if report.exists() else None)


def _stdout(gate: str) -> list[str]:
    return [f"DIVERGENCE_ANALYSIS_MANIFEST={OUT_MANIFEST}", f"DIVERGENCE_ANALYSIS_REPORT={OUT_REPORT}",
            f"DIVERGENCE_ANALYSIS_GATE={gate}"]


def _skipped_message(file: str, reason: str, lines: list[int]) -> str:
    return (f"streamer: skipped {len(lines)} line(s) of {file}: {reason}; lines "
            + ", ".join(str(line) for line in lines))


def _without_identity(manifest: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    """The comparable manifest, without bytes and sha256 of the inputs in ``changed`` (their bytes differ)."""
    value = refcompare.comparable(json.loads(json.dumps(manifest)))
    for key in ("input_artifacts", "updated_source_or_doc_artifacts"):
        for artifact in value.get(key, []):
            if artifact["path"] in changed:
                artifact.pop("bytes")
                artifact.pop("sha256")
    return value


def _assert_equal_manifests(left: dict[str, Any], right: dict[str, Any], changed: set[str]) -> None:
    refcompare.assert_equal_manifests(_without_identity(left, changed), _without_identity(right, changed))


def _assert_reference_agrees(root: Path, flags: dict[str, str]) -> None:
    """When the reference is present, it agrees with streamer on ``root`` (the clean inputs)."""
    if refcompare.reference_available():
        refcompare.assert_same(refcompare.run_both(root, flags))


def _assert_clean_run(run: CliRun, manifest: Any, clean: CliRun, clean_manifest: Any) -> None:
    assert clean.stderr == []
    assert clean_manifest["input_problems"]["skipped"] == []
    assert run.code == clean.code == (0 if clean_manifest["gate_status"] == "WS_DIVERGENCE_ANALYSIS_PASS" else 1)
    assert run.stdout == clean.stdout == _stdout(clean_manifest["gate_status"])
    assert manifest["gate_status"] == clean_manifest["gate_status"]


# ---------------------------------------------------------------------------------------------
# malformed lines: skipped, counted, named; the run goes on


BOOK = {"event_type": "book", "asset_id": "1", "market": "0xm", "bids": [{"price": "0.4", "size": "1"}], "asks": []}


def test_malformed_websocket_lines(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    ws, rest = capture
    bad = {
        5: b"{not json",
        40: b"[1,2]",
        41: b'"x"',
        90: json.dumps({"received_at_utc": 5, "global_message_sequence": 0, "json": BOOK}).encode(),
        91: json.dumps({"received_at_utc": True, "json": None, "text": "PONG"}).encode(),
        150: b"\xff\xfe{}",
        151: b'{"received_at_utc": "2026-04-19T17:00:01Z", "json": ',
        300: b"12",
    }
    bad_ws, clean_ws = _insert(ws, bad)
    flags = _setup(workdir / "clean", clean_ws, rest)
    _setup(workdir / "bad", bad_ws, rest, rows=_rows(workdir / "clean"))
    clean, clean_manifest, clean_report = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, report = _analyze(run_cli, workdir / "bad", flags)

    expected = [
        {"file": WS, "reason": "mistyped_received_at_utc", "count": 2, "lines": [90, 91]},
        {"file": WS, "reason": "not_an_object", "count": 3, "lines": [40, 41, 300]},
        {"file": WS, "reason": "not_json", "count": 3, "lines": [5, 150, 151]},
    ]
    assert manifest["input_problems"]["skipped"] == expected
    assert manifest["input_problems"]["truncated_inputs"] == []
    assert run.stderr == [_skipped_message(item["file"], item["reason"], item["lines"]) for item in expected]
    _assert_clean_run(run, manifest, clean, clean_manifest)
    # rows with a mistyped time are still websocket messages, and so are lines that are JSON but
    # not objects (the reference counts every line it parses); lines that are not JSON are not
    counts = manifest["row_counts"]
    assert counts["raw_websocket_messages"] == clean_manifest["row_counts"]["raw_websocket_messages"] + 2 + 3
    counts["raw_websocket_messages"] -= 2 + 3
    _assert_equal_manifests(clean_manifest, manifest, {WS})
    assert _same_report(report, clean_report)
    _assert_reference_agrees(workdir / "clean", flags)


def test_rows_with_a_mistyped_time_count_as_websocket_messages_as_the_reference_counts_them(
        workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    """The reference reads a row's time only for events of a token it explains: elsewhere such a
    row is counted and runs on; streamer skips its events, reports it, and counts it the same."""
    ws, rest = capture
    other = {"event_type": "last_trade_price", "asset_id": "999", "market": "0xother", "price": "0.5"}
    bad = {
        7: json.dumps({"received_at_utc": 12345, "global_message_sequence": 0, "json": None, "text": "PONG"}).encode(),
        60: json.dumps({"received_at_utc": True, "global_message_sequence": 0, "json": other}).encode(),
        61: json.dumps({"received_at_utc": 1.5, "json": [other]}).encode(),
    }
    bad_ws, clean_ws = _insert(ws, bad)
    flags = _setup(workdir / "clean", clean_ws, rest)
    _setup(workdir / "bad", bad_ws, rest, rows=_rows(workdir / "clean"))
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, _ = _analyze(run_cli, workdir / "bad", flags)
    assert manifest["input_problems"]["skipped"] == [
        {"file": WS, "reason": "mistyped_received_at_utc", "count": 3, "lines": [7, 60, 61]}]
    assert manifest["row_counts"]["raw_websocket_messages"] == clean_manifest["row_counts"]["raw_websocket_messages"] + 3
    _assert_clean_run(run, manifest, clean, clean_manifest)
    _assert_reference_agrees(workdir / "bad", flags)
    with contextlib.chdir(workdir / "bad"):  # reconstruct and run count them the same
        for command, flag in (("reconstruct", "--output-manifest"), ("run", "--manifest-10c")):
            done = run_cli(command, "--manifest-10b", MANIFEST_10B, "--output-rows", f"{command}/rows.jsonl.gz",
                           flag, f"{command}/10c.json", *(["--output-manifest", f"{command}/10d0.json",
                                                            "--output-report", f"{command}/10d0.md"]
                                                           if command == "run" else []))
            assert done.code in (0, 1)
            written = json.loads(Path(f"{command}/10c.json").read_text())
            assert written["row_counts"]["raw_websocket_messages"] == manifest["row_counts"]["raw_websocket_messages"]
        ran = json.loads(Path("run/10d0.json").read_text())
        assert ran["row_counts"]["raw_websocket_messages"] == manifest["row_counts"]["raw_websocket_messages"]


def test_malformed_rest_lines(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    ws, rest = capture
    bad_rest, clean_rest = _insert(rest, {1: b"oops", 3: b"[1]", 4: b"42", 6: b'{"json": [1'})
    flags = _setup(workdir / "clean", ws, clean_rest)
    _setup(workdir / "bad", ws, bad_rest, rows=_rows(workdir / "clean"))
    clean, clean_manifest, clean_report = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, report = _analyze(run_cli, workdir / "bad", flags)

    expected = [
        {"file": REST, "reason": "not_an_object", "count": 2, "lines": [3, 4]},
        {"file": REST, "reason": "not_json", "count": 2, "lines": [1, 6]},
    ]
    assert manifest["input_problems"]["skipped"] == expected
    assert run.stderr == [_skipped_message(item["file"], item["reason"], item["lines"]) for item in expected]
    _assert_clean_run(run, manifest, clean, clean_manifest)
    # the two JSON lines that are not objects count, as the reference counts them ("[1]", "42")
    assert manifest["row_counts"]["rest_checkpoints"] == len([line for line in rest if line.strip()]) + 2
    manifest["row_counts"]["rest_checkpoints"] -= 2
    _assert_equal_manifests(clean_manifest, manifest, {REST})
    assert _same_report(report, clean_report)
    _assert_reference_agrees(workdir / "clean", flags)


@pytest.mark.parametrize("kind", ["rest", "ws-no-token-named"])
def test_json_lines_that_are_not_objects_count_as_the_reference_counts_them(
        workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]], kind: str) -> None:
    """The reference counts every line it parses: a REST line is never read further, and a
    websocket line only for a token some comparison row names, so there it takes "[1]" and "null"
    as rows (before: streamer's counts were short by them)."""
    ws, rest = capture
    extra = {2: b"[1]", 5: b"null", 9: b'"text"'}
    if kind == "rest":
        rest, _ = _insert(rest, extra)
    else:
        ws, _ = _insert(ws, extra)
    flags = _setup(workdir / "case", ws, rest)
    if kind != "rest":  # no comparison row names a token: the reference reads no websocket row further
        refcompare.write_jsonl_gz(workdir / "case" / COMPARISON,
                                  [dict(row, token_id="") for row in _rows(workdir / "case")])
    run, manifest, _ = _analyze(run_cli, workdir / "case", flags)
    counted = "rest_checkpoints" if kind == "rest" else "raw_websocket_messages"
    lines = rest if kind == "rest" else ws
    assert manifest["row_counts"][counted] == len([line for line in lines if line.strip()])
    assert manifest["input_problems"]["skipped"][0]["reason"] == "not_an_object"
    _assert_reference_agrees(workdir / "case", flags)


def test_skipped_locations_are_capped(workdir: Path, run_cli: RunCli,
                                      capture: tuple[list[bytes], list[bytes]]) -> None:
    """The count is complete; the manifest and stderr list the first 20 lines of each file and reason."""
    ws, rest = capture
    bad_ws, clean_ws = _insert(ws, {number: b"garbage" for number in range(10, 310, 10)})
    flags = _setup(workdir / "clean", clean_ws, rest)
    _setup(workdir / "bad", bad_ws, rest, rows=_rows(workdir / "clean"))
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, _ = _analyze(run_cli, workdir / "bad", flags)
    first = list(range(10, 210, 10))
    assert manifest["input_problems"]["skipped"] == [{"file": WS, "reason": "not_json", "count": 30, "lines": first}]
    assert run.stderr == [f"streamer: skipped 30 line(s) of {WS}: not_json; lines (first 20) "
                          + ", ".join(str(line) for line in first)]
    _assert_clean_run(run, manifest, clean, clean_manifest)
    _assert_equal_manifests(clean_manifest, manifest, {WS})


MISTYPED_ROWS = {
    "market": {"market": 5},
    "market_list": {"market": [1]},
    "bid_diff": {"bid_top_n_diff": [1]},
    "ask_diff": {"ask_top_n_diff": "abc"},
    "missing_prices": {"bid_top_n_diff": {"missing_prices": 5}},
    "last_line": {"last_applied_ws_line": "x"},
    "last_line_list": {"last_applied_ws_line": [3]},
    "checkpoint_time": {"rest_checkpoint_received_at_utc": 5},
}


def test_malformed_comparison_lines(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    """Lines that are not JSON objects are skipped and not counted as comparison rows."""
    ws, rest = capture
    flags = _setup(workdir / "clean", ws, rest)
    rows = [json.dumps(json.loads(line)).encode() for line in _gunzip_lines(workdir / "clean" / COMPARISON)]
    bad_rows, clean_rows = _insert(rows, {2: b"not json", 5: b"[1]", 6: b"null", len(rows) + 3: b"{"})
    refcompare.write_jsonl_gz(workdir / "clean" / COMPARISON, [], raw_lines=clean_rows)
    _setup(workdir / "bad", ws, rest, comparison=bad_rows)
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, _ = _analyze(run_cli, workdir / "bad", flags)

    expected = [
        {"file": COMPARISON, "reason": "not_an_object", "count": 2, "lines": [5, 6]},
        {"file": COMPARISON, "reason": "not_json", "count": 2, "lines": [2, len(rows) + 3]},
    ]
    assert manifest["input_problems"]["skipped"] == expected
    assert run.stderr == [_skipped_message(item["file"], item["reason"], item["lines"]) for item in expected]
    # rows that could not be read may have been divergent: the gate cannot pass; all else is equal
    assert (run.code, manifest["gate_status"]) == (1, "BLOCKED_WS_DIVERGENCE_UNEXPLAINED")
    manifest["gate_status"] = clean_manifest["gate_status"]
    _assert_equal_manifests(clean_manifest, manifest, {COMPARISON})
    _assert_reference_agrees(workdir / "clean", flags)


@pytest.mark.parametrize("damage", ["zstd", "cut-gzip"])
def test_comparison_rows_nobody_could_read_block_the_gate(workdir: Path, run_cli: RunCli,
                                                        capture: tuple[list[bytes], list[bytes]], damage: str) -> None:
    """A comparison file of another compression (every line not JSON), or one cut short: before,
    no row was read, or some were lost, and the gate said PASS, exit 0."""
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    path = workdir / "case" / COMPARISON
    rows = [json.loads(line) for line in _gunzip_lines(path) if line.strip()]
    clean_rows = [row for row in rows if row["comparison_status"] != "divergent"]
    refcompare.write_jsonl_gz(path, clean_rows)
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "case", flags)
    assert (clean.code, clean_manifest["gate_status"]) == (0, "WS_DIVERGENCE_ANALYSIS_PASS")
    data = path.read_bytes()
    if damage == "zstd":  # (a zstd frame: magic, then bytes that are no JSON)
        path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(1, 200)) + b"\n" + bytes(range(200, 256)))
    else:
        path.write_bytes(data[:len(data) // 2])
    run, manifest, report = _analyze(run_cli, workdir / "case", flags)
    assert (run.code, manifest["gate_status"]) == (1, "BLOCKED_WS_DIVERGENCE_UNEXPLAINED")
    assert "Some comparison rows could not be read" in report
    problems = manifest["input_problems"]
    assert problems["skipped"] if damage == "zstd" else problems["truncated_inputs"]


@pytest.mark.parametrize("name", sorted(MISTYPED_ROWS))
def test_mistyped_divergent_comparison_row(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                                           name: str) -> None:
    """A divergent row the reference could not use is skipped, but counted as a (divergent) comparison row."""
    ws, rest = capture
    flags = _setup(workdir / "clean", ws, rest)
    rows = _rows(workdir / "clean")
    divergent = [index for index, row in enumerate(rows) if row["comparison_status"] == "divergent"]
    assert len(divergent) >= 3
    target = divergent[1]
    mistyped = dict(rows[target], **MISTYPED_ROWS[name])
    lines = [json.dumps(row).encode() for row in rows]
    bad_lines = lines[:target] + [json.dumps(mistyped).encode()] + lines[target + 1:]
    clean_lines = lines[:target] + [b""] + lines[target + 1:]
    refcompare.write_jsonl_gz(workdir / "clean" / COMPARISON, [], raw_lines=clean_lines)
    _setup(workdir / "bad", ws, rest, comparison=bad_lines)
    clean, clean_manifest, clean_report = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, report = _analyze(run_cli, workdir / "bad", flags)

    skipped = manifest["input_problems"]["skipped"]
    assert [(item["file"], item["count"], item["lines"]) for item in skipped] == [(COMPARISON, 1, [target + 1])]
    assert skipped[0]["reason"].startswith("mistyped_comparison_field")
    assert run.stderr == [_skipped_message(COMPARISON, skipped[0]["reason"], [target + 1])]
    assert run.code == clean.code == 1  # (the capture's other rows block it too)
    assert run.stdout == clean.stdout
    assert "1 more divergent row was not analysed" in report
    # Everything equals the blanked run, except that the row counts as a divergent comparison row.
    expected = json.loads(json.dumps(clean_manifest))
    expected["row_counts"]["comparison_rows"] += 1
    expected["row_counts"]["divergent_rows"] += 1
    expected["comparison_status_counts"]["divergent"] += 1
    _assert_equal_manifests(expected, manifest, {COMPARISON})
    counts_line = f"- Comparison status counts: `{json.dumps(expected['comparison_status_counts'], sort_keys=True)}`."
    assert counts_line in report.split("\n")
    assert refcompare.report_comparable(report) == [
        counts_line if line.startswith("- Comparison status counts:") else line
        for line in refcompare.report_comparable(clean_report)]
    _assert_reference_agrees(workdir / "clean", flags)


@pytest.mark.parametrize("name", ["market", "last_line"])
def test_an_unanalysed_divergent_row_blocks_the_gate(workdir: Path, run_cli: RunCli,
                                                    capture: tuple[list[bytes], list[bytes]], name: str) -> None:
    """Skipped as unusable, a divergent row is a divergence nobody explained: the gate cannot pass
    (before: the only divergent row skipped, and the gate said PASS, exit 0)."""
    ws, rest = capture
    flags = _setup(workdir / "clean", ws, rest)
    rows = [row for row in _rows(workdir / "clean") if row["comparison_status"] != "divergent"]
    divergent = next(row for row in _rows(workdir / "clean") if row["comparison_status"] == "divergent")
    lines = [json.dumps(row).encode() for row in rows]
    refcompare.write_jsonl_gz(workdir / "clean" / COMPARISON, [], raw_lines=lines)
    _setup(workdir / "bad", ws, rest, comparison=lines + [json.dumps(dict(divergent, **MISTYPED_ROWS[name])).encode()])
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, report = _analyze(run_cli, workdir / "bad", flags)
    assert (clean.code, clean_manifest["gate_status"]) == (0, "WS_DIVERGENCE_ANALYSIS_PASS")
    assert (run.code, manifest["gate_status"]) == (1, "BLOCKED_WS_DIVERGENCE_UNEXPLAINED")
    assert run.stdout[-1] == "DIVERGENCE_ANALYSIS_GATE=BLOCKED_WS_DIVERGENCE_UNEXPLAINED"
    assert manifest["divergence_rows"] == [] and manifest["row_counts"]["divergent_rows"] == 1
    assert "1 divergent row was not analysed: fields of the wrong type" in report


# ---------------------------------------------------------------------------------------------
# a websocket gzip still being written (no trailer): the complete lines before the cut


def _complete_prefix(data: bytes) -> list[bytes]:
    """The complete lines a truncated gzip stream holds (zlib decodes as far as it can)."""
    text = zlib.decompressobj(31).decompress(data)
    return text[: text.rfind(b"\n") + 1].split(b"\n")[:-1]


@pytest.mark.parametrize("cut", ["header", "middle", "trailer"])
def test_truncated_websocket_gzip(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                                  cut: str) -> None:
    ws, rest = capture
    refcompare.write_jsonl_gz(workdir / "whole.gz", [], raw_lines=ws)
    data = (workdir / "whole.gz").read_bytes()
    at = {"header": 12, "middle": len(data) // 2, "trailer": len(data) - 3}[cut]
    prefix = _complete_prefix(data[:at])
    assert len(prefix) == {"header": 0, "middle": len(prefix), "trailer": len(ws)}[cut]
    assert 0 < len(prefix) < len(ws) or cut != "middle"
    flags = _setup(workdir / "clean", prefix, rest)
    _setup(workdir / "bad", ws, rest, rows=_rows(workdir / "clean"))
    (workdir / "bad" / WS).write_bytes(data[:at])
    clean, clean_manifest, _ = _analyze(run_cli, workdir / "clean", flags)
    run, manifest, _ = _analyze(run_cli, workdir / "bad", flags)

    assert manifest["row_counts"]["raw_websocket_messages"] == len([line for line in prefix if line.strip()])
    truncated = manifest["input_problems"]["truncated_inputs"]
    assert [item["file"] for item in truncated] == [WS]
    assert truncated[0]["reason"]
    assert len(run.stderr) == 1 and run.stderr[0].startswith(f"streamer: {WS}: ")
    _assert_clean_run(run, manifest, clean, clean_manifest)
    _assert_equal_manifests(clean_manifest, manifest, {WS})
    _assert_reference_agrees(workdir / "clean", flags)


def test_corrupt_websocket_gzip(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    """Garbage in the middle of the deflate stream: the run goes on and reports the file.

    The lines before the damage are kept (the stream is inflated in small slices); what the
    damaged stretch inflates to before the error is caught is skipped and reported as not JSON.
    """
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    path = workdir / "case" / WS
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(range(64))
    path.write_bytes(bytes(data))
    run, manifest, _ = _analyze(run_cli, workdir / "case", flags)
    assert run.code in (0, 1)
    assert run.stdout == _stdout(manifest["gate_status"])
    assert [item["file"] for item in manifest["input_problems"]["truncated_inputs"]] == [WS]
    assert run.stderr[-1].startswith(f"streamer: {WS}: corrupt gzip data")
    assert all(line.startswith("streamer: skipped ") and "not_json" in line for line in run.stderr[:-1])
    kept = manifest["row_counts"]["raw_websocket_messages"]
    assert 0 < kept < len(ws)  # the lines before the damage are used


# ---------------------------------------------------------------------------------------------
# unusable inputs: one line, exit 2, nothing written


def _assert_input_error(root: Path, run: CliRun, *names: str) -> None:
    assert run.code == 2
    assert run.stdout == []
    assert len(run.stderr) == 1, run.stderr
    assert run.stderr[0].startswith("streamer analyze: error: ")
    assert "Traceback" not in run.stderr[0]
    for name in names:
        assert name in run.stderr[0]
    assert not (root / "out").exists() or not any((root / "out").iterdir())


@pytest.mark.parametrize("kind", ["ws", "rest", "comparison"])
def test_missing_input_file(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                            kind: str) -> None:
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    missing = {"ws": WS, "rest": REST, "comparison": COMPARISON}[kind]
    (workdir / "case" / missing).unlink()
    run, manifest, report = _analyze(run_cli, workdir / "case", flags)
    _assert_input_error(workdir / "case", run, missing)
    assert manifest is None and report is None
    # the manifest's relative path: the error says what it was taken relative to
    assert run.stderr[0].endswith(f": No such file or directory (a manifest names it relative to the "
                                  f"working directory, {workdir / 'case'})"), run.stderr


def test_input_vanishing_after_its_check(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An input deleted between its readability check and the read (made certain by skipping the
    check) is an input error naming it, with no work directory left behind."""
    from streamer import batch

    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    (workdir / "case" / REST).unlink()
    monkeypatch.setattr(batch, "check_readable", lambda path, name: None)
    run, manifest, report = _analyze(run_cli, workdir / "case", flags)
    _assert_input_error(workdir / "case", run, REST)
    assert manifest is None and report is None
    assert not [path for path in (workdir / "case").rglob(".streamer-work-*")]


MANIFEST_FLAGS = ("--manifest-10b", "--manifest-10c", "--manifest-10bc", "--orchestrator-review")


@pytest.mark.parametrize("problem", ["nonexistent", "directory", "invalid_json", "json_list", "empty"])
@pytest.mark.parametrize("flag", MANIFEST_FLAGS)
def test_unreadable_manifest(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                             flag: str, problem: str) -> None:
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    path = workdir / "case" / flags[flag]
    path.unlink()
    if problem == "directory":
        path.mkdir()
    elif problem == "invalid_json":
        path.write_text('{"gate_status": "PASS", ')
    elif problem == "json_list":
        path.write_text('[{"gate_status": "PASS"}]')
    elif problem == "empty":
        path.write_text("")
    run, manifest, report = _analyze(run_cli, workdir / "case", flags)
    _assert_input_error(workdir / "case", run, flags[flag])
    assert manifest is None and report is None


@pytest.mark.parametrize("manifest", ["10b_no_ws", "10c_no_comparison", "10b_ws_without_path", "10b_files_not_a_list",
                                      "10c_path_not_a_string"])
def test_manifest_naming_no_usable_input(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                                         manifest: str) -> None:
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    flag = "--manifest-10b" if manifest.startswith("10b") else "--manifest-10c"
    path = workdir / "case" / flags[flag]
    value = json.loads(path.read_text())
    files = value["output_files"]
    if manifest in ("10b_no_ws", "10c_no_comparison"):
        value["output_files"] = [item for item in files if item["kind"] == "rest_books_checkpoints"]
    elif manifest == "10b_ws_without_path":
        del files[0]["path"]
    elif manifest == "10b_files_not_a_list":
        value["output_files"] = {"path": WS, "kind": "raw_websocket_messages"}
    else:
        files[0]["path"] = 5
    path.write_text(json.dumps(value))
    run, _, _ = _analyze(run_cli, workdir / "case", flags)
    _assert_input_error(workdir / "case", run, flags[flag])


def test_negative_context_limit(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]]) -> None:
    ws, rest = capture
    flags = _setup(workdir / "case", ws, rest)
    run, manifest, report = _analyze(run_cli, workdir / "case", flags, "--context-limit", "-1")
    _assert_input_error(workdir / "case", run, "--context-limit")
    assert manifest is None and report is None


# ---------------------------------------------------------------------------------------------
# gzip or plain by content; multi-member gzip


def _members(lines: list[bytes], cuts: list[int]) -> bytes:
    """The lines' text as gzip members split at byte offsets ``cuts`` (inside lines too)."""
    text = b"".join(line + b"\n" for line in lines)
    bounds = [0, *cuts, len(text)]
    return b"".join(gzip.compress(text[a:b], mtime=0) for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("form", ["plain", "gzip_named_jsonl", "multi_member", "plain_crlf"])
def test_input_forms_decided_by_content(workdir: Path, run_cli: RunCli, capture: tuple[list[bytes], list[bytes]],
                                        form: str) -> None:
    ws, rest = capture
    flags = _setup(workdir / "gzip", ws, rest)
    comparison = _gunzip_lines(workdir / "gzip" / COMPARISON)
    _setup(workdir / form, ws, rest, rows=[])
    root = workdir / form
    renamed: dict[str, str] = {}
    for name, lines in ((WS, ws), (REST, rest), (COMPARISON, comparison)):
        target = name.removesuffix(".gz") if form != "multi_member" else name
        renamed[name] = target
        (root / name).unlink()
        if form == "plain":
            data = b"".join(line + b"\n" for line in lines)
        elif form == "plain_crlf":
            data = b"".join(line + b"\r\n" for line in lines)
        elif form == "gzip_named_jsonl":
            data = gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)
        else:
            text_length = sum(len(line) + 1 for line in lines)
            data = _members(lines, [text_length // 3, text_length // 3 + 1, 2 * text_length // 3])
        (root / target).write_bytes(data)
    for manifest_name in (MANIFEST_10B, flags["--manifest-10c"]):
        text = (root / manifest_name).read_text()
        for name, target in renamed.items():
            text = text.replace(f'"{name}"', f'"{target}"')
        (root / manifest_name).write_text(text)
    expected, expected_manifest, _ = _analyze(run_cli, workdir / "gzip", flags)
    run, manifest, _ = _analyze(run_cli, root, flags)
    assert run.stderr == []
    assert manifest["input_problems"]["skipped"] == []
    assert manifest["input_problems"]["truncated_inputs"] == []
    assert run.code == expected.code
    assert run.stdout == expected.stdout
    # Rename back the paths that differ by name only, then everything else is equal.
    text = json.dumps(manifest)
    for name, target in renamed.items():
        text = text.replace(f'"{target}"', f'"{name}"')
    _assert_equal_manifests(expected_manifest, json.loads(text), {WS, REST, COMPARISON, MANIFEST_10B,
                                                                  flags["--manifest-10c"]})
    if form in ("gzip_named_jsonl", "multi_member"):  # the reference reads these too
        _assert_reference_agrees(root, flags)
