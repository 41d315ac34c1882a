"""Tests of the test oracle (tests/oracle.py) on hand-built captures, and a cross-check with streamer.synth."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamer.synth import CaptureShape, generate_capture
from tests.oracle import reconstruct

YES = "1111"
NO = "2222"
OTHER = "9999"
CID = "0x" + "ab" * 32
MARKET = {"market_slug": "will-it", "condition_id": CID, "outcome": "Yes"}

ROW_KEYS = [
    "comparison_status", "token_id", "market", "rest_checkpoint_sequence", "rest_checkpoint_received_at_utc",
    "rest_checkpoint_file", "rest_checkpoint_line", "raw_websocket_file", "applied_ws_message_count",
    "applied_ws_line_span", "applied_ws_global_sequence_span", "last_applied_ws_line",
    "last_applied_ws_received_at_utc", "last_local_update_received_at_utc", "best_bid_match", "best_ask_match",
    "spread_match", "level_count_match", "rest_best_bid", "local_best_bid", "rest_best_ask", "local_best_ask",
    "bid_top_n_diff", "ask_top_n_diff",
]
NO_DIFF = {"missing_prices": [], "extra_prices": [], "size_deltas": []}


def t(second: float) -> str:
    return f"2026-04-19T17:00:{second:09.6f}Z"


def levels(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"price": p, "size": s} for p, s in pairs]


BIDS = levels(("0.48", "10"), ("0.49", "20"), ("0.5", "30"))  # ascending, best last
ASKS = levels(("0.53", "15"), ("0.52", "25"), ("0.51", "35"))  # descending, best last


def book(token: str = YES, bids: list | None = None, asks: list | None = None, **extra: Any) -> dict[str, Any]:
    return {"market": CID, "asset_id": token, "timestamp": "1776618000000", "hash": "0" * 40,
            "bids": BIDS if bids is None else bids, "asks": ASKS if asks is None else asks,
            "event_type": "book", **extra}


def change(token: str, price: str, size: str, side: str) -> dict[str, Any]:
    return {"market": CID, "price_changes": [{"asset_id": token, "price": price, "size": size, "side": side,
                                              "hash": "1" * 40, "best_bid": "0.5", "best_ask": "0.51"}],
            "timestamp": "1776618000001", "event_type": "price_change"}


def ws(second: float, seq: int, payload: Any) -> dict[str, Any]:
    return {"received_at_utc": t(second), "global_message_sequence": seq, "json": payload}


def rest(second: float, seq: int, *summaries: Any, status: int = 200) -> dict[str, Any]:
    return {"checkpoint_sequence": seq, "received_at_utc": t(second),
            "request": {"endpoint": "POST /books", "token_ids": [s.get("asset_id") for s in summaries if isinstance(s, dict)]},
            "http_status": status, "json": list(summaries)}


def summary(token: str = YES, bids: list | None = None, asks: list | None = None, market: str = CID) -> dict[str, Any]:
    return {"market": market, "asset_id": token, "timestamp": "1776618000000", "hash": "0" * 40,
            "bids": BIDS if bids is None else bids, "asks": ASKS if asks is None else asks,
            "min_order_size": "5", "tick_size": "0.01", "neg_risk": False, "last_trade_price": "0.5"}


def write_jsonl(path: Path, rows: list[Any], *, compress: bool = False) -> None:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode(), mtime=0) if compress else text.encode())


def capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ws_files: list[list[Any]], rest_rows: list[Any],
            *, compress: bool = False) -> Path:
    """Write a capture in tmp_path (the working directory) and return its 10B manifest."""
    monkeypatch.chdir(tmp_path)
    files = []
    for i, rows in enumerate(ws_files):
        name = f"ws-{i}.jsonl"
        write_jsonl(tmp_path / name, rows, compress=compress)
        files.append({"path": name, "kind": "raw_websocket_messages"})
    write_jsonl(tmp_path / "rest.jsonl", rest_rows)
    files.append({"path": "rest.jsonl", "kind": "rest_books_checkpoints"})
    manifest = {
        "schema_name": "checkpoint_010b_ws_raw_sample",
        "gate_status": "WS_RAW_SAMPLE_PASS",
        "markets": [{"condition_id": CID, "market_slug": "will-it", "question": "Will it?",
                     "tokens": [{"token_id": YES, "outcome": "Yes"}, {"token_id": NO, "outcome": "No"}]}],
        "output_files": files,
    }
    (tmp_path / "m10b.json").write_text(json.dumps(manifest))
    return Path("m10b.json")


def test_book_then_price_change_then_matching_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[
        ws(1, 1, [book()]),
        ws(2, 2, change(YES, "0.49", "22.50", "BUY")),
    ]], [rest(3, 7, summary(bids=levels(("0.48", "10"), ("0.49", "22.5"), ("0.5", "30"))))], compress=True)
    rows = reconstruct(manifest)
    assert rows == [{
        "comparison_status": "match",
        "token_id": YES,
        "market": MARKET,
        "rest_checkpoint_sequence": 7,
        "rest_checkpoint_received_at_utc": t(3),
        "rest_checkpoint_file": "rest.jsonl",
        "rest_checkpoint_line": 1,
        "raw_websocket_file": "ws-0.jsonl",
        "applied_ws_message_count": 2,
        "applied_ws_line_span": [1, 2],
        "applied_ws_global_sequence_span": [1, 2],
        "last_applied_ws_line": 2,
        "last_applied_ws_received_at_utc": t(2),
        "last_local_update_received_at_utc": t(2),
        "best_bid_match": True,
        "best_ask_match": True,
        "spread_match": True,
        "level_count_match": True,
        "rest_best_bid": "0.5",
        "local_best_bid": "0.5",
        "rest_best_ask": "0.51",
        "local_best_ask": "0.51",
        "bid_top_n_diff": NO_DIFF,
        "ask_top_n_diff": NO_DIFF,
    }]
    assert list(rows[0]) == ROW_KEYS


def test_size_only_divergence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, [book()])]], [
        rest(2, 1, summary(bids=levels(("0.48", "10"), ("0.49", "21"), ("0.5", "30")),
                           asks=levels(("0.53", "15.00"), ("0.52", "25"), ("0.51", "36")))),
    ])
    [row] = reconstruct(manifest)
    assert row["comparison_status"] == "divergent"
    assert all(row[k] for k in ("best_bid_match", "best_ask_match", "spread_match", "level_count_match"))
    assert row["bid_top_n_diff"] == {"missing_prices": [], "extra_prices": [],
                                     "size_deltas": [{"price": "0.49", "rest_size": "21", "local_size": "20"}]}
    assert row["ask_top_n_diff"] == {"missing_prices": [], "extra_prices": [],
                                     "size_deltas": [{"price": "0.51", "rest_size": "36", "local_size": "35"}]}


def test_best_bid_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, [book()])]], [
        rest(2, 1, summary(bids=levels(("0.48", "10"), ("0.49", "20"), ("0.5", "30"), ("0.505", "1")))),
    ])
    [row] = reconstruct(manifest, top_n=3)
    assert row["comparison_status"] == "divergent"
    assert (row["best_bid_match"], row["best_ask_match"], row["spread_match"], row["level_count_match"]) == (
        False, True, False, False)
    assert (row["rest_best_bid"], row["local_best_bid"]) == ("0.505", "0.5")
    assert row["bid_top_n_diff"] == {"missing_prices": ["0.505"], "extra_prices": ["0.48"], "size_deltas": []}
    assert row["ask_top_n_diff"] == NO_DIFF


def test_price_change_before_any_book_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[
        ws(1, 1, change(YES, "0.49", "99", "BUY")),
        ws(2, 2, book()),
        ws(3, 3, change(NO, "0.5", "1", "BUY")),  # NO never has a book
    ]], [rest(4, 1, summary(), summary(NO))])
    yes, no = reconstruct(manifest)
    assert yes["comparison_status"] == "match"
    assert (yes["applied_ws_message_count"], yes["applied_ws_line_span"]) == (1, [2, 2])
    assert no["comparison_status"] == "no_local_book"
    assert no["applied_ws_message_count"] == 0
    assert no["market"] == {"market_slug": "will-it", "condition_id": CID, "outcome": "No"}


def test_legacy_price_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = {"asset_id": YES, "changes": [{"price": "0.50", "side": "BUY", "size": "0"},
                                           {"price": "0.515", "side": "SELL", "size": "5"}],
              "event_type": "price_change", "market": CID, "timestamp": "1776618000002", "hash": "2" * 40}
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, book()), ws(2, 2, legacy)]], [
        rest(3, 1, summary(bids=levels(("0.48", "10"), ("0.49", "20")),
                           asks=levels(("0.53", "15"), ("0.52", "25"), ("0.515", "5"), ("0.51", "35")))),
    ])
    [row] = reconstruct(manifest)
    assert row["comparison_status"] == "match"
    assert (row["local_best_bid"], row["local_best_ask"]) == ("0.49", "0.51")
    assert row["applied_ws_message_count"] == 2


def test_rest_between_websocket_rows_tie_is_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[
        ws(1, 1, book()),
        ws(2, 2, change(YES, "0.49", "21", "BUY")),  # received exactly at T: applied
        ws(2.000001, 3, change(YES, "0.49", "22", "BUY")),  # after T: not applied
        ws(3, 4, change(YES, "0.49", "23", "BUY")),
    ]], [
        rest(2, 1, summary(bids=levels(("0.48", "10"), ("0.49", "21"), ("0.5", "30")))),
        rest(2.5, 2, summary(bids=levels(("0.48", "10"), ("0.49", "22"), ("0.5", "30")))),
        rest(9, 3, summary(bids=levels(("0.48", "10"), ("0.49", "22"), ("0.5", "30")))),
    ])
    first, second, third = reconstruct(manifest)
    assert first["comparison_status"] == second["comparison_status"] == "match"
    assert (first["last_applied_ws_line"], first["applied_ws_global_sequence_span"]) == (2, [1, 2])
    assert (second["last_applied_ws_line"], second["last_applied_ws_received_at_utc"]) == (3, t(2.000001))
    assert third["comparison_status"] == "divergent"
    assert third["bid_top_n_diff"]["size_deltas"] == [{"price": "0.49", "rest_size": "22", "local_size": "23"}]
    assert [r["rest_checkpoint_line"] for r in (first, second, third)] == [1, 2, 3]


def test_rest_rows_out_of_time_order_follow_the_rule_literally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [[
        ws(1, 1, book()),
        ws(3, 2, change(YES, "0.49", "21", "BUY")),
    ]], [rest(4, 1, summary()), rest(2, 2, summary())])
    later, earlier = reconstruct(manifest)
    assert (later["comparison_status"], later["applied_ws_message_count"]) == ("divergent", 2)
    assert (earlier["comparison_status"], earlier["applied_ws_message_count"]) == ("match", 1)


def test_rejected_rest_rows_yield_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_found = {"checkpoint_sequence": 1, "received_at_utc": t(2), "request": {"endpoint": "POST /books"},
                 "http_status": 404, "json": {"error": "No orderbook exists for the requested token id"}}
    error_list = dict(rest(2, 2, summary()), http_status=500)
    not_a_list = {"checkpoint_sequence": 3, "received_at_utc": t(2), "http_status": 200, "json": {"asset_id": YES}}
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, book())]], [
        not_found, error_list, not_a_list, rest(3, 4, summary(), "not a summary", {"no": "asset"}),
    ])
    [row] = reconstruct(manifest)
    assert (row["rest_checkpoint_sequence"], row["rest_checkpoint_line"], row["comparison_status"]) == (4, 4, "match")


def test_unknown_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other_market = "0x" + "cd" * 32
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, book())]], [rest(2, 1, summary(OTHER, market=other_market))])
    [row] = reconstruct(manifest)
    assert row["comparison_status"] == "no_local_book"
    assert row["token_id"] == OTHER
    assert row["market"] == {"market_slug": None, "condition_id": other_market, "outcome": None}
    assert row["raw_websocket_file"] == "ws-0.jsonl"
    assert (row["applied_ws_message_count"], row["applied_ws_line_span"], row["applied_ws_global_sequence_span"]) == (
        0, [None, None], [None, None])
    assert (row["last_applied_ws_line"], row["last_applied_ws_received_at_utc"]) == (None, None)
    assert row["last_local_update_received_at_utc"] is None
    # compared as an empty book
    assert (row["local_best_bid"], row["rest_best_bid"], row["best_bid_match"]) == (None, "0.5", False)
    assert row["bid_top_n_diff"]["missing_prices"] == ["0.5", "0.49", "0.48"]


def test_multi_file_websocket_capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = capture(tmp_path, monkeypatch, [
        ["", ws(1, 1, [book(), book(NO, bids=[], asks=[])]), "not json", "[1, 2]"],
        ["   ", ws(2, 2, {"received": "pong"}), ws(3, 3, change(YES, "0.5", "31", "BUY")),
         {"received_at_utc": t(3.5), "global_message_sequence": 4, "json": None, "text": "PONG"}],
    ], [rest(4, 1, summary(bids=levels(("0.48", "10"), ("0.49", "20"), ("0.5", "31"))), summary(NO, bids=[], asks=[]))])
    yes, no = reconstruct(manifest)
    assert yes["comparison_status"] == "match"
    assert yes["raw_websocket_file"] == "ws-1.jsonl"
    assert (yes["applied_ws_line_span"], yes["applied_ws_global_sequence_span"]) == ([2, 3], [1, 3])
    assert (yes["last_applied_ws_line"], yes["applied_ws_message_count"]) == (3, 2)
    assert no["comparison_status"] == "match"
    assert (no["raw_websocket_file"], no["applied_ws_line_span"], no["rest_best_bid"]) == ("ws-0.jsonl", [2, 2], None)


def test_book_detection_and_level_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_type = {"asset_id": YES, "market": CID, "bids": [{"price": ".50", "size": "30.0"}, {"price": "0.49", "size": 20},
                                                     {"price": "0.47", "size": "0"}, {"price": "x", "size": "1"},
                                                     "junk", {"price": "0.46"}, {"price": "0.45", "size": "-1"}],
               "asks": [{"price": "0.51", "size": "1"}, {"price": "0.51", "size": "35"}]}
    buys_sells = {"asset_id": NO, "market": CID, "buys": [{"price": "0.49", "size": "35"}],
                  "sells": [{"price": "0.5", "size": "30"}]}
    manifest = capture(tmp_path, monkeypatch, [[ws(1, 1, [no_type, buys_sells])]], [
        rest(2, 1, summary(bids=levels(("0.49", "20"), ("0.5", "30")), asks=levels(("0.51", "35"))),
             summary(NO, bids=levels(("0.49", "35")), asks=levels(("0.50", "30")))),
    ])
    yes, no = reconstruct(manifest)
    assert yes["comparison_status"] == no["comparison_status"] == "match"
    assert no["rest_best_ask"] == "0.5"


def test_line_ends_and_canonical_decimals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [json.dumps(ws(1, 1, book(bids=levels(("0.500", "100.00")), asks=levels(("0.510", "1E+2")))))]
    rows.append(json.dumps(ws(2, 2, change(YES, "0.5", "200", "BUY"))))
    (tmp_path / "ws.jsonl").write_bytes(("\r\n".join(rows[:1]) + "\r\r\n" + rows[1] + "\r").encode())
    write_jsonl(tmp_path / "rest.jsonl", [rest(3, 1, summary(bids=levels(("0.5", "150")), asks=levels(("0.51", "100"))))])
    (tmp_path / "m.json").write_text(json.dumps({"output_files": [
        {"path": str(tmp_path / "ws.jsonl"), "kind": "raw_websocket_messages"},
        {"path": "rest.jsonl", "kind": "rest_books_checkpoints"}]}))
    [row] = reconstruct(Path("m.json"))
    assert row["last_applied_ws_line"] == 3  # "\r" then "\r\n" end two lines: line 2 is blank
    assert row["raw_websocket_file"] == str(tmp_path / "ws.jsonl")
    assert row["market"] == {"market_slug": None, "condition_id": CID, "outcome": None}
    assert row["bid_top_n_diff"]["size_deltas"] == [{"price": "0.5", "rest_size": "150", "local_size": "200"}]
    assert row["comparison_status"] == "divergent" and row["ask_top_n_diff"] == NO_DIFF


def test_synthetic_capture_with_drops_shows_every_status(tmp_path: Path) -> None:
    shape = CaptureShape(ws_lines=4000, drop_rate=0.02, unlisted_token_rate=0.3, rest_interval_seconds=2.0, rest_files=2)
    capture = generate_capture(tmp_path, shape, seed=4)
    rows = reconstruct(capture.manifest_10b)
    statuses = Counter(row["comparison_status"] for row in rows)
    assert statuses.keys() == {"match", "divergent", "no_local_book"}, statuses
    assert {row["token_id"] for row in rows if row["comparison_status"] == "no_local_book"}.isdisjoint(capture.token_ids)
    divergent = [row for row in rows if row["comparison_status"] == "divergent"]
    assert any(not row["best_bid_match"] or not row["best_ask_match"] for row in divergent)
    assert any(row["bid_top_n_diff"]["size_deltas"] or row["ask_top_n_diff"]["size_deltas"] for row in divergent)


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_capture_without_drops_or_lag_matches_everywhere(tmp_path: Path, seed: int) -> None:
    shape = CaptureShape(
        ws_lines=3000, ws_files=3, rest_files=2, rest_interval_seconds=0.5, drop_rate=0.0, rest_lag_ms=(0, 0),
        unlisted_token_rate=0.0, legacy_price_change_fraction=0.3, duplicate_rate=0.05, blank_line_rate=0.02,
        book_without_event_type_rate=0.3, reconnect_every=700, rest_error_rate=0.1, trade_rate=0.05,
        empty_frame_rate=0.02, pong_rate=0.05, gzip=seed == 1,
    )
    capture = generate_capture(tmp_path, shape, seed=seed)
    rows = reconstruct(capture.manifest_10b)
    assert len(rows) > 300
    assert Counter(row["comparison_status"] for row in rows) == {"match": len(rows)}
