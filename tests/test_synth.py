"""Tests of the synthetic capture generator (streamer.synth)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streamer.synth import Capture, CaptureShape, generate_capture, main

TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
PRICE_RE = re.compile(r"0\.\d\d?")
SIZE_RE = re.compile(r"\d+(\.\d\d?)?")

NOISY = CaptureShape(
    ws_lines=3000,
    ws_files=3,
    rest_files=2,
    rest_interval_seconds=2.0,
    legacy_price_change_fraction=0.2,
    pong_rate=0.03,
    empty_frame_rate=0.02,
    reconnect_every=900,
    book_without_event_type_rate=0.3,
    duplicate_rate=0.03,
    blank_line_rate=0.02,
    rest_error_rate=0.1,
    trade_rate=0.02,
    unlisted_token_rate=0.3,
)


def physical_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1] if text else []


def ws_rows(capture: Capture) -> list[dict[str, Any]]:
    return [json.loads(line) for path in capture.ws_files for line in physical_lines(path) if line.strip()]


def rest_rows(capture: Capture) -> list[dict[str, Any]]:
    return [json.loads(line) for path in capture.rest_files for line in physical_lines(path)]


def items(row: dict[str, Any]) -> list[dict[str, Any]]:
    payload = row.get("json")
    return payload if isinstance(payload, list) else [payload] if isinstance(payload, dict) else []


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    return generate_capture(tmp_path_factory.mktemp("noisy"), NOISY, seed=7)


def test_generate_is_deterministic(tmp_path: Path) -> None:
    shape = CaptureShape(ws_lines=800, ws_files=2, rest_interval_seconds=2.0)
    a = generate_capture(tmp_path / "a", shape, seed=11, path_base=tmp_path / "a")
    b = generate_capture(tmp_path / "b", shape, seed=11, path_base=tmp_path / "b")
    c = generate_capture(tmp_path / "c", shape, seed=12, path_base=tmp_path / "c")
    for name in ("manifest_10b.json", "ws-000.jsonl.gz", "ws-001.jsonl.gz", "rest-000.jsonl.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.token_ids == b.token_ids != c.token_ids
    assert a.ws_files[0].read_bytes() != c.ws_files[0].read_bytes()


def test_manifest_names_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shape = CaptureShape(ws_lines=600, ws_files=3, rest_files=2, rest_interval_seconds=1.0)
    capture = generate_capture(Path("out"), shape, seed=1, path_base=Path.cwd())
    manifest = json.loads(capture.manifest_10b.read_text())
    assert manifest["schema_name"] == "checkpoint_010b_ws_raw_sample"
    assert manifest["gate_status"] == "WS_RAW_SAMPLE_PASS"
    assert manifest["output_files"] == (
        [{"path": f"out/ws-00{i}.jsonl.gz", "kind": "raw_websocket_messages"} for i in range(3)]
        + [{"path": f"out/rest-00{i}.jsonl.gz", "kind": "rest_books_checkpoints"} for i in range(2)]
    )
    for entry in manifest["output_files"]:
        assert Path(entry["path"]).is_file()
    assert len(manifest["markets"]) == 3
    tokens = []
    for market in manifest["markets"]:
        assert re.fullmatch(r"0x[0-9a-f]{64}", market["condition_id"])
        assert market["market_slug"] and market["question"]
        assert [t["outcome"] for t in market["tokens"]] == ["Yes", "No"]
        tokens += [t["token_id"] for t in market["tokens"]]
    assert tokens == capture.token_ids
    assert all(re.fullmatch(r"\d{77}", t) for t in tokens)


def test_manifest_paths_without_path_base_are_as_given(tmp_path: Path) -> None:
    capture = generate_capture(tmp_path, CaptureShape(ws_lines=100, gzip=False), seed=1)
    manifest = json.loads(capture.manifest_10b.read_text())
    assert [f["path"] for f in manifest["output_files"]] == [str(tmp_path / "ws-000.jsonl"), str(tmp_path / "rest-000.jsonl")]


def test_line_counts(noisy: Capture) -> None:
    counts = [len(physical_lines(p)) for p in noisy.ws_files]
    assert sum(counts) == noisy.ws_lines == NOISY.ws_lines
    assert counts == [1000, 1000, 1000]
    rest_counts = [len(physical_lines(p)) for p in noisy.rest_files]
    assert sum(rest_counts) == noisy.rest_lines
    assert all(rest_counts)
    # REST checkpoints cover the capture: about one per interval of websocket time.
    rows = ws_rows(noisy)
    first, last = (datetime.fromisoformat(rows[i]["received_at_utc"][:-1]) for i in (0, -1))
    assert rows[0]["received_at_utc"] == "2026-04-19T17:00:00.000000Z"
    whole_intervals = int((last - first).total_seconds() // NOISY.rest_interval_seconds)
    assert noisy.rest_lines in (whole_intervals - 1, whole_intervals)


def test_websocket_rows_have_recorder_format(noisy: Capture) -> None:
    blank = 0
    sequence = 0
    for path in noisy.ws_files:
        for line in physical_lines(path):
            if not line.strip():
                blank += 1
                continue
            row = json.loads(line)
            sequence += 1
            assert TIME_RE.fullmatch(row["received_at_utc"])
            assert row["global_message_sequence"] == sequence
            if row["json"] is None:
                assert list(row) == ["received_at_utc", "global_message_sequence", "json", "text"]
                assert row["text"] == "PONG"
            else:
                assert list(row) == ["received_at_utc", "global_message_sequence", "json"]
                assert isinstance(row["json"], (dict, list))
    assert blank > 0
    assert sequence + blank == noisy.ws_lines


def test_configured_frames_appear(noisy: Capture) -> None:
    rows = ws_rows(noisy)
    kinds: dict[str, int] = {}

    def seen(kind: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1

    previous = None
    for row in rows:
        payload = row["json"]
        if row.get("text") == "PONG":
            seen("pong")
        elif payload == []:
            seen("empty")
        elif isinstance(payload, list):
            seen("subscription")
        if payload is not None and payload == previous:
            seen("duplicate")
        previous = payload
        for item in items(row):
            event = item.get("event_type")
            if event is None and {"asset_id", "bids", "asks"} <= item.keys():
                seen("book_without_event_type")
            elif event == "price_change":
                seen("legacy" if "changes" in item else "price_change")
            else:
                seen(str(event))
    for kind in ("pong", "empty", "subscription", "duplicate", "book_without_event_type", "legacy",
                 "price_change", "book", "last_trade_price", "best_bid_ask", "tick_size_change", "new_market"):
        assert kinds.get(kind, 0) > 0, (kind, kinds)
    assert kinds["subscription"] >= 3  # at start, then every reconnect_every lines


def test_rates_off_means_no_such_frames(tmp_path: Path) -> None:
    shape = CaptureShape(ws_lines=1500, pong_rate=0, empty_frame_rate=0, extra_event_rate=0, drop_rate=0)
    capture = generate_capture(tmp_path, shape, seed=3)
    lines = [line for p in capture.ws_files for line in physical_lines(p)]
    assert all(line.strip() for line in lines)
    rows = [json.loads(line) for line in lines]
    assert all(row["json"] not in (None, []) for row in rows)
    for row in rows:
        for item in items(row):
            assert item["event_type"] in ("book", "price_change", "last_trade_price")
            if item["event_type"] == "price_change":
                assert "price_changes" in item and "changes" not in item


def test_receive_times_non_decreasing(noisy: Capture) -> None:
    times = [row["received_at_utc"] for row in ws_rows(noisy)]
    assert times == sorted(times)
    rest_times = [row["received_at_utc"] for row in rest_rows(noisy)]
    assert rest_times == sorted(rest_times)
    assert times[0] <= rest_times[0] and rest_times[-1] <= times[-1]
    assert [row["checkpoint_sequence"] for row in rest_rows(noisy)] == list(range(1, noisy.rest_lines + 1))


def mirror(levels: list[dict[str, str]]) -> list[tuple[Decimal, str]]:
    return sorted((1 - Decimal(level["price"]), level["size"]) for level in levels)


def test_opening_array_is_mirrored(noisy: Capture) -> None:
    opening = ws_rows(noisy)[0]["json"]
    assert isinstance(opening, list) and len(opening) == len(noisy.token_ids)
    assert [book["asset_id"] for book in opening] == noisy.token_ids
    for yes, no in zip(opening[0::2], opening[1::2]):
        assert yes["market"] == no["market"]
        assert mirror(yes["asks"]) == sorted((Decimal(l["price"]), l["size"]) for l in no["bids"])
        assert mirror(yes["bids"]) == sorted((Decimal(l["price"]), l["size"]) for l in no["asks"])
        assert 20 <= len(yes["bids"]) <= 30 and 20 <= len(yes["asks"]) <= 30
        assert max(Decimal(l["price"]) for l in yes["bids"]) < min(Decimal(l["price"]) for l in yes["asks"])


def test_price_change_entries_are_mirrored_pairs(noisy: Capture) -> None:
    count = 0
    for row in ws_rows(noisy):
        for item in items(row):
            if item.get("event_type") != "price_change" or "price_changes" not in item:
                continue
            a, b = item["price_changes"]
            assert a["asset_id"] != b["asset_id"]
            assert Decimal(a["price"]) + Decimal(b["price"]) == 1
            assert a["size"] == b["size"]
            assert {a["side"], b["side"]} == {"BUY", "SELL"}
            assert Decimal(a["best_bid"]) + Decimal(b["best_ask"]) == 1
            assert re.fullmatch(r"[0-9a-f]{40}", a["hash"])
            assert item["timestamp"].isdigit()
            count += 1
    assert count > 1000


def test_rest_summaries(noisy: Capture) -> None:
    rows = rest_rows(noisy)
    errors = [row for row in rows if row["http_status"] != 200]
    assert errors and all(row["http_status"] == 404 and "error" in row["json"] for row in errors)
    unlisted = 0
    for row in rows:
        assert list(row) == ["checkpoint_sequence", "received_at_utc", "request", "http_status", "json"]
        assert TIME_RE.fullmatch(row["received_at_utc"])
        assert row["request"]["endpoint"] == "POST /books"
        if row["http_status"] != 200:
            continue
        assert [s["asset_id"] for s in row["json"]] == row["request"]["token_ids"]
        assert [s["asset_id"] for s in row["json"]][: len(noisy.token_ids)] == noisy.token_ids
        unlisted += len(row["json"]) - len(noisy.token_ids)
        for summary in row["json"]:
            assert list(summary) == ["market", "asset_id", "timestamp", "hash", "bids", "asks", "min_order_size",
                                     "tick_size", "neg_risk", "last_trade_price"]
            bids = [Decimal(l["price"]) for l in summary["bids"]]
            asks = [Decimal(l["price"]) for l in summary["asks"]]
            assert bids == sorted(bids) and len(set(bids)) == len(bids)
            assert asks == sorted(asks, reverse=True) and len(set(asks)) == len(asks)
            assert bids[-1] < asks[-1]
            for level in summary["bids"] + summary["asks"]:
                assert PRICE_RE.fullmatch(level["price"]) and Decimal("0.01") <= Decimal(level["price"]) <= Decimal("0.99")
                assert SIZE_RE.fullmatch(level["size"]) and Decimal(level["size"]) > 0
    assert unlisted > 0


def test_plain_output(tmp_path: Path) -> None:
    capture = generate_capture(tmp_path, CaptureShape(ws_lines=300, gzip=False, rest_interval_seconds=1.0), seed=2)
    assert [p.name for p in capture.ws_files + capture.rest_files] == ["ws-000.jsonl", "rest-000.jsonl"]
    for path in capture.ws_files + capture.rest_files:
        assert path.read_bytes()[:1] == b"{"


def test_gzip_header_has_no_mtime_or_name(tmp_path: Path) -> None:
    capture = generate_capture(tmp_path, CaptureShape(ws_lines=50), seed=2)
    header = capture.ws_files[0].read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0" and not header[3] & 0x08


def test_short_capture_still_creates_every_file(tmp_path: Path) -> None:
    capture = generate_capture(tmp_path, CaptureShape(ws_lines=3, ws_files=5, rest_files=3), seed=2)
    assert all(p.is_file() for p in capture.ws_files + capture.rest_files)
    assert sum(len(physical_lines(p)) for p in capture.ws_files) == 3
    assert capture.rest_lines == 0


@pytest.mark.parametrize("change", [{"markets": 0}, {"ws_files": 0}, {"messages_per_second": 0}, {"rest_lag_ms": (5, 1)}])
def test_bad_shape_is_rejected(tmp_path: Path, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_capture(tmp_path, dataclasses.replace(CaptureShape(), **change), seed=0)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main([str(out), "--ws-lines", "400", "--markets", "2", "--seed", "5", "--ws-files", "2", "--no-gzip",
                 "--rest-lag-ms", "0", "0", "--drop-rate", "0.01"])
    assert code == 0
    assert capsys.readouterr().out == f"{out / 'manifest_10b.json'}\n"
    manifest = json.loads((out / "manifest_10b.json").read_text())
    assert [f["path"] for f in manifest["output_files"]] == [str(out / n) for n in ("ws-000.jsonl", "ws-001.jsonl", "rest-000.jsonl")]
    assert len(manifest["markets"]) == 2
    same = generate_capture(tmp_path / "api", CaptureShape(markets=2, ws_lines=400, ws_files=2, gzip=False,
                                                           rest_lag_ms=(0, 0), drop_rate=0.01), seed=5)
    assert same.ws_files[1].read_bytes() == (out / "ws-001.jsonl").read_bytes()


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """Make the generator raise KeyboardInterrupt (a Ctrl-C) when it is about to write row ``rows``."""
    from streamer import synth
    original = synth._Generator._ws_row
    written = 0

    def ws_row(self: Any, t_us: int, payload: bytes | None) -> None:
        nonlocal written
        written += 1
        if written == rows:
            raise KeyboardInterrupt
        original(self, t_us, payload)

    monkeypatch.setattr(synth._Generator, "_ws_row", ws_row)


def test_interrupted_generation_leaves_no_partial_file_under_a_capture_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = CaptureShape(ws_lines=1200, ws_files=3, rest_interval_seconds=1.0)
    earlier = generate_capture(tmp_path, shape, seed=3)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    _interrupt_after(monkeypatch, 1000)  # in the third websocket file: two were finished and renamed
    with pytest.raises(KeyboardInterrupt):
        generate_capture(tmp_path, shape, seed=4)
    names = sorted(path.name for path in tmp_path.iterdir())
    # no manifest names the mix of files, no temp file is left, every file is a finished one
    assert names == sorted(set(before) - {"manifest_10b.json"}), names
    for path in earlier.ws_files + earlier.rest_files:
        data = path.read_bytes()
        assert gzip.decompress(data).endswith(b"\n")  # a whole gzip stream, its last line complete
    assert earlier.ws_files[2].read_bytes() == before["ws-002.jsonl.gz"]  # the unfinished one kept the old
    assert earlier.ws_files[0].read_bytes() != before["ws-000.jsonl.gz"]  # (seed 4's, finished)


def test_a_write_that_fails_while_closing_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk shows when the last bytes are written (the gzip trailer, at close)."""
    from streamer import synth
    original = synth._LineWriter.close
    closes = 0

    def close(self: Any) -> None:
        nonlocal closes
        closes += 1
        if closes == 2:
            raise OSError(28, "No space left on device")
        original(self)

    monkeypatch.setattr(synth._LineWriter, "close", close)
    with pytest.raises(OSError):
        generate_capture(tmp_path, CaptureShape(ws_lines=300, ws_files=2), seed=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ws-000.jsonl.gz"]  # finished before the failure
