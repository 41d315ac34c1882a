"""``streamer analyze`` equals the reference analyzer (SPEC section 4), on generated captures.

Two generators feed the comparison:

- :func:`synth_cases`: realistic captures from :mod:`streamer.synth` with hypothesis-drawn shapes,
  comparison rows from the independent oracle (``tests/oracle.py``), sometimes out of time order;
- :func:`hand_built_cases`: raw websocket JSONL written line by line, covering what the reference
  tolerates and synth never writes, with comparison rows written directly (arbitrary statuses, line
  references that point anywhere, odd diffs), so that streamer's second pass is exercised too.

Each example runs both programs as subprocesses (``tests/refcompare.py``) and compares manifests,
stdout, exit codes and reports. ``STREAMER_DIFF_EXAMPLES=N`` runs N examples per property instead
of the short default.

Equality needs two precautions, both deliberate departures of streamer (SPEC section 4): captures
never use the older ``price_change`` form, and every price in a diff is canonical and equal, as a
string, to the way the feed writes that price (the reference matches strings, streamer decimals;
:func:`test_evidence_prices_match_as_decimals` shows the departure at work). Fixed cases follow:
every flag value, rows out of time order, receive times stepping back, the evidence cap, what
the reference does by accident on odd rows, and token ids too big for the fast JSON parser.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import random
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamer import analysis, cli
from streamer.synth import CaptureShape, generate_capture
from tests import refcompare
from tests.oracle import reconstruct


def _examples(default: int) -> int:
    value = os.environ.get("STREAMER_DIFF_EXAMPLES")
    return int(value) if value else default


HYPOTHESIS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MANIFEST_10B = refcompare.CAPTURE_FILES["manifest_10b"]
CONTEXT_LIMITS = (5, 1, 0)  # hypothesis favours the first: the default
EVIDENCE_SECONDS = (10, 1, 0)


def _flags(context_limit: int, evidence_seconds: int) -> list[str]:
    return ["--context-limit", str(context_limit), "--price-evidence-seconds", str(evidence_seconds)]


def _compare(work: Path, rows: list[dict[str, Any]], extra: list[str], workers: int = 1) -> dict[str, Any]:
    """Write the analysis inputs, run both programs, assert they agree; return both outcomes."""
    flags = refcompare.write_analysis_inputs(work, MANIFEST_10B, rows)
    outcome = refcompare.run_both(work, flags, extra, workers)
    refcompare.assert_same(outcome)
    return outcome


def _streaming(outcome: dict[str, Any]) -> dict[str, Any]:
    return outcome["streamer"]["manifest"]["streaming"]


# ---------------------------------------------------------------------------------------------
# a) synthetic captures, comparison rows from the oracle


@st.composite
def synth_cases(draw: st.DrawFn) -> dict[str, Any]:
    rate = lambda high: st.one_of(st.just(0.0), st.floats(0.0, high))  # noqa: E731
    shape = CaptureShape(
        markets=draw(st.integers(1, 4)),
        ws_lines=draw(st.integers(200, 3000)),
        messages_per_second=draw(st.sampled_from([20.0, 50.0, 200.0])),
        rest_interval_seconds=draw(st.sampled_from([0.5, 1.0, 2.0, 5.0])),
        drop_rate=draw(rate(0.1)),
        rest_lag_ms=draw(st.tuples(st.integers(-2000, 0), st.integers(0, 3000))),
        pong_rate=draw(rate(0.05)),
        empty_frame_rate=draw(rate(0.02)),
        duplicate_rate=draw(rate(0.05)),
        blank_line_rate=draw(rate(0.05)),
        book_without_event_type_rate=draw(rate(0.5)),
        extra_event_rate=draw(rate(0.2)),
        reconnect_every=draw(st.sampled_from([0, 0, 250])),
        rest_error_rate=draw(st.sampled_from([0.0, 0.0, 0.1])),
        legacy_price_change_fraction=0.0,  # the reference ignores the older form (a departure)
        ws_files=1,  # the reference reads only the first file of each kind
        rest_files=1,
    )
    return {
        "shape": shape,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "order": draw(st.sampled_from(["file", "file", "reversed", "shuffled"])),
        "shuffle_seed": draw(st.integers(0, 2**16)),
        "context_limit": draw(st.sampled_from(CONTEXT_LIMITS)),
        "evidence_seconds": draw(st.sampled_from(EVIDENCE_SECONDS)),
        "workers": draw(st.sampled_from([1, 2, 3])),
    }


def _synth_rows(work: Path, shape: CaptureShape, seed: int) -> list[dict[str, Any]]:
    generate_capture(work / "capture", shape, seed, path_base=work)
    with contextlib.chdir(work):
        return reconstruct(Path(MANIFEST_10B))


def _reorder(rows: list[dict[str, Any]], order: str, seed: int) -> list[dict[str, Any]]:
    if order == "reversed":
        return rows[::-1]
    if order == "shuffled":
        rows = list(rows)
        random.Random(seed).shuffle(rows)
    return rows


@pytest.mark.requires_reference
@settings(max_examples=_examples(18), **HYPOTHESIS)
@given(case=synth_cases())
def test_synth_captures_equal_reference(case: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = _reorder(_synth_rows(work, case["shape"], case["seed"]), case["order"], case["shuffle_seed"])
        outcome = _compare(work, rows, _flags(case["context_limit"], case["evidence_seconds"]), case["workers"])
        event(f"gate {outcome['streamer']['manifest']['gate_status']}")
        event(f"second pass {bool(_streaming(outcome).get('second_passes'))}")
        event(f"workers {_streaming(outcome)['workers']}")


# ---------------------------------------------------------------------------------------------
# b) hand-built captures: raw websocket lines, comparison rows written directly

BASE = datetime(2026, 4, 19, 17, 0, tzinfo=timezone.utc)
#: A token some rows and new_market items name but no other feed item; rows also name "None" (what
#: str() makes of a missing asset_id) and the falsy ids "", null and 0.
UNSEEN = "999"
PRICES = ("0.1", "0.25", "0.4", "0.5", "1")
PADDED = {"0.1": "0.10", "0.25": "0.250", "0.4": "0.40", "0.5": "0.50", "1": "1.00"}
ABSENT = ("0.33", "0.66")  # prices no feed line uses
BLANKS = ("", "   ", "\t", "\x0c", "\u00a0", "\u2003 ")
#: ISO-8601 spellings beside the recorder's own (27 characters like it, or not), parseable or not.
ODD_TIMES = {
    "space": "%Y-%m-%d %H:%M:%S.%fZ",
    "comma": "%Y-%m-%dT%H:%M:%S,%fZ",
    "frac7": "%Y-%m-%dT%H:%M:%S.%f7Z",
    "minus_zero": "%Y-%m-%dT%H:%M:%S.%f-00:00",
    "compact_offset": "%Y-%m-%dT%H:%M:%S.%f+0000",
    "space_z": "%Y-%m-%dT%H:%M:%S.%f Z",
    "basic": "%Y%m%dT%H%M%S.%fZ",
    "week": "%G-W%V-%uT%H:%M:%S.%fZ",
    "lower_z": "%Y-%m-%dT%H:%M:%S.%fz",
    "fullwidth_year": "\uff12\uff10\uff12\uff16-%m-%dT%H:%M:%S.%fZ",
    "hour_24": "%Y-%m-%dT24:%M:%S.%fZ",
    "signed_fraction": "%Y-%m-%dT%H:%M:%S.+%fZ",
}
TIME_STYLES = ("micro", "micro", "micro", "micro", "milli", "seconds", "offset", "naive", "shifted",
               "garbage", "bad_date", "empty", "null", "missing", "falsy", "frac5", *ODD_TIMES)


def format_time(us: int, style: str) -> Any:
    """A receive time ``us`` microseconds after :data:`BASE`, written in one of the forms seen."""
    moment = BASE + timedelta(microseconds=us)
    if style == "micro":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == "milli":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == "seconds":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return moment.isoformat()
    if style == "naive":
        return moment.replace(tzinfo=None).isoformat()
    if style == "shifted":
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    if style == "garbage":
        return "not-a-time"
    if style == "bad_date":
        return "2026-19-04T17:00:00Z"
    if style == "empty":
        return ""
    if style == "null":
        return None
    if style in ODD_TIMES:
        return moment.strftime(ODD_TIMES[style])
    if style == "frac5":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-1] + "Z"
    if style == "falsy":  # not a string, but falsy: the reference treats it as absent
        return [0, False, []][us % 3]
    raise ValueError(style)


def _put_time(obj: dict[str, Any], key: str, us: int, style: str) -> None:
    if style != "missing":
        obj[key] = format_time(us, style)


@st.composite
def _times(draw: st.DrawFn, count: int) -> list[int]:
    """Receive times: in order, jittered (steps back a little), or wild (steps back minutes)."""
    order = draw(st.sampled_from(["monotone", "monotone", "jitter", "wild", "wild"]))
    low, high = {"monotone": (0, 1_500_000), "jitter": (-1_000_000, 1_500_000),
                 "wild": (-60_000_000, 60_000_000)}[order]
    step = st.one_of(st.integers(low, high), st.sampled_from([0, 1, 500_000, 1_000_000]))
    now, out = 0, []
    for _ in range(count):
        now += draw(step)
        out.append(now)
    return out


class _Prices:
    """How one example's feed writes each price: canonical or padded ("0.50"), string or number."""

    def __init__(self, padded: set[str]) -> None:
        self.padded = padded
        self.diff_prices = [price for price in PRICES if price not in padded] + list(ABSENT)

    def feed(self, draw: st.DrawFn) -> Any:
        price = draw(st.sampled_from(PRICES))
        if price in self.padded:
            return PADDED[price]
        if draw(st.integers(0, 9)) == 0:  # a JSON number whose str() is the canonical text
            return int(price) if price == "1" else float(price)
        return price


