"""Model-based stress test of streamer.join.ContextJoin against a naive whole-list oracle.

The join is driven exactly as ``streamer.batch._analysis_pass`` drives it: for each websocket row,
first take every comparison row whose checkpoint time the row's receive time has passed (with the
previous row's key as the stream key), then ``advance``, then ``index`` the row's parts; at the
end take the rest with an infinite stream key and ``close``. The misses are then answered with
``answer_exactly``, or every row is when ``redo_required`` is set, as ``batch._second_pass`` does.

Every query's (before, after, evidence) must equal what the reference's ``context_for_row`` and
``nearby_price_change_evidence`` compute from the complete list of the token's events (with
decimal price matching and both price_change forms, SPEC section 4's departures).

Run longer by hand: ``python -m tests.test_stress_join [cases] [seed]``.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.classify import Query, make_query
from streamer.index import LINE_SPAN, entry_key
from streamer.join import EVIDENCE_CAP, ContextJoin, answer_exactly
from streamer.payloads import LEGACY_PRICE_CHANGE, PRICE_CHANGE, analysis_parts, parse_time_us

ALLOWANCE_US = 5_000_000
BASE_US = 1_776_618_000_000_000  # 2026-04-19T17:00:00Z
TOKENS = ["A", "B", "C"]
PRICES = [Decimal("0.40"), Decimal("0.41"), Decimal("0.42"), Decimal("0.43")]
GRID_US = 250_000

Row = tuple[float, tuple[Any, ...], Any]


# ---------------------------------------------------------------- random cases


def spell(price: Decimal, rng: random.Random) -> str:
    """One of several spellings of the same decimal."""
    text = format(price.normalize(), "f")
    return rng.choice([text, text + "0", text.lstrip("0") if text.startswith("0.") else text, f"{price:E}"])


def iso(us: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def random_item(rng: random.Random) -> Any:
    token = rng.choice(TOKENS)
    kind = rng.random()
    if kind < 0.15:
        item: dict[str, Any] = {"asset_id": token, "bids": [{"price": "0.4", "size": "1"}], "asks": [], "hash": "b"}
        if rng.random() < 0.7:
            item["event_type"] = "book"
        return item
    if kind < 0.55:
        return {"event_type": "price_change", "market": "0xm", "price_changes": [
            {"asset_id": rng.choice(TOKENS), "price": spell(rng.choice(PRICES), rng), "size": "5",
             "side": rng.choice(["BUY", "SELL"]), "hash": "p"} for _ in range(rng.randrange(1, 4))]}
    if kind < 0.65:
        return {"event_type": "price_change", "asset_id": token, "hash": "legacy",
                "changes": [{"price": spell(rng.choice(PRICES), rng), "side": "BUY", "size": "7"}
                            for _ in range(rng.randrange(0, 3))]}
    if kind < 0.75:
        return {"event_type": rng.choice(["best_bid_ask", "last_trade_price", "tick_size_change"]),
                "asset_id": token, "price": spell(rng.choice(PRICES), rng), "best_bid": "0.4"}
    if kind < 0.82:
        return {"event_type": "new_market", "market": "0xnew", "assets_ids": rng.sample(TOKENS, 2)}
    if kind < 0.9:
        return rng.choice([1, "x", None])
    return {"event_type": "price_change", "price_changes": [
        {"asset_id": token, "price": rng.choice(["abc", None, 0.41, "0.41"]), "side": "BUY", "size": "1"}]}


def random_payload(rng: random.Random) -> Any:
    choice = rng.random()
    if choice < 0.08:
        return None  # a text frame
    if choice < 0.55:
        return random_item(rng)
    return [random_item(rng) for _ in range(rng.randrange(0, 4))]


@dataclass
class Case:
    files: int
    context_limit: int
    evidence_seconds: int
    cap: int
    max_pending: int
    sweep_every: int
    rows: list[Row]
    #: (comparison row, websocket file index its last line refers to)
    comparisons: list[tuple[dict[str, Any], int]]
    #: run every index's ``_check()`` after every n-th indexed row (0: only at the end). ``_check``
    #: may flush buffered entries, which changes when eviction runs, so every rhythm is tried.
    check_every: int = 1
    stats: Counter[str] = field(default_factory=Counter)


def random_case(rng: random.Random, max_rows: int = 60, max_queries: int = 12, sweep: bool = False) -> Case:
    files = rng.choice([1, 1, 2, 3])
    rows: list[Row] = []
    file_index = 0
    line = 0
    now = BASE_US
    n_rows = rng.randrange(0, max_rows + 1)
    lines_of: dict[int, list[int]] = {index: [] for index in range(files)}
    times: list[int] = []
    for _ in range(n_rows):
        if file_index < files - 1 and rng.random() < files / max(n_rows, 1):
            file_index += 1
            line = 0
        line += rng.choice([1, 1, 1, 2, 3])
        kind = rng.random()
        received: str | None
        if kind < 0.06:
            received_us = None
            received = rng.choice([None, "", "not a time"])
        else:
            if kind < 0.14:  # a small step back, within the allowance
                received_us = now - rng.randrange(0, ALLOWANCE_US // GRID_US + 1) * GRID_US
            elif kind < 0.18:  # a step back beyond the allowance
                received_us = now - rng.randrange(ALLOWANCE_US // GRID_US + 1, 120) * GRID_US
            elif kind < 0.2:  # the clock itself steps back
                now -= rng.randrange(0, 80) * GRID_US
                received_us = now
            else:
                now += rng.choice([0, GRID_US, 2 * GRID_US, rng.randrange(0, 12) * GRID_US, rng.randrange(0, 3_000_000)])
                received_us = now
            received = iso(received_us)
            times.append(received_us)
        row = (file_index, line, rng.randrange(10**6) if rng.random() < 0.9 else None, received, received_us)
        rows.append((entry_key(file_index, line), row, random_payload(rng)))
        lines_of[file_index].append(line)
    context_limit = rng.randrange(0, 7)
    evidence_seconds = rng.randrange(0, 13)
    comparisons = []
    for _ in range(rng.randrange(0, max_queries + 1)):
        ws_file = rng.randrange(files)
        token: Any = rng.choice(TOKENS + ["Z"]) if rng.random() < 0.95 else rng.choice([None, "", 0])
        known = lines_of[ws_file]
        choice = rng.random()
        last_line: Any
        if choice < 0.15:
            last_line = None
        elif choice < 0.6 and known:
            last_line = rng.choice(known)
        elif choice < 0.7:
            last_line = rng.randrange(-3, 3)
        elif choice < 0.8:
            last_line = (max(known) if known else 0) + rng.randrange(1, 5)  # past the end
        elif choice < 0.9:
            last_line = rng.randrange(0, (max(known) if known else 3) + 1) + 0.5
        else:
            last_line = rng.randrange(0, (max(known) if known else 3) + 2)
        choice = rng.random()
        checkpoint: Any
        if choice < 0.08:
            checkpoint = None
        elif choice < 0.12:
            checkpoint = "not a time"
        elif choice < 0.75 and times:
            checkpoint = iso(rng.choice(times) + rng.choice(
                [0, evidence_seconds * 1_000_000, -evidence_seconds * 1_000_000, rng.randrange(-40, 41) * GRID_US]))
        else:
            checkpoint = iso(BASE_US + rng.randrange(-60, 600) * GRID_US * 4)
        prices = [spell(rng.choice(PRICES), rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        if rng.random() < 0.1:
            prices.append("abc")
        split = rng.randrange(0, len(prices) + 1)
        row = {
            "comparison_status": "divergent",
            "token_id": token,
            "last_applied_ws_line": last_line,
            "rest_checkpoint_received_at_utc": checkpoint,
            "bid_top_n_diff": {"missing_prices": prices[:split], "extra_prices": [], "size_deltas": []},
            "ask_top_n_diff": {"missing_prices": [], "extra_prices": [],
                               "size_deltas": [{"price": price, "rest_size": "1", "local_size": "2"}
                                               for price in prices[split:]]},
        }
        comparisons.append((row, ws_file))
    return Case(files=files, context_limit=context_limit, evidence_seconds=evidence_seconds,
                cap=rng.choice([1, 2, 3, 5, 8, 4096]), max_pending=rng.choice([1, 2, 3, 6, 50_000]),
                sweep_every=rng.choice([0, 1, 3, 8]) if sweep else 0, rows=rows, comparisons=comparisons,
                check_every=rng.choice([0, 0, 1, 7]))


# ---------------------------------------------------------------- the oracle


def decimal_or_text(value: Any) -> Any:
    """A price as SPEC section 4 matches it: a decimal when it is plain decimal syntax, else its text."""
    text = str(value)
    if not text.isascii() or "_" in text or text != text.strip():
        return text
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return number if number.is_finite() else text


def oracle(case: Case, query: Query, ws_file: int) -> tuple[list[Any], list[Any], list[Any]]:
    """The reference's context_for_row and nearby_price_change_evidence over the whole stream."""
    events = []
    # the reference indexes only truthy token ids: a row without one has no events at all
    token = str(query.row["token_id"]) if query.row.get("token_id") else None
    for key, row, payload in case.rows:
        parts = analysis_parts(payload).get(token) if token is not None else None
        if parts:
            events.append((key, row, parts))
    row = query.row
    last_line = row.get("last_applied_ws_line")
    limit = case.context_limit
    if last_line is None:
        before: list[Any] = []
        after: list[Any] = []
    else:
        split = sum(1 for _key, event_row, _parts in events if (event_row[0], event_row[1]) <= (ws_file, last_line))
        before = events[max(0, split - limit):split]
        after = events[split:split + limit]
    prices = set()
    for diff in (row.get("bid_top_n_diff") or {}, row.get("ask_top_n_diff") or {}):
        prices.update(decimal_or_text(price) for price in (diff.get("missing_prices") or []) + (diff.get("extra_prices") or []))
        prices.update(decimal_or_text(delta["price"]) for delta in diff.get("size_deltas") or [])
    checkpoint = row.get("rest_checkpoint_received_at_utc")
    evidence: list[Any] = []
    checkpoint_us = parse_time_us(checkpoint) if checkpoint else None
    if prices and checkpoint_us is not None:
        for entry in events:
            received_us = entry[1][4]
            if received_us is None or abs(received_us - checkpoint_us) > case.evidence_seconds * 1_000_000:
                continue
            matched = [part for part in entry[2] if part[0] in (PRICE_CHANGE, LEGACY_PRICE_CHANGE)
                       and part[1].get("price") is not None and decimal_or_text(part[1]["price"]) in prices]
            if matched:
                evidence.append((entry, matched))
            if len(evidence) >= EVIDENCE_CAP:
                break
    return before, after, evidence


