"""Tests for streamer.compare.compare_books: a naive oracle plus hand-written cases per field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.books import Book, parse_levels
from streamer.compare import compare_books

D = Decimal

KEYS = [
    "best_bid_match",
    "best_ask_match",
    "spread_match",
    "level_count_match",
    "rest_best_bid",
    "local_best_bid",
    "rest_best_ask",
    "local_best_ask",
    "bid_top_n_diff",
    "ask_top_n_diff",
]


def levels(spec: dict[str, str]) -> dict[Decimal, Decimal]:
    """``{"0.5": "10"}`` -> REST levels, through the same parser the tool uses."""
    parsed, bad = parse_levels([{"price": p, "size": s} for p, s in spec.items()])
    assert bad == 0
    return parsed


def book(bids: dict[str, str], asks: dict[str, str]) -> Book:
    result = Book()
    result.replace(levels(bids), levels(asks))
    result._check()
    return result


def diff(missing: list[str] = [], extra: list[str] = [], deltas: list[tuple[str, str, str]] = []) -> dict[str, Any]:  # noqa: B006
    return {
        "missing_prices": list(missing),
        "extra_prices": list(extra),
        "size_deltas": [{"price": p, "rest_size": r, "local_size": s} for p, r, s in deltas],
    }


EMPTY_DIFF = diff()

# ---------------------------------------------------------------- the naive oracle


def naive_text(value: Decimal | None) -> str | None:
    """Canonical text, the slow way: strip zeros from the plain digits by hand."""
    if value is None:
        return None
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("", "-"):
        text = "0"
    return text


def naive_compare(
    rest_bids: dict[Decimal, Decimal],
    rest_asks: dict[Decimal, Decimal],
    local_bids: dict[Decimal, Decimal],
    local_asks: dict[Decimal, Decimal],
    top_n: int,
) -> tuple[dict[str, Any], bool]:
    """SPEC §3, written directly: sort everything, compare lists."""

    def best(side: dict[Decimal, Decimal], is_bid: bool) -> Decimal | None:
        ordered = sorted(side, reverse=is_bid)
        return ordered[0] if ordered else None

    def spread(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> Decimal | None:
        bid, ask = best(bids, True), best(asks, False)
        return None if bid is None or ask is None else ask - bid

    def top_diff(rest: dict[Decimal, Decimal], local: dict[Decimal, Decimal], is_bid: bool) -> dict[str, Any]:
        rest_top = sorted(rest, reverse=is_bid)[: max(top_n, 0)]
        local_top = sorted(local, reverse=is_bid)[: max(top_n, 0)]
        return {
            "missing_prices": [naive_text(p) for p in rest_top if p not in local_top],
            "extra_prices": [naive_text(p) for p in local_top if p not in rest_top],
            "size_deltas": [
                {"price": naive_text(p), "rest_size": naive_text(rest[p]), "local_size": naive_text(local[p])}
                for p in rest_top
                if p in local_top and rest[p] != local[p]
            ],
        }

    fields = {
        "best_bid_match": best(rest_bids, True) == best(local_bids, True),
        "best_ask_match": best(rest_asks, False) == best(local_asks, False),
        "spread_match": spread(rest_bids, rest_asks) == spread(local_bids, local_asks),
        "level_count_match": (len(rest_bids), len(rest_asks)) == (len(local_bids), len(local_asks)),
        "rest_best_bid": naive_text(best(rest_bids, True)),
        "local_best_bid": naive_text(best(local_bids, True)),
        "rest_best_ask": naive_text(best(rest_asks, False)),
        "local_best_ask": naive_text(best(local_asks, False)),
        "bid_top_n_diff": top_diff(rest_bids, local_bids, True),
        "ask_top_n_diff": top_diff(rest_asks, local_asks, False),
    }
    all_match = all(fields[k] for k in KEYS[:4]) and not any(
        fields[side][kind] for side in ("bid_top_n_diff", "ask_top_n_diff") for kind in ("missing_prices", "extra_prices", "size_deltas")
    )
    return fields, all_match


# ---------------------------------------------------------------- hypothesis against the oracle

ticks = st.integers(min_value=1, max_value=60)
size_cents = st.integers(min_value=1, max_value=500)
sides = st.dictionaries(ticks, size_cents, max_size=25)


def spellings(tick: int) -> list[str]:
    """Equal texts for the price tick/100: "0.5", "0.50", ".5", "5E-1"."""
    value = D(tick) / 100
    text = f"{value.normalize():f}"
    out = [text, text + "0", f"{value.normalize():E}"]
    if text.startswith("0."):
        out.append(text[1:])
    return out


@st.composite
def raw_side(draw: st.DrawFn, base: dict[int, int]) -> list[dict[str, str]]:
    """Write a side as a raw REST/websocket list, in any order, prices spelled any way."""
    items = draw(st.permutations(sorted(base.items())))
    return [
        {"price": draw(st.sampled_from(spellings(tick))), "size": draw(st.sampled_from([f"{cents / 100:.2f}", str(D(cents) / 100)]))}
        for tick, cents in items
    ]


@st.composite
def perturbed(draw: st.DrawFn, base: dict[int, int]) -> dict[int, int]:
    """The same side with a few levels removed, resized or added (often none)."""
    side = dict(base)
    for tick in draw(st.lists(st.sampled_from(sorted(base)), max_size=3)) if base else []:
        if draw(st.booleans()):
            side.pop(tick, None)
        else:
            side[tick] = draw(size_cents)
    side.update(draw(st.dictionaries(ticks, size_cents, max_size=2)))
    return side


@st.composite
def book_pairs(draw: st.DrawFn) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal], Book | None, int]:
    base_bids, base_asks = draw(sides), draw(sides)
    rest_bids, _ = parse_levels(draw(raw_side(base_bids)))
    rest_asks, _ = parse_levels(draw(raw_side(base_asks)))
    local: Book | None
    if draw(st.integers(0, 9)) == 0:
        local = None
    else:
        same = draw(st.booleans())
        local_bids, _ = parse_levels(draw(raw_side(base_bids if same else draw(perturbed(base_bids)))))
        local_asks, _ = parse_levels(draw(raw_side(base_asks if same else draw(perturbed(base_asks)))))
        local = Book()
        local.replace(local_bids, local_asks)
        local._check()
    top_n = draw(st.integers(min_value=0, max_value=12))
    return rest_bids, rest_asks, local, top_n


@settings(max_examples=400)
@given(book_pairs())
def test_compare_books_matches_naive_oracle(case: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal], Book | None, int]) -> None:
    rest_bids, rest_asks, local, top_n = case
    local_bids = dict(local.bids.items()) if local is not None else {}
    local_asks = dict(local.asks.items()) if local is not None else {}
    fields, all_match = compare_books(rest_bids, rest_asks, local, top_n)
    expected, expected_match = naive_compare(rest_bids, rest_asks, local_bids, local_asks, top_n)
    assert list(fields) == KEYS
    assert fields == expected
    assert all_match is expected_match
    if local is not None:
        local._check()  # comparing never mutates the book


@given(sides, sides, st.integers(min_value=1, max_value=12))
def test_compare_books_equal_books_match(bids: dict[int, int], asks: dict[int, int], top_n: int) -> None:
    rest_bids = {D(t) / 100: D(c) / 100 for t, c in bids.items()}
    rest_asks = {D(t) / 100: D(c) / 100 for t, c in asks.items()}
    local = Book()
    local.replace(rest_bids, rest_asks)
    fields, all_match = compare_books(rest_bids, rest_asks, local, top_n)
    assert all_match is True
    assert fields["bid_top_n_diff"] == EMPTY_DIFF and fields["ask_top_n_diff"] == EMPTY_DIFF
    assert fields["rest_best_bid"] == fields["local_best_bid"]
    assert fields["rest_best_ask"] == fields["local_best_ask"]


# ---------------------------------------------------------------- hand-written cases


def test_compare_books_identical_book_all_fields() -> None:
    rest_bids, rest_asks = levels({"0.40": "10", "0.45": "5"}), levels({"0.55": "7", "0.6": "1E+2"})
    fields, all_match = compare_books(rest_bids, rest_asks, book({"0.45": "5", "0.4": "10.0"}, {"0.6": "100", "0.550": "7"}), 10)
    assert all_match is True
    assert fields == {
        "best_bid_match": True,
        "best_ask_match": True,
        "spread_match": True,
        "level_count_match": True,
        "rest_best_bid": "0.45",
        "local_best_bid": "0.45",
        "rest_best_ask": "0.55",
        "local_best_ask": "0.55",
        "bid_top_n_diff": EMPTY_DIFF,
        "ask_top_n_diff": EMPTY_DIFF,
    }
    assert list(fields) == KEYS


def test_compare_books_prices_compare_as_decimals() -> None:
    fields, all_match = compare_books(levels({"0.50": "10.00"}), levels({".6": "1"}), book({".5": "10"}, {"0.600": "1.0"}), 10)
    assert all_match is True
    assert fields["rest_best_bid"] == "0.5" and fields["local_best_bid"] == "0.5"
    assert fields["rest_best_ask"] == "0.6" and fields["local_best_ask"] == "0.6"


def test_compare_books_both_empty_null_equals_null() -> None:
    fields, all_match = compare_books({}, {}, Book(), 10)
    assert all_match is True
    assert fields["best_bid_match"] is True and fields["best_ask_match"] is True
    assert fields["spread_match"] is True and fields["level_count_match"] is True
    assert fields["rest_best_bid"] is None and fields["local_best_bid"] is None
    assert fields["rest_best_ask"] is None and fields["local_best_ask"] is None


def test_compare_books_none_local_is_an_empty_book() -> None:
    assert compare_books({}, {}, None, 10) == compare_books({}, {}, Book(), 10)
    fields, all_match = compare_books(levels({"0.4": "1"}), {}, None, 10)
    assert all_match is False
    assert fields["best_bid_match"] is False
    assert fields["best_ask_match"] is True  # None equals None
    assert fields["spread_match"] is True  # no spread on either side
    assert fields["level_count_match"] is False
    assert fields["local_best_bid"] is None and fields["rest_best_bid"] == "0.4"
    assert fields["bid_top_n_diff"] == diff(missing=["0.4"])


def test_compare_books_empty_side_one_side_only() -> None:
    fields, all_match = compare_books({}, levels({"0.6": "1"}), book({"0.4": "1"}, {"0.6": "1"}), 10)
    assert all_match is False
    assert fields["best_bid_match"] is False
    assert fields["rest_best_bid"] is None and fields["local_best_bid"] == "0.4"
    assert fields["spread_match"] is False  # None vs 0.2
    assert fields["bid_top_n_diff"] == diff(extra=["0.4"])
    assert fields["ask_top_n_diff"] == EMPTY_DIFF


def test_compare_books_same_spread_different_quotes() -> None:
    fields, all_match = compare_books(levels({"0.4": "1"}), levels({"0.6": "1"}), book({"0.3": "1"}, {"0.5": "1"}), 10)
    assert fields["best_bid_match"] is False and fields["best_ask_match"] is False
    assert fields["spread_match"] is True  # 0.2 both
    assert fields["level_count_match"] is True
    assert all_match is False


def test_compare_books_spread_differs_when_one_quote_differs() -> None:
    fields, _ = compare_books(levels({"0.4": "1"}), levels({"0.6": "1"}), book({"0.4": "1"}, {"0.7": "1"}), 10)
    assert fields["best_bid_match"] is True
    assert fields["best_ask_match"] is False
    assert fields["spread_match"] is False


def test_compare_books_crossed_spread_is_compared_too() -> None:
    fields, _ = compare_books(levels({"0.6": "1"}), levels({"0.5": "1"}), book({"0.7": "1"}, {"0.6": "1"}), 10)
    assert fields["spread_match"] is True  # -0.1 both


def test_compare_books_spread_exact_beyond_28_digits() -> None:
    tiny = "0." + "0" * 35 + "1"
    fields, _ = compare_books(
        levels({"0.4": "1"}), levels({"0.6": "1"}), book({"0.4" + "0" * 33 + "1": "1"}, {"0.6" + "0" * 33 + "1": "1"}), 10
    )
    assert fields["spread_match"] is True
    fields, _ = compare_books(levels({"0.4": "1"}), levels({"0.6": "1"}), book({"0.3": "1"}, {"0.5" + tiny[3:]: "1"}), 10)
    assert fields["spread_match"] is False  # 0.2 vs 0.2 + 1E-36: equal after rounding to 28 digits, not exactly


def test_compare_books_level_count_each_side() -> None:
    fields, _ = compare_books(levels({"0.4": "1", "0.3": "1"}), levels({"0.6": "1"}), book({"0.4": "1"}, {"0.6": "1", "0.7": "1"}), 1)
    assert fields["level_count_match"] is False  # 2 vs 1 bids, 1 vs 2 asks: totals equal, sides not
    assert fields["bid_top_n_diff"] == EMPTY_DIFF and fields["ask_top_n_diff"] == EMPTY_DIFF
    fields, all_match = compare_books(levels({"0.4": "1", "0.3": "1"}), {}, book({"0.4": "1", "0.2": "1"}, {}), 10)
    assert fields["level_count_match"] is True
    assert all_match is False


def test_compare_books_missing_extra_and_deltas_in_order() -> None:
    rest_bids = levels({"0.50": "1", "0.49": "2", "0.48": "3", "0.47": "4", "0.45": "5"})
    local = book({"0.50": "1", "0.485": "9", "0.48": "30", "0.47": "40", "0.46": "6", "0.44": "7"}, {})
    fields, all_match = compare_books(rest_bids, {}, local, 10)
    assert all_match is False
    assert fields["bid_top_n_diff"] == diff(
        missing=["0.49", "0.45"],  # REST order: high to low
        extra=["0.485", "0.46", "0.44"],  # local order: high to low
        deltas=[("0.48", "3", "30"), ("0.47", "4", "40")],  # REST order
    )
    assert fields["best_bid_match"] is True


def test_compare_books_ask_diff_orders_low_to_high() -> None:
    rest_asks = levels({"0.9": "1", "0.6": "2", "0.7": "3", "0.8": "4"})
    local = book({}, {"0.95": "1", "0.8": "5", "0.7": "6", "0.65": "1", "0.55": "1"})
    fields, _ = compare_books({}, rest_asks, local, 10)
    assert fields["ask_top_n_diff"] == diff(
        missing=["0.6", "0.9"],
        extra=["0.55", "0.65", "0.95"],
        deltas=[("0.7", "3", "6"), ("0.8", "4", "5")],
    )
    assert fields["rest_best_ask"] == "0.6" and fields["local_best_ask"] == "0.55"


def test_compare_books_top_n_cut() -> None:
    rest_bids = levels({"0.5": "1", "0.4": "1", "0.3": "1", "0.2": "1"})
    # Local differs only below the top 2: an extra deep level and a deep size change.
    local = book({"0.5": "1", "0.4": "1", "0.3": "9", "0.2": "1", "0.1": "1"}, {})
    fields, all_match = compare_books(rest_bids, {}, local, 2)
    assert fields["bid_top_n_diff"] == EMPTY_DIFF
    assert fields["level_count_match"] is False
    assert all_match is False
    fields, _ = compare_books(rest_bids, {}, local, 3)
    assert fields["bid_top_n_diff"] == diff(deltas=[("0.3", "1", "9")])


def test_compare_books_top_n_membership_is_within_each_top() -> None:
    # 0.3 is in both books, but only in the local top 2: it is "extra", and 0.4 "missing".
    rest_bids = levels({"0.5": "1", "0.4": "1", "0.3": "1"})
    local = book({"0.5": "1", "0.3": "1"}, {})
    fields, _ = compare_books(rest_bids, {}, local, 2)
    assert fields["bid_top_n_diff"] == diff(missing=["0.4"], extra=["0.3"])


def test_compare_books_size_only_divergence() -> None:
    fields, all_match = compare_books(levels({"0.4": "10"}), levels({"0.6": "5"}), book({"0.4": "10.5"}, {"0.6": "5"}), 10)
    assert all_match is False
    assert [fields[k] for k in KEYS[:4]] == [True, True, True, True]
    assert fields["bid_top_n_diff"] == diff(deltas=[("0.4", "10", "10.5")])
    assert fields["ask_top_n_diff"] == EMPTY_DIFF


@pytest.mark.parametrize("is_bid", [True, False])
@pytest.mark.parametrize("kind", ["size", "swap"])
def test_compare_books_one_side_top_diff_alone_breaks_match(is_bid: bool, kind: str) -> None:
    # Everything matches except one diff list on one side.
    rest = {"0.3": "1", "0.4": "2"} if is_bid else {"0.6": "2", "0.7": "1"}
    local = dict(rest)
    if kind == "size":
        local[next(iter(local))] = "5"  # a size change, prices unchanged
    else:
        deep = "0.3" if is_bid else "0.7"
        other = "0.35" if is_bid else "0.65"
        del local[deep]
        local[other] = "1"  # same count, same best, another second level
    other_side = {"0.2": "1"} if not is_bid else {"0.8": "1"}
    rest_bids, rest_asks = (levels(rest), levels(other_side)) if is_bid else (levels(other_side), levels(rest))
    local_book = book(local, other_side) if is_bid else book(other_side, local)
    fields, all_match = compare_books(rest_bids, rest_asks, local_book, 10)
    assert [fields[k] for k in KEYS[:4]] == [True, True, True, True]
    changed, same = ("bid_top_n_diff", "ask_top_n_diff") if is_bid else ("ask_top_n_diff", "bid_top_n_diff")
    assert fields[same] == EMPTY_DIFF
    assert fields[changed] != EMPTY_DIFF
    assert all_match is False


def test_compare_books_canonical_strings_in_diffs() -> None:
    fields, _ = compare_books(levels({"0.50": "1.500", "0.40": "1E+2"}), {}, book({"0.5": "2.0", "0.45": "0.0010"}, {}), 10)
    assert fields["bid_top_n_diff"] == diff(missing=["0.4"], extra=["0.45"], deltas=[("0.5", "1.5", "2")])


@pytest.mark.parametrize("top_n", [0, -3])
def test_compare_books_top_n_zero_compares_no_levels(top_n: int) -> None:
    fields, all_match = compare_books(levels({"0.4": "1"}), levels({"0.6": "1"}), book({"0.4": "2"}, {"0.6": "1"}), top_n)
    assert fields["bid_top_n_diff"] == EMPTY_DIFF and fields["ask_top_n_diff"] == EMPTY_DIFF
    assert all_match is True  # the size difference is only visible through the top N


def test_compare_books_does_not_mutate_inputs() -> None:
    rest_bids, rest_asks = levels({"0.4": "1", "0.3": "2"}), levels({"0.6": "1"})
    local = book({"0.4": "1"}, {"0.7": "1"})
    before = (dict(rest_bids), dict(rest_asks), repr(local))
    compare_books(rest_bids, rest_asks, local, 1)
    assert (rest_bids, rest_asks, repr(local)) == before
    local._check()


def test_compare_books_fresh_lists_each_call() -> None:
    first, _ = compare_books(levels({"0.4": "1"}), {}, None, 10)
    first["bid_top_n_diff"]["missing_prices"].append("junk")
    second, _ = compare_books(levels({"0.4": "1"}), {}, None, 10)
    assert second["bid_top_n_diff"]["missing_prices"] == ["0.4"]
