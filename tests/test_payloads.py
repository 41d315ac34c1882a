"""Coverage tests for streamer.payloads against the reference analyzer's own functions.

The reference (``../shared/reference/analyze_polymarket_ws_divergences.py``) is loaded with
importlib from its path and used as the oracle for ``compact_token_events`` and ``parse_iso``;
the tests that need it are skipped when it is absent.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamer.payloads import (
    BOOK,
    InexactNumber,
    LEGACY_PRICE_CHANGE,
    PRICE_CHANGE,
    analysis_parts,
    compact_event,
    parse_time_us,
    part_event_type,
    part_price_key,
    price_key,
)
from streamer.session import row_parts
from tests import refcompare


REF = refcompare.load_reference_module()
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- payload strategies

TOKENS = ["111", "222", "333"]
token_values = st.one_of(st.sampled_from(TOKENS), st.sampled_from([111, 222, 333.0, True, None, ""]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4), st.floats(allow_nan=False))
prices = st.one_of(st.sampled_from(["0.5", "0.50", ".5", "0.51", "1", "1.0", "abc", "NaN"]), st.none(),
                   st.sampled_from([0.5, 1, 0]))
sides = st.sampled_from(["BUY", "SELL", "buy", None, 1])


def maybe(key: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A one-key dict or an empty one (the key may be missing)."""
    return st.one_of(st.just({}), values.map(lambda value: {key: value}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def merge(dicts: tuple[dict[str, Any], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in dicts:
            out.update(d)
        return out

    return st.tuples(*parts).map(merge)


levels = st.one_of(
    st.lists(st.fixed_dictionaries({"price": prices, "size": prices}), max_size=3),
    st.sampled_from([None, [], 0, False, "", "ab", {"k": 1}]),  # falsy, or what len() still accepts
)

change_entry = merged(
    maybe("asset_id", token_values), maybe("price", prices), maybe("size", prices), maybe("side", sides),
    maybe("hash", st.sampled_from(["h1", None])), maybe("best_bid", prices), maybe("best_ask", prices),
)

# ``price_changes`` values the reference iterates without failing (a truthy number would crash it)
price_change_lists = st.one_of(
    st.lists(st.one_of(change_entry, scalars), max_size=4),
    st.sampled_from([None, [], {}, {"111": 1}, "111", 0]),
)
legacy_lists = st.one_of(
    st.lists(st.one_of(merged(maybe("price", prices), maybe("size", prices), maybe("side", sides),
                              maybe("best_bid", prices)), scalars), max_size=3),
    st.sampled_from([None, {}, "x"]),
)

book_item = merged(
    st.sampled_from([{"event_type": "book"}, {}, {"event_type": ""}, {"event_type": None}, {"event_type": 0}]),
    maybe("asset_id", token_values), maybe("bids", levels), maybe("asks", levels),
    maybe("hash", st.sampled_from(["bh", None])), maybe("timestamp", st.sampled_from(["1700000000000", 5])),
    maybe("market", st.just("0xm")),
)
current_price_change = merged(
    st.just({"event_type": "price_change"}), maybe("market", st.just("0xm")),
    maybe("price_changes", price_change_lists), maybe("timestamp", st.just("1")),
)
legacy_price_change = merged(
    st.just({"event_type": "price_change"}), maybe("asset_id", token_values), maybe("hash", st.sampled_from(["lh", None])),
    maybe("changes", legacy_lists), maybe("price_changes", price_change_lists),
)
best_bid_ask = merged(
    st.just({"event_type": "best_bid_ask"}), maybe("asset_id", token_values), maybe("best_bid", prices),
    maybe("best_ask", prices), maybe("spread", prices), maybe("timestamp", st.just("2")),
)
last_trade = merged(
    st.just({"event_type": "last_trade_price"}), maybe("asset_id", token_values), maybe("price", prices),
    maybe("size", prices), maybe("side", sides), maybe("timestamp", st.just("3")),
)
id_lists = st.lists(token_values, max_size=4)
new_market = merged(
    st.just({"event_type": "new_market"}), maybe("asset_id", token_values), maybe("market", st.just("0xnm")),
    maybe("assets_ids", st.one_of(id_lists, st.sampled_from([None, [], 0, "", "123", {"222": 1, "111": 0}, {}]))),
    maybe("clob_token_ids", st.one_of(id_lists, st.sampled_from(["21", {"333": None}]))),
    maybe("timestamp", st.just("4")),
)
other_item = merged(
    st.fixed_dictionaries({"event_type": st.one_of(
        st.sampled_from(["tick_size_change", "market_resolved", "weird", "Book", "PRICE_CHANGE"]),
        st.sampled_from([1, True, [1], 2.5]))}),
    maybe("asset_id", token_values), maybe("bids", levels), maybe("asks", levels),
)
untyped_item = merged(maybe("asset_id", token_values), maybe("bids", levels), maybe("price", prices))

any_item = st.one_of(book_item, current_price_change, legacy_price_change, best_bid_ask, last_trade, new_market,
                     other_item, untyped_item)
payloads = st.one_of(
    any_item,
    st.lists(st.one_of(any_item, scalars, st.lists(any_item, max_size=1)), max_size=5),
    scalars,
)
#: payloads without the older price_change form (the reference ignores it; tested apart)
current_items = st.one_of(book_item, current_price_change, best_bid_ask, last_trade, new_market, other_item,
                          untyped_item)
current_payloads = st.one_of(current_items, st.lists(st.one_of(current_items, scalars), max_size=5), scalars)


def candidate_tokens(payload: Any) -> set[str]:
    """Every token a payload could mention, plus a few it does not."""
    tokens = {"None", "", "999", "True", "111", "222", "333", "333.0"}
    tokens.update(analysis_parts(payload, exact=True))
    return tokens


def streamer_events(payload: Any, token: str, *, legacy: bool) -> list[dict[str, Any]]:
    return [compact_event(part) for part in analysis_parts(payload, exact=True).get(token, [])
            if legacy or part[0] != LEGACY_PRICE_CHANGE]


def legacy_oracle(payload: Any, token: str) -> list[dict[str, Any]]:
    """The older price_change form, as SPEC section 2.3 describes it, for one token."""
    items = payload if isinstance(payload, list) else [payload]
    events = []
    for item in items:
        if not isinstance(item, dict) or item.get("event_type") != "price_change":
            continue
        changes = item.get("changes")
        if not isinstance(changes, list) or str(item.get("asset_id")) != token:
            continue
        for change in changes:
            if isinstance(change, dict):
                events.append({
                    "event_type": "price_change", "side": change.get("side"),
                    "price": None if change.get("price") is None else str(change.get("price")),
                    "size": None if change.get("size") is None else str(change.get("size")),
                    "best_bid": change.get("best_bid"), "best_ask": change.get("best_ask"),
                    "hash": item.get("hash"),
                })
    return events


# ---------------------------------------------------------------- analysis_parts vs the reference


@pytest.mark.requires_reference
@SETTINGS
@given(payload=current_payloads)
def test_analysis_parts_equal_reference_compact_token_events(payload: Any) -> None:
    assert REF is not None
    parts = analysis_parts(payload, exact=True)
    for token in candidate_tokens(payload):
        expected = REF.compact_token_events({"json": payload}, token)
        assert streamer_events(payload, token, legacy=True) == expected, token
    # a token with no events has no key at all (the join relies on it)
    assert all(parts.values())


@pytest.mark.requires_reference
@SETTINGS
@given(payload=payloads)
def test_analysis_parts_with_older_price_change_form(payload: Any) -> None:
    """Everything but the older form equals the reference; the older form is indexed too."""
    assert REF is not None
    parts = analysis_parts(payload, exact=True)
    for token in candidate_tokens(payload):
        assert streamer_events(payload, token, legacy=False) == REF.compact_token_events({"json": payload}, token)
        legacy = [compact_event(part) for part in parts.get(token, []) if part[0] == LEGACY_PRICE_CHANGE]
        assert legacy == legacy_oracle(payload, token)
        for part in parts.get(token, []):
            assert part_event_type(part) == compact_event(part)["event_type"]


def test_older_price_change_form_is_indexed_and_reference_ignores_it() -> None:
    payload = {"event_type": "price_change", "asset_id": 111, "hash": "lh",
               "changes": [{"price": ".5", "side": "BUY", "size": "10"}, 7, {"price": 0.25, "side": "SELL"}]}
    parts = analysis_parts(payload, exact=True)
    assert list(parts) == ["111"]
    assert [part[0] for part in parts["111"]] == [LEGACY_PRICE_CHANGE, LEGACY_PRICE_CHANGE]
    assert [compact_event(part) for part in parts["111"]] == [
        {"event_type": "price_change", "side": "BUY", "price": ".5", "size": "10", "best_bid": None,
         "best_ask": None, "hash": "lh"},
        {"event_type": "price_change", "side": "SELL", "price": "0.25", "size": None, "best_bid": None,
         "best_ask": None, "hash": "lh"},
    ]
    assert part_price_key(parts["111"][0]) == Decimal("0.5")
    if REF is not None:
        assert REF.compact_token_events({"json": payload}, "111") == []


def test_both_price_change_forms_in_one_item_keep_order() -> None:
    payload = [{"event_type": "price_change", "asset_id": "111", "hash": "old",
                "changes": [{"price": "0.1", "side": "BUY", "size": "1"}],
                "price_changes": [{"asset_id": "111", "price": "0.2", "side": "SELL", "size": "2", "hash": "new"},
                                  {"asset_id": "222", "price": "0.3", "side": "BUY", "size": "3"}]}]
    parts = analysis_parts(payload, exact=True)
    assert [(part[0], compact_event(part)["price"], compact_event(part)["hash"]) for part in parts["111"]] == [
        (PRICE_CHANGE, "0.2", "new"), (LEGACY_PRICE_CHANGE, "0.1", "old")]
    assert [compact_event(part)["price"] for part in parts["222"]] == ["0.3"]


def test_older_form_with_empty_changes_leaves_no_token() -> None:
    assert analysis_parts({"event_type": "price_change", "asset_id": "111", "changes": []}) == {}
    assert analysis_parts({"event_type": "price_change", "asset_id": "111", "changes": [1, None]}) == {}


def test_analysis_parts_shapes() -> None:
    assert analysis_parts(None) == {}
    assert analysis_parts(3) == {}
    assert analysis_parts("PONG") == {}
    assert analysis_parts([]) == {}
    assert analysis_parts([1, "x", None, [{"asset_id": "111", "bids": [], "asks": []}]]) == {}
    book = analysis_parts([{"asset_id": 111, "bids": [{"price": "0.5", "size": "1"}], "asks": []}, 5])
    assert book == {"111": [(BOOK, 1, 0, None, None)]}
    # bids/asks, not buys/sells, make an untyped object a book in the analysis
    assert [compact_event(p) for p in analysis_parts({"asset_id": "111", "buys": [], "sells": []})["111"]] == [
        {"event_type": "unknown_object"}]
    missing = analysis_parts({"event_type": "best_bid_ask", "best_bid": "0.4"})
    assert list(missing) == ["None"]
    new = analysis_parts({"event_type": "new_market", "asset_id": "111", "market": "0xm",
                          "assets_ids": ["111", 222, "222"], "timestamp": "9"})
    assert [compact_event(p) for p in new["111"]] == [{"event_type": "new_market"}]
    assert [compact_event(p) for p in new["222"]] == [{"event_type": "new_market", "market": "0xm", "timestamp": "9"}]


def test_items_and_their_types() -> None:
    """What counts as an item (an object, or the objects of a list) and its event type."""
    book = {"asset_id": "1", "bids": [], "asks": []}

    def types(payload: Any) -> list[str]:
        return [part_event_type(part) for parts in analysis_parts(payload).values() for part in parts]

    assert types(book) == ["book"]
    assert types([book, 1, None, "x", [book]]) == ["book"]
    assert analysis_parts(None) == {} and analysis_parts("x") == {} and analysis_parts(2) == {}
    assert types({"asset_id": "1", "event_type": "tick_size_change"}) == ["tick_size_change"]
    assert types({"asset_id": "1", "event_type": 7}) == ["7"]
    assert types({"event_type": "", "asset_id": "1", "bids": [], "asks": []}) == ["book"]
    assert types({"asset_id": "1", "bids": []}) == ["unknown_object"]


def test_new_market_assets_ids_iterated_as_the_reference_does() -> None:
    """An object's keys and a string's characters name tokens (the reference iterates them).

    Was a bug (found by this module): only lists were read.
    """
    event = {"event_type": "new_market", "market": "0xm", "timestamp": None}
    payload = {"event_type": "new_market", "asset_id": "111", "market": "0xm", "assets_ids": {"222": True}}
    assert streamer_events(payload, "222", legacy=True) == [event]
    payload = {"event_type": "new_market", "asset_id": "111", "market": "0xm", "assets_ids": "71"}
    assert streamer_events(payload, "7", legacy=True) == [event]
    assert streamer_events(payload, "1", legacy=True) == [event]
    assert streamer_events(payload, "71", legacy=True) == []
    # a number cannot be iterated: the reference would crash, streamer names no token
    assert list(analysis_parts({"event_type": "new_market", "asset_id": "111", "assets_ids": 5})) == ["111"]
    if REF is not None:
        for token in ("222", "7", "1"):
            ids = {"222": True} if token == "222" else "71"
            payload = {"event_type": "new_market", "asset_id": "111", "market": "0xm", "assets_ids": ids}
            assert REF.compact_token_events({"json": payload}, token) == [event]


# ---------------------------------------------------------------- parse_time_us vs parse_iso


def reference_us(text: str) -> int | None:
    assert REF is not None
    parsed = REF.parse_iso(text)
    return None if parsed is None else (parsed - EPOCH) // dt.timedelta(microseconds=1)


offsets = st.one_of(
    st.none(),
    st.just(dt.UTC),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    st.integers(min_value=-86399, max_value=86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s))),
)
datetimes = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))
timespecs = st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"])