# ---------------------------------------------------------------- the driver (as batch does)


def context_key(query: Query, ws_file: int) -> float | None:
    return None if query.last_line is None else entry_key(ws_file, query.last_line)


def head_time(row: dict[str, Any]) -> int | None:
    value = row.get("rest_checkpoint_received_at_utc")
    return parse_time_us(value) if value and type(value) is str else None


def run_case(case: Case) -> ContextJoin:
    queries = [make_query(seq, 0, seq + 1, row, parse_time_us) for seq, (row, _file) in enumerate(case.comparisons)]
    files = {query.seq: ws_file for query, (_row, ws_file) in zip(queries, case.comparisons)}
    results: dict[int, tuple[list[Any], list[Any], list[Any]]] = {}
    live: set[int] = set()
    misses: list[Query] = []

    def on_result(query: Query, before: list[Any], after: list[Any], evidence: list[Any]) -> None:
        assert query.seq not in results, f"query {query.seq} answered twice"
        results[query.seq] = (list(before), list(after), list(evidence))

    def on_miss(query: Query) -> None:
        assert query.seq not in results, f"query {query.seq} answered, then missed"
        assert all(query is not miss for miss in misses), f"query {query.seq} missed twice"
        misses.append(query)

    join = ContextJoin(case.context_limit, case.evidence_seconds, on_result, on_miss,
                       cap=case.cap, max_pending=case.max_pending)
    position = 0
    previous_key = -1.0
    max_seen: int | None = None
    late = False
    for count, (key, row, payload) in enumerate(case.rows, 1):
        received_us = row[4]
        while position < len(queries) and (
                head_time(queries[position].row) is None
                or (received_us is not None and head_time(queries[position].row) < received_us)):
            join.take(queries[position], files[position], previous_key)
            position += 1
        join.advance(received_us)
        if received_us is not None:
            if max_seen is not None and received_us < max_seen - ALLOWANCE_US:
                late = True
            max_seen = received_us if max_seen is None else max(max_seen, received_us)
        parts = analysis_parts(payload)
        if parts:
            join.index(key, row, parts)
            if case.check_every and count % case.check_every == 0:
                for index in join.indexes.values():
                    index._check()
        previous_key = key
        if case.sweep_every and count % case.sweep_every == 0:
            join.sweep()
    while position < len(queries):
        join.take(queries[position], files[position], math.inf)
        position += 1
    join.close()
    for index in join.indexes.values():
        index._check()
    live.update(results)
    assert join.misses == len(misses)
    assert not (late is False and join.redo_required), "redo required although no event was late"
    stream = [(key, row, analysis_parts(payload)) for key, row, payload in case.rows]
    if join.redo_required:
        results.clear()
        answer_exactly(iter(stream), [(query, context_key(query, files[query.seq])) for query in queries],
                       case.context_limit, case.evidence_seconds, on_result)
    elif misses:  # as DivergenceAnalysis.answer_misses: answered early unless an event was late
        consumed = [0]

        def counted() -> Any:
            for item in stream:
                consumed[0] += 1
                yield item

        answered_at: list[int] = []
        answer_exactly(counted(), [(query, context_key(query, files[query.seq])) for query in misses],
                       case.context_limit, case.evidence_seconds,
                       lambda *result: (answered_at.append(consumed[0]), on_result(*result)),
                       join.allowance_us if not join.late_events else None)
        case.stats["answered_early"] += sum(1 for at in answered_at if at < len(stream))
        if join.late_events:
            assert all(at == len(stream) for at in answered_at), "answered before the end despite a late event"
    assert sorted(results) == [query.seq for query in queries], "a query was never answered"
    for query in queries:
        expected = oracle(case, query, files[query.seq])
        how = "redo" if join.redo_required else ("live" if query.seq in live else "miss")
        assert results[query.seq] == expected, (
            f"query {query.seq} ({how}): token {query.token}, last line {query.last_line} of file "
            f"{files[query.seq]}, t_us {query.t_us}, prices {sorted(map(str, query.prices))}")
    case.stats.update({
        "cases": 1, "queries": len(queries), "misses": len(misses), "redo": int(join.redo_required),
        "spilled": join.spilled_pending, "late": join.late_events,
        "evicted": sum(1 for index in join.indexes.values() if index.evicted_through is not None),
        "live": len(live), "with_evidence": sum(1 for seq in results if results[seq][2]),
        "evidence_capped": sum(1 for seq in results if len(results[seq][2]) == EVIDENCE_CAP),
        "dropped": int(join.dropped_through is not None),
    })
    return join


