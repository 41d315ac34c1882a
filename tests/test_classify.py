"""Coverage tests for streamer.classify against the reference analyzer's own functions.

``make_query`` must refuse (``RowShapeError``) exactly the divergent rows on which the reference's
per-row code would crash, and accept the rest; ``classify`` and ``Aggregates`` must give the
reference's category, affects, counters and gate. The reference is loaded with importlib from its
path; the tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.classify import (
    CATEGORY_INSUFFICIENT,
    CATEGORY_LAG,
    CATEGORY_MISMATCH,
    CATEGORY_UNEXPLAINED,
    GATE_BLOCKED,
    GATE_PASS,
    Aggregates,
    RowShapeError,
    classify,
    line_is_unusable,
    make_query,
)
from streamer.payloads import parse_time_us, price_key
from tests import refcompare


REF = refcompare.load_reference_module()
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: The token's events as the reference indexes them: with some events, a non-numeric last line
#: makes its bisect compare a string with an int, which is where it crashes.
EVENTS = [
    {"line_number": 3, "global_sequence": 3, "received_at_utc": "2026-04-19T17:00:00.000000Z", "received_epoch": 0.0,
     "event_types": ["price_change"], "events": [{"event_type": "price_change", "price": "0.5"}]},
    {"line_number": 8, "global_sequence": 8, "received_at_utc": "2026-04-19T17:00:05.000000Z", "received_epoch": 0.0,
     "event_types": ["book"], "events": [{"event_type": "book"}]},
]


def reference_row(row: dict[str, Any], events: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The reference's per-row work for one divergent row (its analyze loop body); may raise."""
    assert REF is not None
    raw_context = REF.context_for_row(events, row.get("last_applied_ws_line"), 5)
    bid_diff = row.get("bid_top_n_diff") or {}
    ask_diff = row.get("ask_top_n_diff") or {}
    affected = REF.price_set(bid_diff) | REF.price_set(ask_diff)
    evidence = REF.nearby_price_change_evidence(events, affected, row.get("rest_checkpoint_received_at_utc"), 10)
    category, affect = REF.classify_divergence(row, raw_context, evidence)
    market = row.get("market") or {}
    labels = (market.get("market_slug"), market.get("condition_id"), market.get("outcome"))
    return category, affect, affected, labels


# ---------------------------------------------------------------- row strategies

price_lists = st.one_of(
    st.lists(st.sampled_from(["0.5", "0.50", ".5", "0.6", 0.5, 1, None, True]), max_size=3),
    st.sampled_from([None, [], "", "0.5", "ab", {"0.5": 1}, 0, 3, 2.5, True, False]),
)
delta_lists = st.one_of(
    st.lists(st.one_of(st.fixed_dictionaries({"price": st.sampled_from(["0.5", None, 0.6, "x"]),
                                              "rest_size": st.just("1"), "local_size": st.just("2")}),
                       st.sampled_from(["x", 1, None, [], {}])), max_size=3),
    st.sampled_from([None, [], "", "ab", {"k": 1}, 0, 4, True]),
)
diffs = st.one_of(
    st.fixed_dictionaries({}, optional={"missing_prices": price_lists, "extra_prices": price_lists,
                                        "size_deltas": delta_lists}),
    st.sampled_from([None, {}, [], 0, False, "", [1], "x", 5, True]),
)
markets = st.one_of(st.fixed_dictionaries({}, optional={"market_slug": st.just("slug"), "condition_id": st.just("0xc"),
                                                        "outcome": st.just("Yes")}),
                    st.sampled_from([None, {}, 0, "", [], [1], "m", 1, True]))
last_lines = st.one_of(st.none(), st.integers(-3, 12), st.floats(-3, 12, allow_nan=False), st.booleans(),
                       st.sampled_from(["5", "", [], [5], {}, {"a": 1}]))
checkpoints = st.one_of(st.none(), st.sampled_from(["", "2026-04-19T17:00:02Z", "2026-04-19T17:00:02.5+00:00",
                                                    "2026-04-19 17:00:02", "junk", 0, 5, 1.5, True, False, [],
                                                    ["2026-04-19T17:00:02Z"], {"t": 1}]))