def _asset(draw: st.DrawFn, item: dict[str, Any]) -> None:
    choice = draw(st.sampled_from(["101", "202", "101", "202", "303", 101, "777", "missing", "", 0, "1"]))
    if choice != "missing":
        item["asset_id"] = choice


@st.composite
def _levels(draw: st.DrawFn, prices: _Prices) -> Any:
    kind = draw(st.sampled_from(["list", "list", "list", "null", "text", "object"]))
    if kind == "null":
        return None
    if kind == "text":
        return "ab"
    if kind == "object":
        return {"0.5": "1"}
    count = draw(st.integers(0, 3))
    return [{"price": prices.feed(draw), "size": draw(st.sampled_from(["1", "2.5", "100"]))} for _ in range(count)]


@st.composite
def _item(draw: st.DrawFn, prices: _Prices) -> dict[str, Any]:
    kind = draw(st.sampled_from([
        "book", "untyped_book", "price_change", "price_change", "price_change", "price_change",
        "best_bid_ask", "last_trade_price", "tick_size_change", "new_market", "market_resolved",
        "unknown", "odd_type"]))
    stamp = draw(st.sampled_from(["1776618000123", 1776618000123]))
    item: dict[str, Any]
    if kind in ("book", "untyped_book"):
        item = {"market": "0xm", "bids": draw(_levels(prices)), "asks": draw(_levels(prices)),
                "timestamp": stamp, "hash": draw(st.sampled_from(["h1", "h2", None, "\udfff", math.nan]))}
        if kind == "book":
            item["event_type"] = "book"
            _asset(draw, item)
        else:
            item["asset_id"] = draw(st.sampled_from(["101", "202", "303", 202]))
        return item
    if kind == "price_change":
        entries: list[Any] = []
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.integers(0, 9)) == 0:
                entries.append(draw(st.sampled_from([3, "x", None, []])))
                continue
            entry: dict[str, Any] = {
                "price": prices.feed(draw),
                "size": draw(st.sampled_from(["0", "1", "2.5", "100", "10.00", 3])),
                "side": draw(st.sampled_from(["BUY", "SELL", "BUY", "SELL", "buy"])),
                "hash": draw(st.sampled_from(["ha", "hb", "h\ud800", "h\u00e9\U0001f600", -math.inf])),
                "best_bid": draw(st.sampled_from(["0.4", "0.45", None])),
                "best_ask": draw(st.sampled_from(["0.5", "0.55"])),
            }
            for key in draw(st.sets(st.sampled_from(["price", "size", "side", "hash", "best_bid"]), max_size=2)):
                if draw(st.integers(0, 3)) == 0:
                    del entry[key]
            _asset(draw, entry)
            entries.append(entry)
        item = {"event_type": "price_change", "market": "0xm", "price_changes": entries, "timestamp": stamp}
        if draw(st.integers(0, 9)) == 0:
            item["price_changes"] = draw(st.sampled_from([None, "ab", {"a": 1}]))
        return item
    if kind == "best_bid_ask":
        item = {"event_type": "best_bid_ask", "market": "0xm", "best_bid": prices.feed(draw),
                "best_ask": prices.feed(draw), "spread": "0.01", "timestamp": stamp}
    elif kind == "last_trade_price":
        item = {"event_type": "last_trade_price", "market": "0xm", "price": prices.feed(draw), "size": "5",
                "side": draw(st.sampled_from(["BUY", "SELL"])), "fee_rate_bps": "0", "timestamp": stamp}
    elif kind == "tick_size_change":
        item = {"event_type": "tick_size_change", "market": "0xm", "old_tick_size": "0.01",
                "new_tick_size": "0.001", "timestamp": stamp}
    elif kind == "new_market":
        ids = draw(st.lists(st.sampled_from(["101", "202", "303", UNSEEN, 101, "888"]), max_size=3))
        key = draw(st.sampled_from(["assets_ids", "clob_token_ids", "both"]))
        if draw(st.integers(0, 4)) == 0:  # the reference iterates whatever it is
            ids = draw(st.sampled_from(["101", {"202": "Yes", "101": "No"}, "", 0]))
        item = {"event_type": "new_market", "market": "0xnew", "question": "Will it?", "timestamp": stamp}
        if key == "both":
            item["assets_ids"] = []
            item["clob_token_ids"] = ids
        else:
            item[key] = ids
        if draw(st.booleans()):
            return item  # half the time without an asset_id of its own
    elif kind == "market_resolved":
        item = {"event_type": "market_resolved", "market": "0xm", "timestamp": stamp}
    elif kind == "unknown":
        item = draw(st.sampled_from([{"foo": 1}, {"bids": []}, {"asks": [], "bids": []}, {"buys": [], "sells": []}]))
        item = dict(item)
    else:
        item = {"event_type": draw(st.sampled_from([5, "", "custom"])), "bids": [], "asks": []}
    _asset(draw, item)
    return item