def answer_exactly_alone(case: Case) -> None:
    """answer_exactly over all queries at once equals the oracle (no join at all)."""
    queries = [make_query(seq, 0, seq + 1, row, parse_time_us) for seq, (row, _file) in enumerate(case.comparisons)]
    files = [ws_file for _row, ws_file in case.comparisons]
    results: dict[int, Any] = {}

    def on_result(query: Query, before: list[Any], after: list[Any], evidence: list[Any]) -> None:
        assert query.seq not in results
        results[query.seq] = (before, after, evidence)

    stream = [(key, row, analysis_parts(payload)) for key, row, payload in case.rows]
    answer_exactly(iter(stream), [(query, context_key(query, files[query.seq])) for query in queries],
                   case.context_limit, case.evidence_seconds, on_result)
    assert sorted(results) == list(range(len(queries)))
    for query in queries:
        assert results[query.seq] == oracle(case, query, files[query.seq]), f"query {query.seq}"


# ---------------------------------------------------------------- tests

HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(rng=st.randoms(use_true_random=False))
def test_join_equals_whole_list_oracle(rng: random.Random) -> None:
    run_case(random_case(rng))


@HYPOTHESIS
@given(rng=st.randoms(use_true_random=False))
def test_answer_exactly_equals_whole_list_oracle(rng: random.Random) -> None:
    answer_exactly_alone(random_case(rng, max_rows=80, max_queries=16))