matches = st.sampled_from([True, False, None, 0, "false"])
rows = st.fixed_dictionaries(
    {"comparison_status": st.just("divergent")},
    optional={
        "token_id": st.sampled_from(["101", 101, "", None, 0]),
        "market": markets,
        "last_applied_ws_line": last_lines,
        "rest_checkpoint_received_at_utc": checkpoints,
        "bid_top_n_diff": diffs,
        "ask_top_n_diff": diffs,
        "best_bid_match": matches,
        "best_ask_match": matches,
        "spread_match": matches,
        "level_count_match": matches,
    },
)


def outcome(function: Any, *args: Any) -> tuple[bool, Any]:
    try:
        return True, function(*args)
    except RowShapeError:
        return False, None


# ---------------------------------------------------------------- make_query


@pytest.mark.requires_reference
@SETTINGS
@given(row=rows)
def test_make_query_refuses_exactly_what_the_reference_crashes_on(row: dict[str, Any]) -> None:
    # a last line that is not a number: the reference places it only among no events (the join
    # answers it once the token's events are all known), so compare with that case
    events = [] if line_is_unusable(row.get("last_applied_ws_line")) else EVENTS
    try:
        expected = reference_row(row, events)
        reference_ok = True
    except (TypeError, AttributeError):
        reference_ok = False
    ok, query = outcome(make_query, 7, 1, 42, row, parse_time_us)
    assert ok == reference_ok, "make_query and the reference disagree on whether the row is usable"
    if not ok:
        return
    _category, _affect, affected, _labels = expected
    checkpoint = row.get("rest_checkpoint_received_at_utc")
    assert query.t_us == (parse_time_us(checkpoint) if affected and checkpoint else None)
    assert query.prices == (frozenset(price_key(price) for price in affected) if query.t_us is not None
                            else frozenset())
    assert query.token == str(row.get("token_id"))
    assert query.lookup == (str(row["token_id"]) if row.get("token_id") else None)
    assert query.last_line == row.get("last_applied_ws_line")
    assert (query.seq, query.file_index, query.comparison_line, query.row) == (7, 1, 42, row)
    assert query.bid_diff == (row.get("bid_top_n_diff") or {})
    assert query.ask_diff == (row.get("ask_top_n_diff") or {})


@pytest.mark.parametrize("field, value", [
    ("market", ["not", "an", "object"]), ("market", "slug"), ("market", 1),
    ("bid_top_n_diff", [1]), ("ask_top_n_diff", "diff"), ("bid_top_n_diff", 3),
    ("bid_top_n_diff", {"missing_prices": 3}), ("ask_top_n_diff", {"extra_prices": True}),
    ("bid_top_n_diff", {"size_deltas": 4}), ("ask_top_n_diff", {"size_deltas": 2.5}),
])
def test_make_query_refuses_unusable_fields(field: str, value: Any) -> None:
    row = {"comparison_status": "divergent", "token_id": "101", "last_applied_ws_line": 3,
           "rest_checkpoint_received_at_utc": "2026-04-19T17:00:00Z", "bid_top_n_diff": {"missing_prices": ["0.5"]}}
    row[field] = value
    with pytest.raises(RowShapeError):
        make_query(0, 0, 1, row, parse_time_us)
    if REF is not None:
        with pytest.raises((TypeError, AttributeError)):
            reference_row(row, EVENTS)


@pytest.mark.parametrize("value", ["12", [12], {"line": 12}])
def test_a_last_line_that_is_not_a_number_is_placed_only_among_no_events(value: Any) -> None:
    row = {"comparison_status": "divergent", "token_id": "101", "last_applied_ws_line": value,
           "rest_checkpoint_received_at_utc": "2026-04-19T17:00:00Z", "bid_top_n_diff": {"missing_prices": ["0.5"]}}
    query = make_query(0, 0, 1, row, parse_time_us)
    assert line_is_unusable(query.last_line) and query.last_line == value
    assert not any(line_is_unusable(line) for line in (None, 0, 7, 1.5, True, float("nan")))
    if REF is not None:
        reference_row(row, [])  # no events: nothing to compare it with
        with pytest.raises(TypeError):
            reference_row(row, EVENTS)