@st.composite
def _payload(draw: st.DrawFn, prices: _Prices) -> Any:
    kind = draw(st.sampled_from(["item", "item", "item", "list", "list", "empty", "scalar"]))
    if kind == "item":
        return draw(_item(prices))
    if kind == "list":
        elements = st.one_of(_item(prices), _item(prices), st.sampled_from([3, "x", None, []]))
        return draw(st.lists(elements, min_size=1, max_size=4))
    if kind == "empty":
        return []
    return draw(st.sampled_from(["hello", 5]))


@st.composite
def _ws_row(draw: st.DrawFn, prices: _Prices, us: int, sequence: int) -> str:
    row: dict[str, Any] = {}
    _put_time(row, "received_at_utc", us, draw(st.sampled_from(("micro",) * 10 + TIME_STYLES)))
    seq = draw(st.sampled_from(["int", "int", "int", "missing", "null", "huge", "nan", "inf"]))
    if seq != "missing":
        row["global_message_sequence"] = {"int": sequence, "null": None, "huge": 2**60 + sequence,
                                          "nan": math.nan, "inf": math.inf}[seq]
    if draw(st.integers(0, 9)) == 0:
        row["json"] = None
        row["text"] = draw(st.sampled_from(["PONG", "INVALID OPERATION"]))
    elif draw(st.integers(0, 19)) != 0:  # else: no payload at all
        row["json"] = draw(_payload(prices))
    return json.dumps(row)


def _comparison_time(draw: st.DrawFn, times: list[int], evidence_seconds: int) -> int:
    """A checkpoint time: at, just inside or just outside some event's evidence window, or anywhere."""
    if not times or draw(st.integers(0, 5)) == 0:
        return draw(st.integers(-20_000_000, 200_000_000))
    window = evidence_seconds * 1_000_000
    offset = draw(st.sampled_from([0, window, -window, window + 1, -window - 1, window - 1, 1 - window]))
    return draw(st.sampled_from(times)) + offset


@st.composite
def _diff(draw: st.DrawFn, prices: _Prices) -> Any:
    kind = draw(st.sampled_from(["diff", "diff", "diff", "diff", "missing", "null", "empty"]))
    if kind != "diff":
        return {"missing": "missing", "null": None, "empty": {}}[kind]
    price = st.sampled_from(prices.diff_prices)
    diff: dict[str, Any] = {}
    for key in ("missing_prices", "extra_prices"):
        if draw(st.integers(0, 3)):
            diff[key] = draw(st.lists(price, max_size=2))
    if draw(st.integers(0, 3)):
        delta = st.one_of(
            st.builds(lambda p: {"price": p, "rest_size": "10", "local_size": "12"}, price),
            st.sampled_from([{"price": None, "rest_size": "1"}, {"rest_size": "1"}, "0.5", 3, None]))
        diff["size_deltas"] = draw(st.lists(delta, max_size=3))
    return diff


@st.composite
def _size_only_diffs(draw: st.DrawFn, prices: _Prices, hint: str | None) -> tuple[Any, Any]:
    """Bid and ask diffs with size deltas only (the rows the evidence decides about).

    ``hint``: a price the row's token changed near its checkpoint, used when it is a diff price.
    """
    price = st.sampled_from(prices.diff_prices)
    delta = st.builds(lambda p: {"price": p, "rest_size": "10", "local_size": "12"}, price)
    deltas = draw(st.lists(delta, min_size=1, max_size=3))
    if hint in prices.diff_prices and draw(st.booleans()):
        deltas[0] = {"price": hint, "rest_size": "10", "local_size": "12"}
    split = draw(st.integers(0, len(deltas)))
    bid: dict[str, Any] = {"missing_prices": [], "extra_prices": [], "size_deltas": deltas[:split]}
    ask: dict[str, Any] = {"missing_prices": [], "extra_prices": [], "size_deltas": deltas[split:]}
    if draw(st.booleans()):
        ask = {"size_deltas": ask["size_deltas"]} if ask["size_deltas"] else draw(st.sampled_from([{}, None]))
    return bid, ask