def test_stress(cases: int = 250, seed: int = 0) -> None:
    """Longer streams; also checks that eviction, misses, spills and redo really happened."""
    rng = random.Random(seed)
    total: Counter[str] = Counter()
    for _ in range(cases):
        case = random_case(rng, max_rows=200, max_queries=25)
        run_case(case)
        total.update(case.stats)
    assert total["cases"] == cases
    for mechanism in ("misses", "spilled", "redo", "late", "evicted", "live", "with_evidence", "answered_early"):
        assert total[mechanism] > 0, f"the generator never exercised {mechanism}: {dict(total)}"


def in_order_case(rng: random.Random) -> Case:
    """A capture in receive-time order and the rows a reconstructor would make from it.

    Each row's last line is its token's latest *applied* line (a book, or a price_change while the
    token has a book) at the checkpoint time; rows come in checkpoint-time order.
    """
    rows: list[Row] = []
    now = BASE_US
    applied: dict[str, list[tuple[int, int]]] = {token: [] for token in TOKENS}  # (time, line)
    has_book: set[str] = set()
    for line in range(1, rng.randrange(20, 150)):
        now += rng.randrange(1, 8) * GRID_US
        payload = random_payload(rng)
        parts = analysis_parts(payload)
        for token, token_parts in parts.items():
            if token not in applied:
                continue
            for part in token_parts:
                if part[0] == "book":
                    has_book.add(token)
                    applied[token].append((now, line))
                    break
                if part[0] in (PRICE_CHANGE, LEGACY_PRICE_CHANGE) and token in has_book:
                    applied[token].append((now, line))
                    break
        rows.append((entry_key(0, line), (0, line, line, iso(now), now), payload))
    comparisons = []
    for checkpoint in sorted(rng.randrange(BASE_US, now + 1) for _ in range(rng.randrange(1, 30))):
        token = rng.choice(TOKENS)
        lines = [line for time, line in applied[token] if time <= checkpoint]
        prices = [spell(rng.choice(PRICES), rng) for _ in range(rng.randrange(0, 3))]
        comparisons.append(({"comparison_status": "divergent", "token_id": token,
                             "last_applied_ws_line": lines[-1] if lines else None,
                             "rest_checkpoint_received_at_utc": iso(checkpoint),
                             "bid_top_n_diff": {"size_deltas": [{"price": price} for price in prices]}}, 0))
    return Case(files=1, context_limit=rng.randrange(0, 7), evidence_seconds=rng.randrange(0, 13), cap=4096,
                max_pending=50_000, sweep_every=0, rows=rows, comparisons=comparisons,
                check_every=rng.choice([0, 1, 7]))