@pytest.mark.parametrize("value", [0, 5, 1.5, True, ["2026-04-19T17:00:00Z"], {"t": 1}])
def test_make_query_refuses_non_string_checkpoint_time_with_prices(value: Any) -> None:
    row = {"comparison_status": "divergent", "token_id": "101", "rest_checkpoint_received_at_utc": value,
           "bid_top_n_diff": {"missing_prices": ["0.5"]}}
    if value:
        with pytest.raises(RowShapeError, match="rest_checkpoint_received_at_utc"):
            make_query(0, 0, 1, row, parse_time_us)
    else:
        assert make_query(0, 0, 1, row, parse_time_us).t_us is None  # falsy: the reference never parses it
    # without affected prices the time is never parsed, so any type is fine
    row["bid_top_n_diff"] = {}
    assert make_query(0, 0, 1, row, parse_time_us).t_us is None


def test_make_query_accepts_what_the_reference_tolerates() -> None:
    row = {"comparison_status": "divergent", "token_id": 101, "last_applied_ws_line": True,
           "rest_checkpoint_received_at_utc": "2026-04-19T17:00:00Z",
           "bid_top_n_diff": {"missing_prices": "0.5", "size_deltas": "ab"},
           "ask_top_n_diff": {"extra_prices": {"0.7": 1}, "size_deltas": [{"price": ".5"}, "x", {"price": None}]},
           "market": 0}
    query = make_query(3, 0, 9, row, parse_time_us)
    # a string's characters and an object's keys are prices, as the reference iterates them
    assert query.prices == frozenset(price_key(p) for p in ["0", ".", "5", "0.7", ".5"])
    assert query.t_us == parse_time_us("2026-04-19T17:00:00Z")
    assert query.token == "101"
    category, affects = classify(row, query.bid_diff, query.ask_diff, True, False)
    assert affects["bid_size_delta_count"] == 2  # len("ab"), as the reference counts it
    assert affects["ask_size_delta_count"] == 3
    assert affects["top_n_price_membership"] is True
    assert category == CATEGORY_MISMATCH
    if REF is not None:
        assert reference_row(row, EVENTS)[2] == {"0", ".", "5", "0.7", ".5"}


def test_make_query_time_and_prices() -> None:
    row = {"comparison_status": "divergent", "token_id": "101", "rest_checkpoint_received_at_utc": "junk",
           "bid_top_n_diff": {"missing_prices": ["0.5"]}}
    query = make_query(0, 0, 1, row, parse_time_us)
    assert query.t_us is None and query.prices == frozenset()  # an unparseable time: no evidence
    row["rest_checkpoint_received_at_utc"] = "2026-04-19T19:00:00+02:00"
    query = make_query(0, 0, 1, row, parse_time_us)
    assert query.t_us == parse_time_us("2026-04-19T17:00:00Z")
    assert query.prices == frozenset([price_key("0.50")])


def test_make_query_falsy_token_id_looks_up_nothing() -> None:
    for token in (None, "", 0):
        row = {"comparison_status": "divergent", "token_id": token, "last_applied_ws_line": 2}
        query = make_query(0, 0, 1, row, parse_time_us)
        assert query.lookup is None
        assert query.token == str(token)
    assert make_query(0, 0, 1, {"token_id": "0"}, parse_time_us).lookup == "0"


@pytest.mark.requires_reference
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_make_query_accepts_non_finite_last_line_like_the_reference(value: float) -> None:
    row = {"comparison_status": "divergent", "token_id": "101", "last_applied_ws_line": value}
    reference_row(row, EVENTS)  # does not raise
    make_query(0, 0, 1, row, parse_time_us)


# ---------------------------------------------------------------- classify