@st.composite
def _comparison_row(draw: st.DrawFn, prices: _Prices, times: list[int], lines: int, event_lines: list[int],
                    evidence_seconds: int, changes: dict[str, list[tuple[int, str]]]) -> dict[str, Any]:
    """A comparison row; half of those whose token has price changes take their time and a price from one."""
    row: dict[str, Any] = {}
    size_only = draw(st.integers(0, 2)) > 0
    status = "divergent" if size_only else draw(st.sampled_from(
        ["divergent"] * 4 + ["match", "no_local_book", "missing", "odd"]))
    if status != "missing":
        row["comparison_status"] = "stale" if status == "odd" else status
    token = draw(st.sampled_from(["101", "101", "202", "202", "303", "None", UNSEEN, 101, "", None, 0, "missing"]))
    if token != "missing":
        row["token_id"] = token
    anchor: tuple[int, str] | None = None
    if changes.get(str(token)) and draw(st.booleans()):
        anchor = draw(st.sampled_from(changes[str(token)]))
    market = draw(st.sampled_from(["object", "object", "null", "missing", "empty", "list"]))
    if market == "object":
        row["market"] = {"market_slug": "slug-a", "condition_id": "0xm",
                         "outcome": draw(st.sampled_from(["Yes", None]))}
    elif market != "missing":
        row["market"] = {"null": None, "empty": {}, "list": []}[market]
    line = draw(st.one_of(
        st.sampled_from(event_lines or [1]), st.sampled_from(event_lines or [1]),
        st.none(), st.just("missing"),
        st.integers(-3, lines + 3),
        st.floats(-2.0, lines + 2.0, allow_nan=False),
        st.sampled_from([True, float("inf"), float("-inf"), float("nan")])))
    if line != "missing":
        row["last_applied_ws_line"] = line
    style = "micro" if size_only and draw(st.booleans()) else draw(st.sampled_from(TIME_STYLES))
    at = _comparison_time(draw, [anchor[0]] if anchor else times, evidence_seconds)
    _put_time(row, "rest_checkpoint_received_at_utc", at, style)
    if size_only:
        row["bid_top_n_diff"], row["ask_top_n_diff"] = draw(_size_only_diffs(prices, anchor and anchor[1]))
    else:
        for key in ("bid_top_n_diff", "ask_top_n_diff"):
            diff = draw(_diff(prices))
            if diff != "missing":
                row[key] = diff
    for key in ("best_bid_match", "best_ask_match", "spread_match", "level_count_match"):
        value = True if size_only else draw(st.sampled_from([True, True, True, False, None, "missing"]))
        if value != "missing":
            row[key] = value
    row.update({
        "rest_checkpoint_sequence": draw(st.integers(1, 9)),
        "rest_checkpoint_file": "capture/rest.jsonl.gz",
        "rest_checkpoint_line": draw(st.integers(1, 9)),
        "raw_websocket_file": "capture/ws.jsonl.gz",
        "applied_ws_message_count": draw(st.integers(0, 50)),
        "applied_ws_line_span": [1, lines],
        "applied_ws_global_sequence_span": draw(st.sampled_from([[1, 5], [None, None]])),
        "last_applied_ws_received_at_utc": format_time(draw(st.integers(0, 10**8)), "micro"),
        "last_local_update_received_at_utc": draw(st.sampled_from([None, "2026-04-19T17:00:01.000000Z"])),
    })
    return row


def _note_changes(changes: dict[str, list[tuple[int, str]]], text: str, us: int) -> None:
    """Record (receive time, price text) of each price_change entry of a row, by str(asset_id)."""
    payload = json.loads(text).get("json")
    for item in payload if isinstance(payload, list) else [payload]:
        if isinstance(item, dict) and item.get("event_type") == "price_change" and isinstance(
                item.get("price_changes"), list):
            for entry in item["price_changes"]:
                if isinstance(entry, dict) and entry.get("price") is not None:
                    changes.setdefault(str(entry.get("asset_id")), []).append((us, str(entry["price"])))


@st.composite
def hand_built_cases(draw: st.DrawFn) -> dict[str, Any]:
    prices = _Prices(draw(st.sets(st.sampled_from(PRICES), max_size=2)))
    evidence_seconds = draw(st.sampled_from([10] * 6 + [1] * 2 + [0] * 2))
    count = draw(st.integers(1, 45))
    times = draw(_times(count))
    ws_lines: list[bytes] = []
    line = 0
    event_lines: list[int] = []
    row_times: list[int] = []
    changes: dict[str, list[tuple[int, str]]] = {}
    for index, us in enumerate(times):
        kind = draw(st.sampled_from(["row"] * 8 + ["blank", "crlf", "cr_pair"]))
        if kind == "blank":
            ws_lines.append(draw(st.sampled_from(BLANKS)).encode())
            line += 1
            continue
        text = draw(_ws_row(prices, us, index + 1))
        _note_changes(changes, text, us)
        line += 1
        event_lines.append(line)
        row_times.append(us)
        if kind == "crlf":
            text += "\r"
        elif kind == "cr_pair":  # a lone \r ends a line too (universal newlines)
            second = draw(_ws_row(prices, us, index + 1))
            _note_changes(changes, second, us)
            text += "\r" + second
            line += 1
            event_lines.append(line)
        ws_lines.append(text.encode())
    rest_lines = [
        json.dumps({"checkpoint_sequence": 1, "received_at_utc": format_time(0, "micro"), "http_status": 200,
                    "json": []}).encode(),
        b"",
        json.dumps({"checkpoint_sequence": 2, "http_status": 404, "json": {"error": "no book"}}).encode(),
    ][: draw(st.integers(0, 3))]
    rows = draw(st.lists(_comparison_row(prices, row_times, line, event_lines, evidence_seconds, changes),
                         min_size=1, max_size=12))
    return {"ws_lines": ws_lines, "rest_lines": rest_lines, "rows": rows,
            "context_limit": draw(st.sampled_from([5] * 6 + [1] * 2 + [0] * 2)),
            "evidence_seconds": evidence_seconds,
            # a markets list lets --workers deal the tokens into shares (the reference ignores it)
            "markets": draw(st.sampled_from(MARKET_LAYOUTS)),
            "workers": draw(st.sampled_from([1, 2, 3]))}