def test_in_order_capture_is_answered_live() -> None:
    """A well-formed capture needs no second pass: every row is answered in the stream (DESIGN section 2).

    Exactness alone would also hold if the join declared every row a miss; this holds it to streaming.
    """
    rng = random.Random(5)
    total: Counter[str] = Counter()
    for _ in range(120):
        case = in_order_case(rng)
        join = run_case(case)
        assert join.misses == 0 and not join.redo_required and join.late_events == 0
        assert case.stats["live"] == case.stats["queries"]
        total.update(case.stats)
    assert total["evicted"] > 0 and total["with_evidence"] > 0


def test_evidence_cap_is_twenty_in_line_order() -> None:
    rows: list[Row] = []
    for line in range(1, 31):
        received_us = BASE_US + line * GRID_US
        payload = {"event_type": "price_change", "price_changes": [{"asset_id": "A", "price": "0.4", "side": "BUY"}]}
        rows.append((entry_key(0, line), (0, line, line, iso(received_us), received_us), payload))
    row = {"comparison_status": "divergent", "token_id": "A", "last_applied_ws_line": 30,
           "rest_checkpoint_received_at_utc": iso(BASE_US + 15 * GRID_US),
           "bid_top_n_diff": {"missing_prices": [".40"]}, "ask_top_n_diff": {}}
    for cap in (4096, 3):
        case = Case(files=1, context_limit=2, evidence_seconds=12, cap=cap, max_pending=50_000, sweep_every=0,
                    rows=rows, comparisons=[(row, 0)])
        run_case(case)
        assert case.stats["evidence_capped"] == 1
    assert [entry[1][1] for entry, _parts in oracle(case, make_query(0, 0, 1, row, parse_time_us), 0)[2]] == \
        list(range(1, 21))