@st.composite
def iso_strings(draw: st.DrawFn) -> str:
    moment = draw(datetimes).replace(tzinfo=draw(offsets))
    text = moment.isoformat(sep=draw(st.sampled_from(["T", " "])), timespec=draw(timespecs))
    style = draw(st.integers(0, 3))
    if style == 1 and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    elif style == 2 and moment.tzinfo is None:
        text += "Z"
    elif style == 3 and "." in text:
        text = text.replace(".", ",", 1)
    return text


def mutate(text: str, data: st.DataObject) -> str:
    position = data.draw(st.integers(0, len(text)), label="position")
    action = data.draw(st.sampled_from(["cut", "insert", "replace"]), label="action")
    char = data.draw(st.sampled_from(list("0123456789.:-+TZz ,x\u0660")), label="char")
    if action == "cut":
        return text[:position]
    if action == "insert":
        return text[:position] + char + text[position:]
    return text[:position] + char + text[position + 1:]


@pytest.mark.requires_reference
@settings(max_examples=600, deadline=None)
@given(text=iso_strings())
def test_parse_time_us_equals_reference_on_iso_forms(text: str) -> None:
    assert REF is not None
    expected = reference_us(text)
    assert expected is not None  # every generated form is valid ISO
    assert parse_time_us(text) == expected
    assert parse_time_us(text) == expected  # the cached fast path agrees with the first call
    # the reference's received_epoch float is exactly streamer's microseconds / 1e6
    assert parse_time_us(text) / 1_000_000 == REF.parse_iso(text).timestamp()