#: 10B markets lists for hand-built captures: none, pairs, a token listed twice, the ``None``
#: token (events without an asset_id), a token no event names.
MARKET_LAYOUTS = [None, [["101", "202"], ["303"]], [["101"], ["202"], ["303", "None"]],
                  [["101", "303"], ["202", "101", "777"]], [["202"], ["101", UNSEEN], ["1", "None", "303"]]]


@pytest.mark.requires_reference
@settings(max_examples=_examples(80), **HYPOTHESIS)
@given(case=hand_built_cases())
def test_hand_built_captures_equal_reference(case: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        refcompare.write_capture(work, case["ws_lines"], case["rest_lines"], case["markets"])
        outcome = _compare(work, case["rows"], _flags(case["context_limit"], case["evidence_seconds"]),
                           case["workers"])
        streaming = _streaming(outcome)
        event(f"workers {streaming['workers']}")
        event(f"gate {outcome['streamer']['manifest']['gate_status']}")
        event(f"misses {bool(streaming.get('context_misses'))}")
        event(f"exact recomputation {streaming.get('exact_recomputation')}")


# ---------------------------------------------------------------------------------------------
# fixed cases: every flag value, the second pass, late events, the evidence cap


@pytest.fixture(scope="module")
def synth_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """One realistic capture (3 markets, drops, blank lines, duplicates) and its oracle rows."""
    work = tmp_path_factory.mktemp("synth")
    shape = CaptureShape(markets=3, ws_lines=2500, drop_rate=0.03, blank_line_rate=0.01, duplicate_rate=0.01,
                         book_without_event_type_rate=0.2, rest_interval_seconds=2.0)
    return work, _synth_rows(work, shape, 20260419)


@pytest.mark.requires_reference
@pytest.mark.parametrize("context_limit", CONTEXT_LIMITS)
@pytest.mark.parametrize("evidence_seconds", EVIDENCE_SECONDS)
def test_every_context_limit_and_evidence_window(synth_capture: tuple[Path, list[dict[str, Any]]],
                                                  context_limit: int, evidence_seconds: int) -> None:
    work, rows = synth_capture
    outcome = _compare(work, rows, _flags(context_limit, evidence_seconds))
    assert outcome["streamer"]["manifest"]["row_counts"]["divergent_rows"] > 0


@pytest.mark.requires_reference
def test_default_flags(synth_capture: tuple[Path, list[dict[str, Any]]]) -> None:
    work, rows = synth_capture
    _compare(work, rows, [])


@pytest.mark.requires_reference
@pytest.mark.parametrize("extra", [["--price-evidence-seconds", "-1"], ["--price-evidence-seconds", "100000"],
                                   ["--context-limit", "100"]], ids=["negative-window", "huge-window", "huge-context"])
def test_extreme_flag_values(synth_capture: tuple[Path, list[dict[str, Any]]], extra: list[str]) -> None:
    work, rows = synth_capture
    _compare(work, rows, extra)


@pytest.mark.requires_reference
@pytest.mark.parametrize("form", ["zero_bytes", "gzip_of_nothing"])
def test_empty_inputs(tmp_path: Path, form: str) -> None:
    refcompare.write_capture(tmp_path, [], [])
    flags = refcompare.write_analysis_inputs(tmp_path, MANIFEST_10B, [])
    if form == "zero_bytes":
        for name in (refcompare.CAPTURE_FILES["ws"], refcompare.CAPTURE_FILES["rest"],
                     refcompare.ANALYSIS_FILES["comparison_rows"]):
            (tmp_path / name).write_bytes(b"")
    outcome = refcompare.run_both(tmp_path, flags)
    refcompare.assert_same(outcome)
    assert outcome["streamer"]["manifest"]["gate_status"] == "WS_DIVERGENCE_ANALYSIS_PASS"


@pytest.mark.requires_reference
@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_rows_out_of_time_order_are_answered_exactly(synth_capture: tuple[Path, list[dict[str, Any]]],
                                                     order: str) -> None:
    """Rows taken long after their checkpoint lost their context to eviction: the second pass answers."""
    work, rows = synth_capture
    outcome = _compare(work, _reorder(rows, order, 7), _flags(5, 10))
    streaming = _streaming(outcome)
    assert streaming["context_misses"] > 0
    assert streaming["second_passes"] >= 1


def test_misses_answered_a_few_per_pass_give_the_same_manifest(synth_capture: tuple[Path, list[dict[str, Any]]],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A second pass answers EXACT_BATCH misses (its memory bound): more, smaller passes, same answer."""
    work, rows = synth_capture
    flags = refcompare.write_analysis_inputs(work, MANIFEST_10B, _reorder(rows, "shuffled", 11))

    def analyze(label: str) -> dict[str, Any]:
        argv = ["analyze", "--no-progress", "--workers", "1", *[item for pair in flags.items() for item in pair],
                "--output-manifest", f"out-{label}/m.json", "--output-report", f"out-{label}/r.md"]
        with contextlib.chdir(work):
            assert cli.main(argv) in (0, 1)
        return refcompare.load_manifest(work / f"out-{label}/m.json")

    whole = analyze("batch-default")
    monkeypatch.setattr(analysis, "EXACT_BATCH", 7)
    batched = analyze("batch-7")
    misses = whole["streaming"]["context_misses"]
    assert misses > 7 and batched["streaming"]["context_misses"] == misses
    assert whole["streaming"]["second_passes"] == math.ceil(misses / 2000)
    assert batched["streaming"]["second_passes"] == math.ceil(misses / 7)
    refcompare.assert_equal_manifests(refcompare.comparable(whole), refcompare.comparable(batched))


def _price_change(token: str, price: str, size: str = "5", side: str = "BUY") -> dict[str, Any]:
    return {"event_type": "price_change", "market": "0xm", "timestamp": "1776618000000",
            "price_changes": [{"asset_id": token, "price": price, "size": size, "side": side,
                               "hash": "h", "best_bid": "0.4", "best_ask": "0.6"}]}


def _book(token: str) -> dict[str, Any]:
    return {"event_type": "book", "asset_id": token, "market": "0xm", "timestamp": "1776618000000", "hash": "b",
            "bids": [{"price": "0.4", "size": "10"}], "asks": [{"price": "0.6", "size": "10"}]}


def _ws(us: int, payload: Any, sequence: int) -> bytes:
    return json.dumps({"received_at_utc": format_time(us, "micro"), "global_message_sequence": sequence,
                       "json": payload}).encode()


def _divergent(token: str, line: int | None, at_us: int, price: str = "0.4") -> dict[str, Any]:
    return {"comparison_status": "divergent", "token_id": token,
            "market": {"market_slug": "m", "condition_id": "0xm", "outcome": "Yes"},
            "last_applied_ws_line": line, "rest_checkpoint_received_at_utc": format_time(at_us, "micro"),
            "rest_checkpoint_sequence": 1, "best_bid_match": True, "best_ask_match": True, "spread_match": True,
            "level_count_match": True,
            "bid_top_n_diff": {"missing_prices": [], "extra_prices": [],
                               "size_deltas": [{"price": price, "rest_size": "1", "local_size": "2"}]},
            "ask_top_n_diff": {"missing_prices": [], "extra_prices": [], "size_deltas": []}}


@pytest.mark.requires_reference
def test_receive_times_stepping_back_beyond_the_allowance(tmp_path: Path) -> None:
    """A row received two minutes "earlier" than the stream, inside a window already closed."""
    lines = [_ws(0, _book("101"), 1)]
    lines += [_ws(second * 1_000_000, _price_change("101", "0.4"), second + 1) for second in range(1, 120, 3)]
    lines.append(_ws(2_000_000, _price_change("101", "0.4", size="7"), 99))  # late by ~2 minutes
    lines += [_ws(second * 1_000_000, _price_change("101", "0.4"), second + 200) for second in range(121, 200, 3)]
    refcompare.write_capture(tmp_path, lines, [])
    rows = [_divergent("101", 2, 3_000_000), _divergent("101", 30, 100_000_000), _divergent("101", None, 2_500_000)]
    outcome = _compare(tmp_path, rows, _flags(5, 10))
    assert _streaming(outcome)["exact_recomputation"] is True
    evidence = outcome["streamer"]["manifest"]["divergence_rows"][0]["nearby_affected_price_change_evidence"]
    assert [item["line_number"] for item in evidence] == [2, 3, 4, 5, 6, 42]


@pytest.mark.requires_reference
def test_price_evidence_is_capped_at_twenty(tmp_path: Path) -> None:
    lines = [_ws(0, _book("101"), 1)]
    lines += [_ws(index * 100_000, _price_change("101", "0.4", size=str(index)), index + 1) for index in range(1, 40)]
    refcompare.write_capture(tmp_path, lines, [])
    outcome = _compare(tmp_path, [_divergent("101", 10, 2_000_000), _divergent("101", 40, 1_000_000)], _flags(5, 10))
    for row in outcome["streamer"]["manifest"]["divergence_rows"]:
        assert len(row["nearby_affected_price_change_evidence"]) == 20


@pytest.mark.requires_reference
def test_many_results_wait_behind_a_pending_row(tmp_path: Path) -> None:
    """The first row waits for after-context until the end; 4600 finished rows queue behind it (spilled)."""
    lines = [_ws(0, _book("101"), 1)] + [_ws(us * 1000, _book("202"), us + 1) for us in range(1, 30)]
    refcompare.write_capture(tmp_path, lines, [])
    waiting = _divergent("101", 1, 0)
    quick = dict(_divergent("202", None, 0), rest_checkpoint_received_at_utc=None)
    outcome = _compare(tmp_path, [waiting] + [quick] * 4600, _flags(5, 10))
    assert _streaming(outcome)["reordered_results_spilled"] > 0


# ---------------------------------------------------------------------------------------------
# a deliberate departure: evidence prices match as decimals


def _analyze_in_process(run_cli: Callable[..., Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    flags = refcompare.write_analysis_inputs(Path("."), MANIFEST_10B, rows)
    run = run_cli("analyze", "--no-progress", *[item for pair in flags.items() for item in pair],
                  "--output-manifest", "out/manifest.json", "--output-report", "out/report.md")
    assert run.stderr == []
    return json.loads(Path("out/manifest.json").read_text())


def test_evidence_prices_match_as_decimals(workdir: Path, run_cli: Callable[..., Any]) -> None:
    """"0.50" in the feed is evidence for "0.5" in a diff (the reference compares strings)."""
    lines = [_ws(0, _book("101"), 1), _ws(1_000_000, _price_change("101", "0.50"), 2),
             _ws(2_000_000, _price_change("101", ".5", size="6"), 3)]
    refcompare.write_capture(workdir, lines, [])
    manifest = _analyze_in_process(run_cli, [_divergent("101", 3, 2_500_000, price="0.5")])
    row = manifest["divergence_rows"][0]
    assert row["classification"] == "timing_or_feed_lag_likely"
    assert [(item["line_number"], [change["price"] for change in item["matched_price_changes"]])
            for item in row["nearby_affected_price_change_evidence"]] == [(2, ["0.50"]), (3, [".5"])]
    if refcompare.reference_available():  # the reference, matching strings, finds nothing
        outcome = refcompare.run_both(workdir, refcompare.write_analysis_inputs(
            workdir, MANIFEST_10B, [_divergent("101", 3, 2_500_000, price="0.5")]))
        reference_row = outcome["reference"]["manifest"]["divergence_rows"][0]
        assert reference_row["nearby_affected_price_change_evidence"] == []
        assert reference_row["classification"] == "size_only_unexplained"


# ---------------------------------------------------------------------------------------------
# what the reference does by accident, held by streamer (it once differed on each)


@pytest.mark.parametrize("token, asset", [("", ""), (None, None), (0, 0)], ids=["empty", "null", "zero"])
def test_falsy_token_id_has_no_context(workdir: Path, run_cli: Callable[..., Any], token: Any, asset: Any) -> None:
    """The reference indexes only truthy token ids: a row without one has no context, even when
    feed items carry the same str(asset_id) ("", "None" for a missing one, "0")."""
    book = _book("x")
    change = _price_change("x", "0.4")
    if asset is None:
        del book["asset_id"]
        book["event_type"] = "tick_size_change"
        del change["price_changes"][0]["asset_id"]
    else:
        book["asset_id"] = asset
        change["price_changes"][0]["asset_id"] = asset
    refcompare.write_capture(workdir, [_ws(0, book, 1), _ws(1_000_000, change, 2)], [])
    row = _divergent("x", 2, 1_000_000)
    row["token_id"] = token
    divergence = _analyze_in_process(run_cli, [row])["divergence_rows"][0]
    assert divergence["nearest_websocket_messages_for_token"] == {"before_or_at": [], "after": []}
    assert divergence["nearby_affected_price_change_evidence"] == []
    assert divergence["classification"] == "insufficient_raw_context"


@pytest.mark.parametrize("falsy_first", [True, False], ids=["falsy-first", "named-first"])
@pytest.mark.parametrize("token, named", [(None, "None"), (0, "0"), (False, "False")], ids=["null", "zero", "false"])
def test_falsy_token_id_shares_a_named_token(workdir: Path, run_cli: Callable[..., Any], token: Any, named: str,
                                             falsy_first: bool) -> None:
    """But a falsy id is looked up as str(token_id): when another row names "None" ("0", "False"), the
    falsy row gets that token's context and evidence, whatever the order of the rows."""
    book = _book(named)
    change = _price_change(named, "0.4")
    if token is None:  # str(None) is also the token of items without asset_id
        book["event_type"] = "tick_size_change"
        del book["asset_id"]
        del change["price_changes"][0]["asset_id"]
    refcompare.write_capture(workdir, [_ws(0, book, 1), _ws(1_000_000, change, 2)], [])
    falsy = _divergent(named, 2, 1_000_000)
    falsy["token_id"] = token
    rows = [falsy, _divergent(named, 2, 1_000_000)]
    result = _analyze_in_process(run_cli, rows if falsy_first else rows[::-1])["divergence_rows"]
    falsy_result, named_result = result if falsy_first else result[::-1]
    before = named_result["nearest_websocket_messages_for_token"]["before_or_at"]
    assert [item["line_number"] for item in before] == [1, 2]
    assert named_result["nearby_affected_price_change_evidence"]
    for key in ("nearest_websocket_messages_for_token", "nearby_affected_price_change_evidence", "classification"):
        assert falsy_result[key] == named_result[key]


@pytest.mark.parametrize("value, before", [("Infinity", [1, 2]), ("-Infinity", []), ("NaN", [1, 2])])
def test_non_finite_last_applied_line(workdir: Path, run_cli: Callable[..., Any], value: str,
                                      before: list[int]) -> None:
    """Python's json (so the reference) reads these as floats; bisect puts them after every line (NaN too)."""
    refcompare.write_capture(workdir, [_ws(0, _book("101"), 1), _ws(1_000_000, _book("101"), 2)], [])
    flags = refcompare.write_analysis_inputs(Path("."), MANIFEST_10B, [])
    raw = json.dumps(_divergent("101", 1, 0)).replace('"last_applied_ws_line": 1', f'"last_applied_ws_line": {value}')
    with gzip.open(refcompare.ANALYSIS_FILES["comparison_rows"], "wb") as out:
        out.write(raw.encode() + b"\n")
    run = run_cli("analyze", "--no-progress", *[item for pair in flags.items() for item in pair],
                  "--output-manifest", "out/manifest.json", "--output-report", "out/report.md")
    assert run.stderr == []
    divergence = json.loads(Path("out/manifest.json").read_text())["divergence_rows"][0]
    context = divergence["nearest_websocket_messages_for_token"]["before_or_at"]
    assert [item["line_number"] for item in context] == before


@pytest.mark.parametrize("ids", [["7"], "7", {"7": "yes"}], ids=["list", "string", "object"])
def test_new_market_assets_ids_iterated_as_the_reference(workdir: Path, run_cli: Callable[..., Any], ids: Any) -> None:
    """The reference iterates assets_ids whatever it is: a string gives its characters, an object its keys."""
    item = {"event_type": "new_market", "market": "0xnew", "timestamp": "1", "assets_ids": ids}
    refcompare.write_capture(workdir, [_ws(0, item, 1)], [])
    divergence = _analyze_in_process(run_cli, [_divergent("7", 1, 0)])["divergence_rows"][0]
    assert divergence["nearest_websocket_messages_for_token"]["before_or_at"] == [{
        "line_number": 1, "global_sequence": 1, "received_at_utc": format_time(0, "micro"), "received_epoch":
        BASE.timestamp(), "event_types": ["new_market"],
        "events": [{"event_type": "new_market", "market": "0xnew", "timestamp": "1"}]}]
    assert divergence["classification"] == "size_only_unexplained"


def test_lone_surrogate_in_a_feed_string(workdir: Path, run_cli: Callable[..., Any]) -> None:
    """Valid JSON ("\\ud800" escaped) the reference writes back escaped (it once crashed streamer)."""
    line = _ws(0, _book("101"), 1).replace(b'"hash": "b"', b'"hash": "\\ud800"')
    refcompare.write_capture(workdir, [line], [])
    divergence = _analyze_in_process(run_cli, [_divergent("101", 1, 0)])["divergence_rows"][0]
    assert divergence["nearest_websocket_messages_for_token"]["before_or_at"][0]["events"][0]["hash"] == "\ud800"


@pytest.mark.parametrize("text, check", [
    ("NaN", math.isnan), ("Infinity", lambda value: value == math.inf), ("1e400", lambda value: value == math.inf),
    ("-Infinity", lambda value: value == -math.inf)], ids=["nan", "infinity", "overflow", "minus-infinity"])
def test_non_finite_numbers_in_feed_rows(workdir: Path, run_cli: Callable[..., Any], text: str,
                                         check: Callable[[Any], bool]) -> None:
    """Python's json reads NaN, Infinity and 1e400 as floats; the reference writes them back as json does
    (streamer once wrote null)."""
    line = _ws(0, _book("101"), 1).replace(b'"global_message_sequence": 1', b'"global_message_sequence": '
                                          + text.encode()).replace(b'"hash": "b"', b'"hash": ' + text.encode())
    refcompare.write_capture(workdir, [line], [])
    entry = _analyze_in_process(run_cli, [_divergent("101", 1, 0)])["divergence_rows"][0][
        "nearest_websocket_messages_for_token"]["before_or_at"][0]
    assert isinstance(entry["global_sequence"], float) and check(entry["global_sequence"])
    assert isinstance(entry["events"][0]["hash"], float) and check(entry["events"][0]["hash"])


# ---------------------------------------------------------------------------------------------
# numbers the fast parser cannot hold


def test_token_id_as_a_big_json_number(workdir: Path, run_cli: Callable[..., Any]) -> None:
    """orjson reads an integer beyond 64 bits as a float; a token id so read is read again exactly."""
    token = "94022367472047775158269173293876979533288470167463650966689320774843018181757"
    lines = [_ws(0, _book("x"), 1).replace(b'"asset_id": "x"', b'"asset_id": ' + token.encode()),
             _ws(1_000_000, {"event_type": "last_trade_price", "asset_id": 1}, 2 ** 70)]
    refcompare.write_capture(workdir, lines, [])
    divergence = _analyze_in_process(run_cli, [_divergent(token, 1, 0)])["divergence_rows"][0]
    assert [item["line_number"] for item in divergence["nearest_websocket_messages_for_token"]["before_or_at"]] == [1]
    assert divergence["classification"] == "size_only_unexplained"


@pytest.mark.requires_reference
@pytest.mark.parametrize("workers", [1, 2])
def test_big_json_number_token_ids_equal_the_reference(tmp_path: Path, workers: int) -> None:
    """Token ids beyond 64 bits written as JSON numbers, in every place a token is named, and a
    second pass (a row whose last line lies ahead of its checkpoint)."""
    yes = 94022367472047775158269173293876979533288470167463650966689320774843018181757
    no = 2 ** 80 + 7
    book = {**_book("x"), "asset_id": yes}
    changes = {"event_type": "price_change", "market": "0xm", "timestamp": "1",
               "price_changes": [{"asset_id": yes, "price": "0.4", "size": "3", "side": "BUY"},
                                 {"asset_id": no, "price": "0.6", "size": "1", "side": "SELL"}]}
    legacy_free = {"event_type": "new_market", "market": "0xm", "asset_id": yes, "assets_ids": [yes, no]}
    lines = [_ws(0, [book, {**_book("y"), "asset_id": no}], 1), _ws(1_000_000, changes, 2),
             _ws(1_500_000, legacy_free, 3), _ws(2_000_000, {"event_type": "last_trade_price", "asset_id": no}, 4),
             _ws(9_000_000, changes, 5)]
    refcompare.write_capture(tmp_path, lines, [])
    rows = [_divergent(str(yes), 2, 1_200_000), _divergent(str(no), 4, 2_500_000, price="0.6"),
            _divergent(str(yes), 5, 1_000_000)]
    outcome = _compare(tmp_path, rows, _flags(5, 10), workers)
    divergences = outcome["streamer"]["manifest"]["divergence_rows"]
    assert [[item["line_number"] for item in row["nearest_websocket_messages_for_token"]["before_or_at"]]
            for row in divergences] == [[1, 2], [1, 2, 3, 4], [1, 2, 3, 5]]


@pytest.mark.requires_reference
@pytest.mark.parametrize("workers", [1, 2])
def test_a_last_line_that_is_not_a_number_for_a_token_without_events_equals_the_reference(
        tmp_path: Path, workers: int) -> None:
    """The reference compares such a line with each of the token's event lines: with none, it lists
    the row with no context (before: streamer skipped it, so the row lists differed)."""
    lines = [_ws(0, _book("101"), 1), _ws(1_000_000, _book("102"), 2)]
    refcompare.write_capture(tmp_path, lines, [])
    rows = [_divergent("101", 1, 500_000), {**_divergent("999", None, 600_000), "last_applied_ws_line": "abc"},
            {**_divergent("", None, 700_000), "last_applied_ws_line": [3]}, _divergent("102", 2, 1_200_000)]
    outcome = _compare(tmp_path, rows, _flags(5, 10), workers)
    divergences = outcome["streamer"]["manifest"]["divergence_rows"]
    assert [row["last_applied_ws_line"] for row in divergences] == [1, "abc", [3], 2]
    assert [row["classification"] for row in divergences][1:3] == ["insufficient_raw_context"] * 2


@pytest.mark.requires_reference
@pytest.mark.parametrize("workers", [1, 2])
def test_big_json_numbers_in_comparison_rows_equal_the_reference(tmp_path: Path, workers: int) -> None:
    """A divergent row naming its token as a JSON number beyond 64 bits finds that token's context,
    and its other big integers are written back exactly (before: the token read as
    '9.402236747204778e+76', no context, and the gate flipped)."""
    yes = 94022367472047775158269173293876979533288470167463650966689320774843018181757
    lines = [_ws(0, {**_book("x"), "asset_id": str(yes)}, 1), _ws(1_000_000, _book("101"), 2)]
    refcompare.write_capture(tmp_path, lines, [])
    rows = [_divergent("101", 2 ** 70, 500_000),  # (first: a miss, answered by the second pass from its spool)
            {**_divergent(yes, 1, 500_000), "rest_checkpoint_sequence": 2 ** 70},  # type: ignore[arg-type]
            {**_divergent("101", 2, 1_200_000), "comparison_status": "match", "token_id": 2 ** 64 + 1},
            _divergent("101", 2, 1_200_000)]
    outcome = _compare(tmp_path, rows, _flags(5, 10), workers)
    assert outcome["streamer"]["manifest"]["streaming"]["context_misses"] >= 1
    divergences = outcome["streamer"]["manifest"]["divergence_rows"]
    assert [row["token_id"] for row in divergences] == ["101", str(yes), "101"]
    assert divergences[0]["last_applied_ws_line"] == 2 ** 70
    assert divergences[1]["rest_checkpoint_sequence"] == 2 ** 70
    assert [item["line_number"] for item in divergences[1]["nearest_websocket_messages_for_token"]["before_or_at"]] == [1]
