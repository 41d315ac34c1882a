"""``streamer reconstruct`` on real Polymarket frames (tests/fixtures/real, copied from ../shared/samples/real).

Every case must equal the oracle; the expectations below are also worked out by hand from the frames
(POLYMARKET.md section 0). The ``derived-*`` cases keep a real ``ws.jsonl.gz`` byte for byte and add
REST rows (``make_derived.py``); the levels those rows hold are checked here literally against the frames.
Each test runs in a temporary copy of the fixtures, from the case folder, so the manifests' relative
paths resolve.
"""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streamer.reconstruct import SKIPPING_ANOMALIES
from tests import oracle
from tests.test_reconstruct import ROW_KEYS, assert_consistent, cli_call, read_manifest, read_rows

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "samples" / "real"
CASES = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
REAL_CASES = [name for name in CASES if not name.startswith("derived-")]
NO_DIFF = {"missing_prices": [], "extra_prices": [], "size_deltas": []}
ROWS = "out/rows.jsonl.gz"
MANIFEST_10C = "out/10c.json"


@pytest.fixture
def case_dir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``case_dir(name)``: copy every fixture case into the temporary directory and chdir into ``name``."""
    shutil.copytree(FIXTURES, workdir / "real")

    def enter(name: str) -> Path:
        path = workdir / "real" / name
        monkeypatch.chdir(path)
        return path

    return enter


def reconstruct_case() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    code, out, err = cli_call("reconstruct", "--manifest-10b", "manifest_10b.json", "--output-rows", ROWS,
                              "--output-manifest", MANIFEST_10C)
    assert code == 0, err
    manifest_10c = read_manifest(MANIFEST_10C)
    assert out == [f"RECONSTRUCTION_ROWS={ROWS}", f"RECONSTRUCTION_MANIFEST={MANIFEST_10C}",
                   f"RECONSTRUCTION_GATE={manifest_10c['gate_status']}"]
    # stderr names every anomaly of the manifest, its count and first places (input skipped, or feed faults found)
    found = manifest_10c["anomalies"]
    assert err == [f"streamer reconstruct: warning: {'skipped' if name in SKIPPING_ANOMALIES else 'found'} "
                   f"{found[name]['count']} ({name}, in the 10C manifest's anomalies): "
                   f"{', '.join(found[name]['first'][:5])}" + (", ..." if found[name]["count"] > 5 else "")
                   for name in sorted(found)]
    return read_rows(ROWS), manifest_10c


def frames(name: str = "ws.jsonl.gz") -> list[dict[str, Any]]:
    """The rows of a websocket or REST file, one per physical line (blank lines would be None)."""
    data = Path(name).read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode()
    return [json.loads(line) if line.strip() else None for line in text.splitlines()]


def side(levels: list[dict[str, str]]) -> dict[Decimal, Decimal]:
    return {Decimal(level["price"]): Decimal(level["size"]) for level in levels}


def anomalies(manifest_10c: dict[str, Any]) -> dict[str, tuple[int, list[str]]]:
    return {name: (value["count"], value["first"]) for name, value in manifest_10c["anomalies"].items()}


# -- every case ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_case_equals_oracle(case_dir: Any, case: str) -> None:
    case_dir(case)
    rows, manifest_10c = reconstruct_case()
    assert rows == oracle.reconstruct(Path("manifest_10b.json"))
    for row in rows:
        assert list(row) == ROW_KEYS
    assert_consistent(rows, manifest_10c)
    problems = manifest_10c["input_problems"]
    assert (problems["skipped_total"], problems["truncated_inputs"]) == (0, [])
    listed = [entry["path"] for entry in json.loads(Path("manifest_10b.json").read_text())["output_files"]]
    assert [artifact["path"] for artifact in manifest_10c["input_artifacts"]] == ["manifest_10b.json", *listed]
    ws_rows = sum(1 for name in listed if name.startswith("ws") for row in frames(name) if row is not None)
    assert manifest_10c["row_counts"]["raw_websocket_messages"] == ws_rows


@pytest.mark.parametrize("case", REAL_CASES)
def test_fixture_is_the_shared_sample(case: str) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    for path in sorted((SHARED / case).iterdir()):
        assert (FIXTURES / case / path.name).read_bytes() == path.read_bytes(), path.name


# -- polypy-2025-10-hash9-with-rest: a book, two price changes, the REST /book after each ---------------------

HASH9_TOKEN = "94022367472047775158269173293876979533288470167463650966689320774843018181757"
HASH9_OTHER = "3329029450753225654467003002742946394863848082479209219558348197750220015613"
HASH9_MARKET = {"market_slug": None, "outcome": None,
                "condition_id": "0x2f1ab0ffaf465c4acd76b9a4a1f8980db26bfae7d248a6bb289350586028307e"}


def test_hash9_rest_books_are_the_replayed_books_level_for_level(case_dir: Any) -> None:
    case_dir("polypy-2025-10-hash9-with-rest")
    opening, first_change, second_change = frames()
    rest1, rest2 = frames("rest.jsonl.gz")
    book = opening["json"]
    assert (book["event_type"], book["asset_id"]) == ("book", HASH9_TOKEN)
    # Line 2: the token's entry is SELL 0.92 -> 0 (the ask level goes); the other entry's token has no book.
    assert [(e["asset_id"], e["price"], e["size"], e["side"]) for e in first_change["json"]["price_changes"]] == [
        (HASH9_OTHER, "0.08", "0", "BUY"), (HASH9_TOKEN, "0.92", "0", "SELL")]
    # Line 3: BUY 0.06 -> 10.11 (it was 5.11).
    assert [(e["asset_id"], e["price"], e["size"], e["side"]) for e in second_change["json"]["price_changes"]] == [
        (HASH9_TOKEN, "0.06", "10.11", "BUY"), (HASH9_OTHER, "0.94", "10.11", "SELL")]
    bids, asks = side(book["bids"]), side(book["asks"])
    assert (asks.pop(Decimal("0.92")), bids[Decimal("0.06")]) == (Decimal("3500"), Decimal("5.11"))
    [summary1] = rest1["json"]
    assert (side(summary1["bids"]), side(summary1["asks"])) == (bids, asks)
    bids[Decimal("0.06")] = Decimal("10.11")
    [summary2] = rest2["json"]
    assert (side(summary2["bids"]), side(summary2["asks"])) == (bids, asks)
    assert (max(bids), min(asks), len(bids), len(asks)) == (Decimal("0.33"), Decimal("0.34"), 18, 16)


def test_hash9_both_rest_rows_match(case_dir: Any) -> None:
    case_dir("polypy-2025-10-hash9-with-rest")
    rows, manifest_10c = reconstruct_case()
    common = {
        "comparison_status": "match", "token_id": HASH9_TOKEN, "market": HASH9_MARKET,
        "rest_checkpoint_file": "rest.jsonl.gz", "raw_websocket_file": "ws.jsonl.gz",
        "best_bid_match": True, "best_ask_match": True, "spread_match": True, "level_count_match": True,
        "rest_best_bid": "0.33", "local_best_bid": "0.33", "rest_best_ask": "0.34", "local_best_ask": "0.34",
        "bid_top_n_diff": NO_DIFF, "ask_top_n_diff": NO_DIFF,
    }
    assert rows == [
        {**common, "rest_checkpoint_sequence": 1, "rest_checkpoint_received_at_utc": "2025-10-23T00:39:09.486000Z",
         "rest_checkpoint_line": 1, "applied_ws_message_count": 2, "applied_ws_line_span": [1, 2],
         "applied_ws_global_sequence_span": [1, 2], "last_applied_ws_line": 2,
         "last_applied_ws_received_at_utc": "2025-10-23T00:39:09.186000Z",
         "last_local_update_received_at_utc": "2025-10-23T00:39:09.186000Z"},
        {**common, "rest_checkpoint_sequence": 2, "rest_checkpoint_received_at_utc": "2025-10-23T00:39:27.564000Z",
         "rest_checkpoint_line": 2, "applied_ws_message_count": 3, "applied_ws_line_span": [1, 3],
         "applied_ws_global_sequence_span": [1, 3], "last_applied_ws_line": 3,
         "last_applied_ws_received_at_utc": "2025-10-23T00:39:27.264000Z",
         "last_local_update_received_at_utc": "2025-10-23T00:39:27.264000Z"},
    ]
    assert manifest_10c["gate_status"] == "BOOK_RECONSTRUCTION_PASS"
    # The other token's entries arrive before it has a book: ignored and reported, nothing else.
    assert anomalies(manifest_10c) == {"price_change_without_book": (2, ["ws.jsonl.gz:2", "ws.jsonl.gz:3"])}
    assert manifest_10c["row_counts"] == {"raw_websocket_messages": 3, "rest_checkpoints": 2,
                                          "rest_checkpoints_rejected": 0, "comparison_rows": 2}


def test_hash9_numeric_timestamps(case_dir: Any) -> None:
    """``timestamp`` stored as JSON numbers: read as milliseconds, so an older entry is a stale one."""
    case_dir("polypy-2025-10-hash9-with-rest")
    rows = frames()
    assert all(type(row["json"]["timestamp"]) is int for row in rows)
    assert type(frames("rest.jsonl.gz")[0]["json"][0]["timestamp"]) is int
    # Make the first change 1 ms older than the opening book (as NSL saw live): reported, still applied.
    rows[1]["json"]["timestamp"] = rows[0]["json"]["timestamp"] - 1
    Path("ws.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0))
    result, manifest_10c = reconstruct_case()
    assert anomalies(manifest_10c)["stale_price_change"] == (1, ["ws.jsonl.gz:2"])
    assert [row["comparison_status"] for row in result] == ["match", "match"]
    assert result == oracle.reconstruct(Path("manifest_10b.json"))


# -- nsl-settled-plus-active: an opening array, an empty [] reply, REST 404s -----------------------------------

def test_settled_rest_rows_rejected_and_empty_frame_skipped(case_dir: Any) -> None:
    case_dir("nsl-settled-plus-active")
    opening, empty = frames()
    assert [item["event_type"] for item in opening["json"]] == ["book", "book"]
    assert empty["json"] == []
    assert [row["http_status"] for row in frames("rest.jsonl.gz")] == [404, 404]
    rows, manifest_10c = reconstruct_case()
    assert rows == []
    assert manifest_10c["gate_status"] == "BOOK_RECONSTRUCTION_NO_CHECKPOINTS"
    assert manifest_10c["row_counts"] == {"raw_websocket_messages": 2, "rest_checkpoints": 2,
                                          "rest_checkpoints_rejected": 2, "comparison_rows": 0}
    assert manifest_10c["comparison_status_counts"] == {}
    assert anomalies(manifest_10c) == {"rejected_rest_row": (2, ["rest.jsonl.gz:1", "rest.jsonl.gz:2"])}


# -- polypy-2024-12-legacy: the legacy price_change form ------------------------------------------------------

LEGACY_TOKEN = "72936048731589292555781174533757608024096898681344338816447372274344589246891"


def test_legacy_changes_by_hand(case_dir: Any) -> None:
    case_dir("derived-polypy-2024-12-legacy-with-rest")
    ws_rows = frames()
    assert [(row["json"]["event_type"], "changes" in row["json"]) for row in ws_rows] == [
        ("book", False), ("price_change", True), ("price_change", True), ("price_change", True),
        ("price_change", True), ("last_trade_price", False), ("price_change", True), ("price_change", True),
        ("book", False), ("tick_size_change", False)]
    assert all(row["json"]["asset_id"] == LEGACY_TOKEN and "price_changes" not in row["json"] for row in ws_rows)
    book = ws_rows[0]["json"]
    bids, asks = side(book["bids"]), side(book["asks"])
    # The opening book, read off line 1.
    assert (bids[Decimal("0.53")], bids[Decimal("0.528")], bids[Decimal("0.421")]) == (
        Decimal("1509"), Decimal("487.05"), Decimal("1500"))
    assert (asks[Decimal("0.579")], Decimal("0.576") in asks) == (Decimal("161.52"), False)
    assert (max(bids), min(asks), len(bids), len(asks)) == (Decimal("0.542"), Decimal("0.56"), 74, 74)
    # Lines 2-5: BUY 0.53 -> 1608.18, SELL 0.579 -> 189.19, BUY 0.528 -> 1180.03, SELL 0.576 -> 692.98 (new).
    bids[Decimal("0.53")] = Decimal("1608.18")
    asks[Decimal("0.579")] = Decimal("189.19")
    bids[Decimal("0.528")] = Decimal("1180.03")
    asks[Decimal("0.576")] = Decimal("692.98")
    rest1, rest2, rest3 = frames("rest.jsonl")
    [summary] = rest1["json"]
    assert (side(summary["bids"]), side(summary["asks"])) == (bids, asks)
    # Line 7 (two changes in one frame): SELL 0.576 -> 0, BUY 0.528 -> 487.05; line 8: BUY 0.421 -> 0.
    del asks[Decimal("0.576")]
    bids[Decimal("0.528")] = Decimal("487.05")
    del bids[Decimal("0.421")]
    [summary] = rest2["json"]
    assert (side(summary["bids"]), side(summary["asks"])) == (bids, asks)
    assert (len(bids), len(asks)) == (73, 74)
    # Line 9 is a full book: it replaces everything.
    [summary] = rest3["json"]
    assert (side(summary["bids"]), side(summary["asks"])) == (side(ws_rows[8]["json"]["bids"]),
                                                              side(ws_rows[8]["json"]["asks"]))


def test_legacy_changes_applied(case_dir: Any) -> None:
    case_dir("derived-polypy-2024-12-legacy-with-rest")
    rows, manifest_10c = reconstruct_case()
    assert [row["comparison_status"] for row in rows] == ["match", "match", "match"]
    # Applied: line 1 and the legacy changes (2-5, 7, 8), then the book (9); never last_trade_price (6)
    # or tick_size_change (10).
    assert [(row["applied_ws_message_count"], row["applied_ws_line_span"], row["last_applied_ws_line"])
            for row in rows] == [(5, [1, 5], 5), (7, [1, 8], 8), (8, [1, 9], 9)]
    assert [(row["local_best_bid"], row["local_best_ask"]) for row in rows] == [
        ("0.542", "0.56"), ("0.542", "0.56"), ("0.545", "0.558")]
    assert all(row["market"]["condition_id"] ==
               "0x84c0ffe3f56cb357ff5ff8bc5d2182ae90be4dd6718e8403a6af472b452dbfa8" for row in rows)
    assert manifest_10c["anomalies"] == {}
    assert manifest_10c["gate_status"] == "BOOK_RECONSTRUCTION_PASS"


def test_legacy_rows_diverge_when_the_legacy_changes_are_missing(case_dir: Any) -> None:
    """Negative control: the same REST rows against the opening book alone show exactly the legacy changes."""
    case_dir("derived-polypy-2024-12-legacy-with-rest")
    ws_rows = frames()
    Path("ws.jsonl.gz").write_bytes(gzip.compress((json.dumps(ws_rows[0]) + "\n").encode(), mtime=0))
    rows, _ = reconstruct_case()
    first = rows[0]
    assert first["comparison_status"] == "divergent"
    assert first["bid_top_n_diff"] == {"missing_prices": [], "extra_prices": [], "size_deltas": [
        {"price": "0.53", "rest_size": "1608.18", "local_size": "1509"},
        {"price": "0.528", "rest_size": "1180.03", "local_size": "487.05"}]}
    # Asks, best first: 0.56 0.561 0.562 0.563 0.57 0.572 0.573 0.578 0.579 0.58 | 0.59 ...; the new 0.576
    # pushes 0.58 out of the REST top 10.
    assert first["ask_top_n_diff"] == {"missing_prices": ["0.576"], "extra_prices": ["0.58"], "size_deltas": [
        {"price": "0.579", "rest_size": "189.19", "local_size": "161.52"}]}
    assert first["level_count_match"] is False


def test_legacy_market_b_by_hand(case_dir: Any) -> None:
    case_dir("derived-polypy-2024-12-legacy-market-b-with-rest")
    ws_rows = frames()
    assert [row["json"].get("changes") for row in ws_rows[1:3]] == [
        [{"price": "0.933", "side": "BUY", "size": "0"}], [{"price": "0.932", "side": "BUY", "size": "172.39"}]]
    bids = side(ws_rows[0]["json"]["bids"])
    assert (max(bids), Decimal("0.932") in bids) == (Decimal("0.933"), False)
    rows, manifest_10c = reconstruct_case()
    assert [row["comparison_status"] for row in rows] == ["match", "match"]
    # The best bid 0.933 went; 0.932 came in at 172.39 and is the new best.
    assert (rows[0]["local_best_bid"], rows[0]["local_best_ask"], rows[0]["applied_ws_line_span"]) == (
        "0.932", "0.941", [1, 3])
    rest1 = frames("rest.jsonl")[0]["json"][0]
    assert rest1["bids"][-2:] == [{"price": "0.931", "size": "5"}, {"price": "0.932", "size": "172.39"}]
    assert (rows[1]["applied_ws_message_count"], rows[1]["last_applied_ws_line"]) == (4, 4)
    assert manifest_10c["anomalies"] == {}


# -- polypy-2024-11: a book without event_type ---------------------------------------------------------------

def test_book_without_event_type(case_dir: Any) -> None:
    case_dir("polypy-2024-11-book-no-event-type")
    [row] = frames()
    assert "event_type" not in row["json"] and {"asset_id", "bids", "asks"} <= set(row["json"])
    rows, manifest_10c = reconstruct_case()
    assert (rows, manifest_10c["anomalies"]) == ([], {})  # no untyped_object: it is a book
    case_dir("derived-polypy-2024-11-book-no-event-type-with-rest")
    [result], manifest_10c = reconstruct_case()
    assert result["comparison_status"] == "match"
    assert (result["local_best_bid"], result["local_best_ask"]) == ("0.216", "0.254")  # bids last, asks last
    assert (result["applied_ws_message_count"], result["applied_ws_line_span"]) == (1, [1, 1])
    assert manifest_10c["anomalies"] == {}


# -- nsl-lisnard: opening array, mirrored price changes, PONG frames --------------------------------------------

LISNARD_YES = "55404192439775628931124671719520886657525387168536821457706619003199189099864"
LISNARD_NO = "79358475953126059185096320578578995575874288599466094920037110232928386404141"


def test_lisnard_pong_frames_are_rows_but_never_applied(case_dir: Any) -> None:
    case_dir("nsl-lisnard-reference-only")
    ws_rows = frames()
    pongs = [number for number, row in enumerate(ws_rows, 1) if row["json"] is None]
    assert pongs == [4, 6, 11, 13, 15, 16]
    assert all(ws_rows[n - 1]["text"] == "PONG" for n in pongs)
    rows, manifest_10c = reconstruct_case()
    assert rows == []
    assert manifest_10c["row_counts"]["raw_websocket_messages"] == 16
    assert manifest_10c["anomalies"] == {}
    assert manifest_10c["gate_status"] == "BOOK_RECONSTRUCTION_NO_CHECKPOINTS"


def test_lisnard_books_by_hand(case_dir: Any) -> None:
    case_dir("derived-nsl-lisnard-with-rest")
    rows, manifest_10c = reconstruct_case()
    assert [(row["token_id"], row["comparison_status"]) for row in rows] == [
        (LISNARD_YES, "match"), (LISNARD_NO, "match"), (LISNARD_YES, "match"), (LISNARD_NO, "match")]
    # The first checkpoint comes after the PONG on line 4: lines 1-3 applied, the PONG not.
    assert {(row["applied_ws_message_count"], tuple(row["applied_ws_line_span"]), row["last_applied_ws_line"])
            for row in rows[:2]} == {(3, (1, 3), 3)}
    # The last comes after the PONGs on lines 15-16: every price_change line (2,3,5,7,8,9,10,12,14) applied.
    assert {(row["applied_ws_message_count"], tuple(row["applied_ws_line_span"]), row["last_applied_ws_line"],
             row["last_applied_ws_received_at_utc"]) for row in rows[2:]} == {
        (10, (1, 14), 14, "2026-10-04T15:42:39.252962Z")}
    assert manifest_10c["anomalies"] == {}
    opening = {item["asset_id"]: item for item in frames()[0]["json"]}
    yes_bids, yes_asks = side(opening[LISNARD_YES]["bids"]), side(opening[LISNARD_YES]["asks"])
    rest1, rest2 = frames("rest.jsonl")
    first, last, last_no = rest1["json"][0], rest2["json"][0], rest2["json"][1]
    assert (first["asset_id"], last["asset_id"], last_no["asset_id"]) == (LISNARD_YES, LISNARD_YES, LISNARD_NO)
    # Lines 2-3 take YES ask 0.74 to 0 and back to 7692: the first checkpoint holds the opening book.
    assert yes_asks[Decimal("0.74")] == Decimal("7692")
    assert (side(first["bids"]), side(first["asks"])) == (yes_bids, yes_asks)
    # By the end: BUY 0.107 -> 2635.61 (line 8), BUY 0.074 -> 1917.95 (line 12), SELL 0.118 -> 0 (line 5);
    # 0.65 and 0.47 left and came back at their opening sizes (lines 7/10, 9/14).
    yes_bids[Decimal("0.107")] = Decimal("2635.61")
    yes_bids[Decimal("0.074")] = Decimal("1917.95")
    del yes_asks[Decimal("0.118")]
    assert (yes_asks[Decimal("0.65")], yes_asks[Decimal("0.47")]) == (Decimal("5142"), Decimal("4303.85"))
    assert (side(last["bids"]), side(last["asks"])) == (yes_bids, yes_asks)
    # The NO book mirrors it: NO bids are 1 - YES asks with the same sizes, NO asks 1 - YES bids.
    assert side(last_no["bids"]) == {1 - price: size for price, size in yes_asks.items()}
    assert side(last_no["asks"]) == {1 - price: size for price, size in yes_bids.items()}
    assert (rows[2]["local_best_bid"], rows[2]["local_best_ask"]) == ("0.107", "0.108")


@pytest.mark.parametrize("case", CASES)
def test_follow_equals_run_on_real_captures(case_dir: Any, case: str) -> None:
    """``streamer follow`` over a real capture (already complete) writes what ``run`` writes: rows byte
    for byte, the 10C and divergence manifests equal but for run identity (follow failed at exit on
    nsl-settled-plus-active, whose REST replies are all errors, before it was fixed)."""
    case_dir(case)
    ws = sorted(path.name for path in Path(".").glob("ws*.jsonl*"))
    assert ws, "every case has a websocket file"
    code, _out, err = cli_call("run", "--no-progress", "--manifest-10b", "manifest_10b.json", "--output-rows",
                               "b/rows.jsonl.gz", "--manifest-10c", "b/10c.json", "--output-manifest", "b/10d0.json",
                               "--output-report", "b/10d0.md")
    assert code in (0, 1), err
    code, _out, err = cli_call("follow", "--ws", "ws*.jsonl*", "--rest", "rest*.jsonl*", "--manifest-10b",
                               "manifest_10b.json", "--out", "f", "--state", "st", "--poll", "0.05",
                               "--exit-when-idle", "0.3")
    assert code == 0, err
    assert Path("f/rest_comparison_rows.jsonl.gz").read_bytes() == Path("b/rows.jsonl.gz").read_bytes()
    run_identity = ("started_at_utc", "ended_at_utc", "analyzer", "streaming", "follow", "input_artifacts",
                    "output_files", "updated_source_or_doc_artifacts")
    for mine, theirs in (("f/checkpoint_010c_book_reconstruction_sample.json", "b/10c.json"),
                         ("f/checkpoint_010d0_ws_divergence_analysis.json", "b/10d0.json")):
        left, right = read_manifest(mine), read_manifest(theirs)
        for key in run_identity:
            left.pop(key, None)
            right.pop(key, None)
        assert left == right, mine
