"""Coverage tests for streamer.books: decimals, canonical text, level parsing, Book."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from streamer.books import (
    DECIMAL_EXPONENT_LIMIT,
    Book,
    canonical,
    exact_subtract,
    parse_decimal,
    parse_levels,
)

D = Decimal


def lv(price: object, size: object) -> dict[str, object]:
    return {"price": price, "size": size}


def make_book(bids: dict[str, str], asks: dict[str, str]) -> Book:
    book = Book()
    book.replace({D(p): D(s) for p, s in bids.items()}, {D(p): D(s) for p, s in asks.items()})
    book._check()
    return book


# ---------------------------------------------------------------- parse_decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.50", "0.50"),
        (".5", "0.5"),
        ("100", "100"),
        ("0", "0"),
        ("-0.25", "-0.25"),
        ("1E+2", "1E+2"),
        ("0.0050", "0.0050"),
    ],
)
def test_parse_decimal_strings(text: str, expected: str) -> None:
    value = parse_decimal(text)
    assert type(value) is Decimal
    assert value == D(expected)
    # The exact digits are kept (not rounded, not normalized).
    assert str(value) == str(D(expected))


def test_parse_decimal_keeps_long_decimals_exact() -> None:
    text = "0.123456789012345678901234567890123456789"
    assert str(parse_decimal(text)) == text


@pytest.mark.parametrize(
    ("number", "expected"),
    [(5, "5"), (0, "0"), (-3, "-3"), (0.5, "0.5"), (0.1, "0.1"), (1e-7, "1E-7"), (12.0, "12.0")],
)
def test_parse_decimal_numbers_read_through_text(number: float, expected: str) -> None:
    value = parse_decimal(number)
    assert type(value) is Decimal
    assert value == D(expected)
    # 0.1 is read as the text "0.1", not as the binary float 0.1000000000000000055...
    assert value == D(str(number))


@pytest.mark.parametrize("flag", [True, False])
def test_parse_decimal_bool_is_not_a_number(flag: bool) -> None:
    assert parse_decimal(flag) is None


@pytest.mark.parametrize(
    "junk",
    [None, "", " ", "abc", "0.5.5", "1,5", "0x10", "$1", [], ["0.5"], {"price": "0.5"}, (1,), b"0.5", object()],
)
def test_parse_decimal_junk_is_none(junk: object) -> None:
    assert parse_decimal(junk) is None


@pytest.mark.parametrize(
    "special",
    ["NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "-inf", float("nan"), float("inf"), float("-inf")],
)
def test_parse_decimal_nan_and_infinity_are_none(special: object) -> None:
    assert parse_decimal(special) is None


def test_parse_decimal_exponent_limit() -> None:
    assert parse_decimal(f"1E+{DECIMAL_EXPONENT_LIMIT}") == D(f"1E+{DECIMAL_EXPONENT_LIMIT}")
    assert parse_decimal(f"1E-{DECIMAL_EXPONENT_LIMIT}") == D(f"1E-{DECIMAL_EXPONENT_LIMIT}")
    assert parse_decimal(f"1E+{DECIMAL_EXPONENT_LIMIT + 1}") is None
    assert parse_decimal(f"1E-{DECIMAL_EXPONENT_LIMIT + 1}") is None
    assert parse_decimal("1E+999999999999") is None
    assert parse_decimal(10 ** (DECIMAL_EXPONENT_LIMIT + 1)) is None
    assert parse_decimal(10**5000) is None  # past the int-to-str digit limit: no ValueError


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30))
def test_parse_decimal_round_trips_finite_text(value: Decimal) -> None:
    parsed = parse_decimal(str(value))
    assert parsed == value
    assert str(parsed) == str(value)


# ---------------------------------------------------------------- canonical


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("1E+2", "100"),
        ("100", "100"),
        ("0.0050", "0.005"),
        ("0.0", "0"),
        ("0E-7", "0"),
        ("0", "0"),
        ("1.000", "1"),
        ("-2.50", "-2.5"),
        ("5E-7", "0.0000005"),
        ("123.4500", "123.45"),
    ],
)
def test_canonical_forms(text: str, expected: str) -> None:
    assert canonical(D(text)) == expected


def test_canonical_none() -> None:
    assert canonical(None) is None


def test_canonical_never_rounds_to_context_precision() -> None:
    # Decimal.normalize() under the default context would round this to 28 digits.
    text = "0.12345678901234567890123456789012345"
    assert canonical(D(text + "000")) == text


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20, places=12))
def test_canonical_is_equal_and_stable(value: Decimal) -> None:
    text = canonical(value)
    assert text is not None
    assert "E" not in text and "e" not in text
    assert D(text) == value
    assert canonical(D(text)) == text


@given(st.lists(st.sampled_from(["0", "-0", "0.0", "-0.00", "0E-3", "0.5", "0.50", ".5", "-0.5", "1E+1", "10.0"]),
                min_size=1, max_size=12))
def test_canonical_is_the_same_whatever_was_printed_before(texts: list[str]) -> None:
    # canonical caches by decimal value: equal values ("0.5", "0.50") share a text, but the
    # sign of zero is printed ("-0"), so zeros must never be answered from another spelling.
    for text in texts:
        value = D(text)
        assert canonical(value) == format(value.normalize(Context(prec=100)), "f")


def test_exact_subtract_never_rounds() -> None:
    left = D("1." + "0" * 40 + "1")
    assert exact_subtract(left, D(1)) == D("1E-41")
    huge = exact_subtract(D("1E+1000"), D("1E-1000"))
    assert canonical(huge) == "9" * 1000 + "." + "9" * 1000


# ---------------------------------------------------------------- parse_levels


def test_parse_levels_plain() -> None:
    levels, bad = parse_levels([lv("0.40", "10"), lv("0.45", "2.5")])
    assert bad == 0
    assert levels == {D("0.4"): D("10"), D("0.45"): D("2.5")}
    assert all(type(k) is Decimal and type(v) is Decimal for k, v in levels.items())


def test_parse_levels_none_is_empty_not_bad() -> None:
    assert parse_levels(None) == ({}, 0)


@pytest.mark.parametrize("not_a_list", [{"price": "0.5", "size": "1"}, "0.5", 5, (lv("0.5", "1"),), True])
def test_parse_levels_non_list_is_one_bad(not_a_list: object) -> None:
    assert parse_levels(not_a_list) == ({}, 1)


def test_parse_levels_empty_list() -> None:
    assert parse_levels([]) == ({}, 0)


@pytest.mark.parametrize(
    "bad_level",
    [
        None,
        "0.5",
        ["0.5", "1"],
        5,
        {},
        {"price": "0.5"},
        {"size": "1"},
        lv(None, "1"),
        lv("0.5", None),
        lv("abc", "1"),
        lv("0.5", "abc"),
        lv("NaN", "1"),
        lv("0.5", "Infinity"),
        lv("0.5", "-1"),
        lv("0.5", -0.5),
        lv(True, "1"),
        lv("0.5", False),
        lv(["0.5"], "1"),
    ],
)
def test_parse_levels_bad_level_counted_and_skipped(bad_level: object) -> None:
    levels, bad = parse_levels([lv("0.1", "1"), bad_level, lv("0.2", "2")])
    assert bad == 1
    assert levels == {D("0.1"): D("1"), D("0.2"): D("2")}


def test_parse_levels_counts_every_bad_level() -> None:
    levels, bad = parse_levels([None, lv("x", "1"), lv("0.5", "-2"), {}, lv("0.3", "3")])
    assert bad == 4
    assert levels == {D("0.3"): D("3")}


@pytest.mark.parametrize("zero", ["0", "0.0", "0E-5", "-0", 0, 0.0])
def test_parse_levels_zero_size_dropped_not_bad(zero: object) -> None:
    levels, bad = parse_levels([lv("0.5", zero), lv("0.6", "1")])
    assert bad == 0
    assert levels == {D("0.6"): D("1")}


def test_parse_levels_numbers_accepted() -> None:
    levels, bad = parse_levels([lv(0.5, 10), lv(1, 2.25)])
    assert bad == 0
    assert levels == {D("0.5"): D("10"), D("1"): D("2.25")}


def test_parse_levels_duplicate_price_last_wins() -> None:
    levels, bad = parse_levels([lv("0.5", "1"), lv("0.6", "7"), lv("0.50", "2"), lv(".5", "3")])
    assert bad == 0
    assert levels == {D("0.5"): D("3"), D("0.6"): D("7")}
    assert len(levels) == 2


def test_parse_levels_bad_duplicate_does_not_erase_earlier() -> None:
    # A bad level is skipped: it does not override the good one before it.
    levels, bad = parse_levels([lv("0.5", "4"), lv("0.5", "-1"), lv("0.50", "x")])
    assert bad == 2
    assert levels == {D("0.5"): D("4")}


def test_parse_levels_last_zero_duplicate_removes_price() -> None:
    # The last level at a price wins; when its size is 0 the price is not a level.
    levels, bad = parse_levels([lv("0.5", "4"), lv("0.50", "0"), lv("0.4", "0"), lv("0.4", "2")])
    assert bad == 0
    assert levels == {D("0.4"): D("2")}


@pytest.mark.parametrize("text", [" 0.5", "0.5 ", "1_000", "\u0661", "0.5\n"])
def test_parse_decimal_rejects_non_plain_syntax(text: str) -> None:
    assert parse_decimal(text) is None


def test_parse_levels_extra_fields_ignored() -> None:
    levels, bad = parse_levels([{"price": "0.5", "size": "1", "orders": 3}])
    assert (levels, bad) == ({D("0.5"): D("1")}, 0)


# ---------------------------------------------------------------- Book


def test_book_empty() -> None:
    book = Book()
    book._check()
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.level_counts() == (0, 0)
    assert book.top(True, 5) == []
    assert book.top(False, 5) == []
    assert not book.is_crossed()
    assert isinstance(book.bids, SortedDict) and isinstance(book.asks, SortedDict)


def test_book_has_slots() -> None:
    book = Book()
    with pytest.raises(AttributeError):
        book.extra = 1  # type: ignore[attr-defined]


def test_book_replace_sets_both_sides() -> None:
    book = make_book({"0.40": "1", "0.45": "2", "0.1": "3"}, {"0.9": "4", "0.55": "5"})
    assert book.best_bid() == D("0.45")
    assert book.best_ask() == D("0.55")
    assert book.level_counts() == (3, 2)


def test_book_replace_discards_old_levels() -> None:
    book = make_book({"0.4": "1"}, {"0.6": "1"})
    book.replace({D("0.3"): D("2")}, {})
    book._check()
    assert dict(book.bids) == {D("0.3"): D("2")}
    assert dict(book.asks) == {}
    assert book.best_ask() is None


def test_book_replace_copies_input() -> None:
    bids = {D("0.4"): D("1")}
    book = Book()
    book.replace(bids, {})
    bids[D("0.3")] = D("5")
    book._check()
    assert book.level_counts() == (1, 0)


@pytest.mark.parametrize("size", ["0", "-1"])
def test_book_replace_rejects_non_positive_size_and_keeps_book(size: str) -> None:
    book = make_book({"0.4": "1"}, {"0.6": "1"})
    with pytest.raises(ValueError, match="not > 0"):
        book.replace({D("0.3"): D("2")}, {D("0.7"): D(size)})
    book._check()
    assert dict(book.bids) == {D("0.4"): D("1")}
    assert dict(book.asks) == {D("0.6"): D("1")}


def test_book_set_level_add_update_remove() -> None:
    book = Book()
    book.set_level(True, D("0.4"), D("10"))
    book._check()
    assert dict(book.bids) == {D("0.4"): D("10")}
    assert book.best_bid() == D("0.4")
    book.set_level(True, D("0.40"), D("3"))  # same price, other spelling: update
    book._check()
    assert dict(book.bids) == {D("0.4"): D("3")}
    assert book.level_counts() == (1, 0)
    book.set_level(True, D("0.5"), D("1"))
    book._check()
    assert book.best_bid() == D("0.5")
    book.set_level(True, D("0.500"), D("0"))
    book._check()
    assert book.best_bid() == D("0.4")
    assert book.level_counts() == (1, 0)
    assert dict(book.asks) == {}


def test_book_set_level_ask_side() -> None:
    book = Book()
    book.set_level(False, D("0.6"), D("1"))
    book.set_level(False, D("0.55"), D("2"))
    book._check()
    assert book.best_ask() == D("0.55")
    assert book.level_counts() == (0, 2)
    assert dict(book.bids) == {}
    book.set_level(False, D("0.55"), D("0"))
    book._check()
    assert book.best_ask() == D("0.6")


def test_book_set_level_remove_absent_is_noop() -> None:
    book = make_book({"0.4": "1"}, {"0.6": "1"})
    book.set_level(True, D("0.3"), D("0"))
    book.set_level(False, D("0.4"), D("0.00"))  # a bid price, but on the ask side
    book._check()
    assert dict(book.bids) == {D("0.4"): D("1")}
    assert dict(book.asks) == {D("0.6"): D("1")}


def test_book_set_level_negative_size_raises() -> None:
    book = make_book({"0.4": "1"}, {})
    with pytest.raises(ValueError, match="negative size"):
        book.set_level(True, D("0.4"), D("-1"))
    book._check()
    assert dict(book.bids) == {D("0.4"): D("1")}


def test_book_top_orders_bids_high_to_low_and_asks_low_to_high() -> None:
    book = make_book({"0.1": "1", "0.3": "3", "0.2": "2", "0.05": "5"}, {"0.9": "9", "0.6": "6", "0.7": "7"})
    assert book.top(True, 3) == [(D("0.3"), D("3")), (D("0.2"), D("2")), (D("0.1"), D("1"))]
    assert book.top(False, 2) == [(D("0.6"), D("6")), (D("0.7"), D("7"))]
    assert book.top(True, 10) == [(D("0.3"), D("3")), (D("0.2"), D("2")), (D("0.1"), D("1")), (D("0.05"), D("5"))]
    assert book.top(False, 3) == [(D("0.6"), D("6")), (D("0.7"), D("7")), (D("0.9"), D("9"))]
    assert book.top(True, 1) == [(D("0.3"), D("3"))]


def test_book_top_of_more_levels_than_any_index_gives_them_all() -> None:
    # `--top-n 99999999999999999999` is a valid flag value: beyond sys.maxsize islice would raise
    book = make_book({"0.1": "1", "0.2": "2"}, {"0.9": "9"})
    assert book.top(True, 10**20) == [(D("0.2"), D("2")), (D("0.1"), D("1"))]
    assert book.top(False, 10**20) == [(D("0.9"), D("9"))]


@pytest.mark.parametrize("n", [0, -1, -5])
def test_book_top_non_positive_n_is_empty(n: int) -> None:
    book = make_book({"0.1": "1", "0.2": "2"}, {"0.9": "9"})
    assert book.top(True, n) == []
    assert book.top(False, n) == []


def test_book_top_orders_numerically_not_textually() -> None:
    book = make_book({"9": "1", "10": "1", "0.95": "1"}, {"9": "1", "10": "1", "0.95": "1"})
    assert [p for p, _ in book.top(True, 3)] == [D("10"), D("9"), D("0.95")]
    assert [p for p, _ in book.top(False, 3)] == [D("0.95"), D("9"), D("10")]


def test_book_top_is_a_copy() -> None:
    book = make_book({"0.1": "1"}, {})
    top = book.top(True, 1)
    top.clear()
    book._check()
    assert book.top(True, 1) == [(D("0.1"), D("1"))]


@pytest.mark.parametrize(
    ("bid", "ask", "crossed"),
    [("0.4", "0.6", False), ("0.6", "0.6", True), ("0.60", "0.6", True), ("0.7", "0.6", True), ("0.59", "0.6", False)],
)
def test_book_is_crossed(bid: str, ask: str, crossed: bool) -> None:
    book = make_book({bid: "1", "0.01": "1"}, {ask: "1", "0.99": "1"})
    assert book.is_crossed() is crossed
    book._check()  # a crossed book is still a valid book


def test_book_is_crossed_needs_both_sides() -> None:
    assert not make_book({"0.9": "1"}, {}).is_crossed()
    assert not make_book({}, {"0.1": "1"}).is_crossed()


def test_book_repr_shows_levels() -> None:
    text = repr(make_book({"0.4": "1"}, {"0.6": "2"}))
    assert text.startswith("Book(")
    assert "0.4" in text and "0.6" in text


def _broken(mutate: str) -> Book:
    book = make_book({"0.4": "1", "0.3": "2"}, {"0.6": "1"})
    if mutate == "zero_size":
        dict.__setitem__(book.bids, D("0.4"), D("0"))
    elif mutate == "negative_size":
        dict.__setitem__(book.asks, D("0.6"), D("-1"))
    elif mutate == "float_size":
        dict.__setitem__(book.bids, D("0.4"), 1.0)
    elif mutate == "nan_size":
        dict.__setitem__(book.bids, D("0.4"), D("NaN"))
    elif mutate == "float_key":
        book.asks[0.7] = D("1")  # floats order against Decimals, so SortedDict takes it
    elif mutate == "infinite_key":
        book.asks[D("Infinity")] = D("1")
    elif mutate == "plain_dict":
        book.bids = {D("0.4"): D("1")}  # type: ignore[assignment]
    elif mutate == "keyed_sorteddict":
        book.bids = SortedDict(lambda k: -k, {D("0.4"): D("1")})
    elif mutate == "list_out_of_sync":
        book.bids._list.add(D("0.1"))
    return book


@pytest.mark.parametrize(
    "mutate",
    [
        "zero_size",
        "negative_size",
        "float_size",
        "nan_size",
        "float_key",
        "infinite_key",
        "plain_dict",
        "keyed_sorteddict",
        "list_out_of_sync",
    ],
)
def test_book_check_detects_broken_invariants(mutate: str, capsys: pytest.CaptureFixture[str]) -> None:
    book = _broken(mutate)
    with pytest.raises(AssertionError):
        book._check()
    assert "Book._check failed" in capsys.readouterr().out


def test_book_check_passes_on_valid_book() -> None:
    make_book({"0.4": "1", "0.30": "2"}, {"0.6": "1", "1E+1": "3"})._check()