def test_multi_file_keys_never_cross_files() -> None:
    rows: list[Row] = []
    for file_index in range(2):
        for line in range(1, 6):
            received_us = BASE_US + (file_index * 5 + line) * GRID_US
            rows.append((entry_key(file_index, line), (file_index, line, None, iso(received_us), received_us),
                         {"event_type": "tick_size_change", "asset_id": "A"}))
    comparisons = []
    for last_line in (-3, 0, 2, 99, None):
        comparisons.append(({"comparison_status": "divergent", "token_id": "A", "last_applied_ws_line": last_line,
                             "rest_checkpoint_received_at_utc": None}, 1))
    case = Case(files=2, context_limit=3, evidence_seconds=0, cap=4096, max_pending=50_000, sweep_every=0,
                rows=rows, comparisons=comparisons)
    run_case(case)
    queries = [make_query(seq, 0, seq, row, parse_time_us) for seq, (row, _f) in enumerate(comparisons)]
    before, after, _ = oracle(case, queries[0], 1)
    assert [entry[1][:2] for entry in before] == [(0, 3), (0, 4), (0, 5)]  # line -3 of file 1: all of file 0
    assert [entry[1][:2] for entry in after] == [(1, 1), (1, 2), (1, 3)]
    before, after, _ = oracle(case, queries[3], 1)
    assert [entry[1][:2] for entry in before] == [(1, 3), (1, 4), (1, 5)] and after == []
    assert entry_key(1, 99) < 2 * LINE_SPAN


def row_at(line: int, received_us: int | None) -> tuple[Any, ...]:
    return (0, line, line, None if received_us is None else iso(received_us), received_us)


def sweep_case(rows: list[tuple[int, int | None, Any]], comparisons: list[dict[str, Any]], context_limit: int,
               evidence_seconds: int, sweep_every: int) -> Case:
    return Case(files=1, context_limit=context_limit, evidence_seconds=evidence_seconds, cap=4096,
                max_pending=50_000, sweep_every=sweep_every,
                rows=[(entry_key(0, line), row_at(line, us), payload) for line, us, payload in rows],
                comparisons=[(row, 0) for row in comparisons])


TICK_A = {"event_type": "tick_size_change", "asset_id": "A"}
TICK_B = {"event_type": "tick_size_change", "asset_id": "B"}
CHANGE_A = {"event_type": "price_change", "price_changes": [{"asset_id": "A", "price": "0.4", "side": "BUY",
                                                             "size": "1"}]}


def test_sweep_then_new_event_keeps_before_context_exact() -> None:
    """A bookless token dropped by sweep() comes back: its older events still count as context.

    Found by this module's stress test (an index recreated after a sweep forgot what was dropped).
    """
    late_checkpoint = iso(BASE_US + 500_000_000)  # taken after the whole stream
    case = sweep_case([(1, BASE_US, TICK_A), (2, BASE_US + 100_000_000, TICK_B), (3, BASE_US + 101_000_000, TICK_A)],
                      [{"comparison_status": "divergent", "token_id": "A", "last_applied_ws_line": 3,
                        "rest_checkpoint_received_at_utc": late_checkpoint}],
                      context_limit=2, evidence_seconds=0, sweep_every=2)
    join = run_case(case)
    assert join.dropped_through == entry_key(0, 1)  # A really was dropped, and came back
    assert "A" in join.indexes
    query = make_query(0, 0, 1, case.comparisons[0][0], parse_time_us)
    assert [entry[1][1] for entry in oracle(case, query, 0)[0]] == [1, 3]