@pytest.mark.requires_reference
@SETTINGS
@given(row=rows)
def test_classify_equals_reference(row: dict[str, Any]) -> None:
    assert REF is not None
    ok, query = outcome(make_query, 0, 0, 1, row, parse_time_us)
    if not ok:
        return
    for has_context, has_evidence in itertools.product([False, True], repeat=2):
        context = {"before_or_at": EVENTS[:1] if has_context else [], "after": []}
        evidence = [{"line_number": 3}] if has_evidence else []
        assert classify(row, query.bid_diff, query.ask_diff, has_context, has_evidence) == \
            REF.classify_divergence(row, context, evidence)


def test_classify_categories() -> None:
    size_only = {"bid_top_n_diff": {"size_deltas": [{"price": "0.5"}]}, "best_bid_match": True}
    bid, ask = size_only["bid_top_n_diff"], {}
    assert classify(size_only, bid, ask, False, True)[0] == CATEGORY_INSUFFICIENT
    assert classify(size_only, bid, ask, True, True)[0] == CATEGORY_LAG
    assert classify(size_only, bid, ask, True, False)[0] == CATEGORY_UNEXPLAINED
    mismatch = dict(size_only, best_ask_match=False)
    category, affects = classify(mismatch, bid, ask, True, True)
    assert category == CATEGORY_MISMATCH and affects["best_ask"] and not affects["size_only"]
    nothing = {"best_bid_match": True}
    assert classify(nothing, {}, {}, True, True)[0] == CATEGORY_INSUFFICIENT
    # only False (not a falsy value) marks a field affected
    assert classify({"spread_match": None, "level_count_match": 0}, {}, {}, True, False)[1]["spread"] is False


# ---------------------------------------------------------------- Aggregates


def reference_aggregates(results: list[tuple[dict[str, Any], str, dict[str, Any]]],
                         statuses: list[Any]) -> dict[str, Any]:
    """The reference's counters and gate, as its analyze loop and summary build them."""
    status_counts: Counter[str] = Counter(str(status or "unknown") for status in statuses)
    category_counts: Counter[str] = Counter()
    affected_counts: Counter[str] = Counter()
    for _row, category, affect in results:
        category_counts[category] += 1
        for name, value in affect.items():
            if isinstance(value, bool) and value:
                affected_counts[name] += 1
        affected_counts["bid_size_deltas"] += affect["bid_size_delta_count"]
        affected_counts["ask_size_deltas"] += affect["ask_size_delta_count"]
    blocked = any(affected_counts.get(name) for name in
                  ("best_bid", "best_ask", "spread", "level_count", "top_n_price_membership")) or bool(
        category_counts.get("insufficient_raw_context"))
    return {"status_counts": dict(sorted(status_counts.items())),
            "category_counts": dict(sorted(category_counts.items())),
            "affect_counts": dict(sorted(affected_counts.items())),
            "divergent": sum(1 for status in statuses if status == "divergent"),
            "gate": "BLOCKED_WS_DIVERGENCE_UNEXPLAINED" if blocked else "WS_DIVERGENCE_ANALYSIS_PASS"}


valid_rows = st.fixed_dictionaries(
    {"comparison_status": st.just("divergent")},
    optional={
        "bid_top_n_diff": st.fixed_dictionaries({}, optional={
            "missing_prices": st.lists(st.just("0.5"), max_size=1),
            "size_deltas": st.lists(st.fixed_dictionaries({"price": st.just("0.5")}), max_size=3)}),
        "ask_top_n_diff": st.fixed_dictionaries({}, optional={
            "extra_prices": st.lists(st.just("0.6"), max_size=1),
            "size_deltas": st.lists(st.fixed_dictionaries({"price": st.just("0.6")}), max_size=2)}),
        "best_bid_match": matches, "best_ask_match": matches, "spread_match": matches,
        "level_count_match": matches,
    },
)


@pytest.mark.requires_reference
@settings(max_examples=300, deadline=None)
@given(batch=st.lists(st.tuples(valid_rows, st.booleans(), st.booleans()), max_size=8),
       others=st.lists(st.sampled_from(["match", "no_local_book", None, "", "weird", 0]), max_size=4))