@pytest.mark.requires_reference
@settings(max_examples=600, deadline=None)
@given(text=iso_strings(), data=st.data())
def test_parse_time_us_equals_reference_on_damaged_strings(text: str, data: st.DataObject) -> None:
    damaged = mutate(text, data)
    assume(damaged)
    assert parse_time_us(damaged) == reference_us(damaged)


@pytest.mark.requires_reference
@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_parse_time_us_equals_reference_on_junk(text: str) -> None:
    assert parse_time_us(text) == reference_us(text)


@pytest.mark.requires_reference
@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1)),
       fraction=st.text(alphabet="0123456789\u0660a. ", min_size=6, max_size=6))
def test_parse_time_us_recorder_form_fast_path(moment: dt.datetime, fraction: str) -> None:
    """Length 27, ``.`` at 19 and ``Z`` at 26: the fast path, with good and bad fractions."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + "." + fraction + "Z"
    assert len(text) == 27
    assert parse_time_us(text) == reference_us(text)


def test_parse_time_us_known_values() -> None:
    assert parse_time_us(None) is None
    assert parse_time_us("") is None
    assert parse_time_us("2026-04-19T17:00:00.123456Z") == 1776618000123456
    assert parse_time_us("2026-04-19T17:00:00Z") == 1776618000000000
    assert parse_time_us("2026-04-19T19:00:00+02:00") == 1776618000000000
    assert parse_time_us("2026-04-19T17:00:00") == 1776618000000000  # naive is UTC
    assert parse_time_us("1969-12-31T23:59:59.999999Z") == -1
    assert parse_time_us("2026-04-19T17:00:00.123456ZZ") is None
    assert parse_time_us("not a time") is None


def test_parse_time_us_fast_path_prefix_with_its_own_fraction() -> None:
    """Was a bug (found by this module): the fast path parsed the 19-character prefix alone."""
    text = "20260419T170000.123.456789Z"
    assert parse_time_us(text) is None
    if REF is not None:
        assert reference_us(text) is None


@pytest.mark.requires_reference
@settings(max_examples=500, deadline=None)
@given(text=iso_strings(), fraction=st.text(alphabet="0123456789", min_size=6, max_size=6),
       filler=st.sampled_from(["0", ".", ":", "T", "1"]))
def test_parse_time_us_any_19_character_prefix(text: str, fraction: str, filler: str) -> None:
    """Whatever stands in the first 19 characters, a 27-character ``...ffffffZ`` string parses as the reference."""
    prefix = (text + filler * 19)[:19]
    value = prefix + "." + fraction + "Z"
    assert parse_time_us(value) == reference_us(value)


# ---------------------------------------------------------------- price_key


def test_price_key_decimal_equality() -> None:
    assert price_key("0.50") == price_key(".5") == price_key("0.5") == price_key("5E-1") == price_key(0.5)
    assert price_key("1") == price_key("1.00") == price_key("1E+0") == price_key(1)
    assert price_key("0.5") != price_key("0.51")
    assert price_key("0.5") in frozenset([price_key(".50")])
    assert price_key(None) is None
    # what is not a finite decimal compares as its text
    assert price_key("abc") == "abc"
    assert price_key("NaN") == "NaN" and price_key("NaN") != price_key("nan")
    assert price_key("Infinity") == "Infinity"
    assert price_key(True) == "True"
    # cached and uncached answers agree
    for text in ["0.123", "0.1230", "0.123"]:
        assert price_key(text) == Decimal("0.123")


@settings(max_examples=300, deadline=None)
@given(value=st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=0, max_value=1000))
def test_price_key_spellings_match(value: Decimal) -> None:
    spellings = {str(value), format(value, "f"), format(value, "E"), format(value.normalize(), "f")}
    keys = {price_key(text) for text in spellings}
    assert len(keys) == 1
    assert price_key(format(value + Decimal("0.0001"), "f")) not in keys


def test_price_key_only_plain_decimal_syntax_is_a_decimal() -> None:
    """Was a bug (found by this module): text Decimal() takes but books.parse_decimal refuses matched."""
    assert price_key("0_5") != price_key("5")
    assert price_key(" 0.5") != price_key("0.5")
    assert price_key("\u0660.\u0665") != price_key("0.5")
    assert price_key("0_5") == "0_5" and price_key(" 0.5") == " 0.5"  # such text matches only itself


def test_part_price_key() -> None:
    parts = analysis_parts({"event_type": "price_change", "price_changes": [
        {"asset_id": "1", "price": "0.50"}, {"asset_id": "1"}, {"asset_id": "1", "price": 0.5}]})["1"]
    assert [part_price_key(part) for part in parts] == [Decimal("0.5"), None, Decimal("0.5")]
    book = analysis_parts({"asset_id": "1", "bids": [], "asks": []})["1"][0]
    assert part_price_key(book) is None


def test_a_float_token_id_from_the_fast_parser_is_read_again_from_the_line() -> None:
    token = 2 ** 70 + 1
    line = json.dumps({"received_at_utc": "2026-04-19T17:00:00Z",
                       "json": [{"event_type": "last_trade_price", "asset_id": token}]}).encode()
    fast = {"received_at_utc": "2026-04-19T17:00:00Z",
            "json": [{"event_type": "last_trade_price", "asset_id": float(token)}]}  # as orjson reads it
    with pytest.raises(InexactNumber):
        analysis_parts(fast["json"])
    assert list(analysis_parts(fast["json"], exact=True)) == [str(float(token))]
    assert list(row_parts(fast, line)) == [str(token)]  # the standard parser's exact integer
    assert list(row_parts(fast, None)) == [str(float(token))]  # no line to read again: as parsed
    assert list(row_parts({"json": {"event_type": "book", "asset_id": 7, "bids": [], "asks": []}}, None)) == ["7"]