def test_sweep_then_new_event_keeps_evidence_exact() -> None:
    # line 2 has no receive time, so sweep() after line 3 takes A's newest entry as old and drops A;
    # line 4 brings A back; the row for A (blocked behind the row for B) is taken at line 5
    case = sweep_case([(1, BASE_US, CHANGE_A), (2, None, TICK_A), (3, BASE_US + 100_000_000, TICK_B),
                       (4, BASE_US + 101_000_000, TICK_A), (5, BASE_US + 200_000_000, TICK_B)],
                      [{"comparison_status": "divergent", "token_id": "B", "last_applied_ws_line": None,
                        "rest_checkpoint_received_at_utc": iso(BASE_US + 150_000_000)},
                       {"comparison_status": "divergent", "token_id": "A", "last_applied_ws_line": None,
                        "rest_checkpoint_received_at_utc": iso(BASE_US),
                        "bid_top_n_diff": {"missing_prices": ["0.40"]}}],
                      context_limit=0, evidence_seconds=1, sweep_every=3)
    join = run_case(case)
    assert join.dropped_through is not None
    query = make_query(1, 0, 2, case.comparisons[1][0], parse_time_us)
    assert [entry[1][1] for entry, _parts in oracle(case, query, 0)[2]] == [1]


def test_an_early_answer_waits_for_receive_times_stepping_back_within_the_allowance() -> None:
    """Answered before the pass ends, a row must still see a line whose receive time steps back
    (by less than the 5 s allowance, so not late) into its evidence window after the stream
    passed the window's end."""
    t = BASE_US + 100_000_000
    rows = [(1, BASE_US, CHANGE_A), (2, t + 6_000_000, TICK_B),  # the stream is 4 s past t + 2 s
            (3, t + 1_500_000, CHANGE_A),  # 4.5 s back: inside the window (t ± 2 s), not late
            (4, t + 60_000_000, TICK_B)]
    case = sweep_case(rows, [{"comparison_status": "divergent", "token_id": "A", "last_applied_ws_line": 1,
                              "rest_checkpoint_received_at_utc": iso(t),
                              "bid_top_n_diff": {"missing_prices": ["0.40"]}}],
                      context_limit=1, evidence_seconds=2, sweep_every=0)
    query = make_query(0, 0, 1, case.comparisons[0][0], parse_time_us)
    answered: list[Any] = []
    stream = [(key, row, analysis_parts(payload)) for key, row, payload in case.rows]
    answer_exactly(iter(stream), [(query, context_key(query, 0))], 1, 2,
                   lambda *result: answered.append(result[1:]), close_after_us=5_000_000)
    assert answered == [oracle(case, query, 0)]
    assert [entry[1][1] for entry, _parts in answered[0][2]] == [3]


def test_sweep_does_not_lose_context() -> None:
    """sweep() (batch calls it every 65536 rows) on random streams: rows must stay exact."""
    rng = random.Random(11)
    total: Counter[str] = Counter()
    for _ in range(150):
        case = random_case(rng, max_rows=120, max_queries=20, sweep=True)
        run_case(case)
        total.update(case.stats)
    assert total["dropped"] > 0


def test_retention_stays_bounded_with_frequent_queries() -> None:
    """SPEC section 5: what a token retains does not grow with the capture, however often rows are taken."""
    results: list[int] = []
    misses: list[Query] = []
    join = ContextJoin(5, 1, lambda q, b, a, e: results.append(q.seq), misses.append, cap=4096)
    change = {"event_type": "price_change", "price_changes": [{"asset_id": "A", "price": "0.4", "side": "BUY",
                                                               "size": "1"}]}
    previous_key = -1.0
    peak = 0
    seq = 0
    for line in range(1, 6001):
        received_us = BASE_US + line * 1_000_000
        if line % 10 == 0:  # a divergent row for A every 10 rows, taken as batch takes it
            query = make_query(seq, 0, seq + 1, {"comparison_status": "divergent", "token_id": "A",
                                                 "last_applied_ws_line": line - 1}, parse_time_us)
            seq += 1
            join.take(query, 0, previous_key)
        join.advance(received_us)
        payload = {"asset_id": "A", "bids": [], "asks": []} if line == 1 else change
        join.index(entry_key(0, line), row_at(line, received_us), analysis_parts(payload))
        previous_key = entry_key(0, line)
        index = join.indexes["A"]
        peak = max(peak, len(index.entries) + len(getattr(index, "tail", ())))
    join.close()
    assert len(results) + len(misses) == seq == 600
    # 5 before the anchor + about 7 s of events at 1 per second, plus amortised trimming slack
    assert peak <= 200, f"token A retained {peak} events after 6000 rows"


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    test_stress(count, start)
    print(f"ok: {count} cases, seed {start}")