def test_aggregates_equal_reference_counters_and_gate(batch: list[tuple[dict[str, Any], bool, bool]],
                                                      others: list[Any]) -> None:
    assert REF is not None
    aggregates = Aggregates()
    results = []
    statuses: list[Any] = []
    for status in others:
        text = aggregates.count_row({"comparison_status": status})
        assert text == str(status or "unknown")
        statuses.append(status)
    for row, has_context, has_evidence in batch:
        assert aggregates.count_row(row) == "divergent"
        statuses.append("divergent")
        query = make_query(0, 0, 1, row, parse_time_us)
        category, affects = classify(row, query.bid_diff, query.ask_diff, has_context, has_evidence)
        aggregates.add_result(category, affects, has_context)
        context = {"before_or_at": EVENTS[:1] if has_context else [], "after": []}
        results.append((row, *REF.classify_divergence(row, context, [1] if has_evidence else [])))
    expected = reference_aggregates(results, statuses)
    assert dict(sorted(aggregates.status_counts.items())) == expected["status_counts"]
    assert dict(sorted(aggregates.category_counts.items())) == expected["category_counts"]
    assert dict(sorted(aggregates.affect_counts.items())) == expected["affect_counts"]  # zero counters too
    assert aggregates.comparison_rows == len(statuses)
    assert aggregates.divergent_rows == expected["divergent"]
    assert aggregates.divergence_results == len(batch)
    assert aggregates.gate() == expected["gate"]
    assert (bool(batch) and aggregates.all_size_only) == (bool(results) and all(r[2]["size_only"] for r in results))
    assert (bool(batch) and aggregates.all_with_context) == (bool(batch) and all(c for _r, c, _e in batch))


def test_aggregates_gate() -> None:
    aggregates = Aggregates()
    assert aggregates.gate() == GATE_PASS  # nothing divergent
    row = {"bid_top_n_diff": {"size_deltas": [{"price": "0.5"}]}}
    aggregates.add_result(*classify(row, row["bid_top_n_diff"], {}, True, True), True)
    assert aggregates.gate() == GATE_PASS  # size-only with evidence
    aggregates.add_result(*classify(row, row["bid_top_n_diff"], {}, True, False), True)
    assert aggregates.gate() == GATE_PASS  # size-only without evidence is unexplained, not blocking
    assert aggregates.affect_counts["bid_size_deltas"] == 2 and aggregates.affect_counts["ask_size_deltas"] == 0
    assert "ask_size_deltas" in aggregates.affect_counts  # a zero-valued counter, as the reference has
    aggregates.add_result(*classify(row, row["bid_top_n_diff"], {}, False, False), False)
    assert aggregates.gate() == GATE_BLOCKED  # insufficient context blocks
    assert not aggregates.all_with_context
    other = Aggregates()
    mismatch = {"best_bid_match": False}
    other.add_result(*classify(mismatch, {}, {}, True, False), True)
    assert other.gate() == GATE_BLOCKED
    assert not other.all_size_only


# -- the report's finding paragraph (streamer's words where the reference hard-codes its own) -------------

@pytest.mark.parametrize("args, says, never", [
    ((0, 0, 0, {}, 0), "There are no divergent rows in this sample.", "not analysed"),
    ((2, 2, 0, {}, 0), "The 2 divergent rows are size-only", "could not be read"),
    ((3, 1, 2, {"best_bid": 2}, 1), "1 of the divergent rows have no token-specific websocket context", "asked for"),
    ((3, 3, 0, {}, 3, 0, 0, 0), "No websocket context was asked for (--context-limit 0).", "in the capture"),
    ((0, 0, 0, {}, 0, 1), "1 divergent row was not analysed", "There are no divergent rows"),
    ((2, 2, 0, {}, 0, 2), "2 more divergent rows were not analysed", "could not be read"),
    ((0, 0, 0, {}, 0, 0, 3), "Some comparison rows could not be read", "There are no divergent rows"),
], ids=["none", "size-only", "without-context", "limit-0", "unanalysed-only", "unanalysed-more", "unread"])
def test_the_finding_says_what_the_rows_say(args: tuple[Any, ...], says: str, never: str) -> None:
    from streamer.report import finding
    text = finding(*args)
    assert says in text and never not in text
