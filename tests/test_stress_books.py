"""Model-based stress tests for streamer.books.Book against a naive dict model.

Run longer by hand: ``python -m tests.test_stress_books [iterations] [seed]``.
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from streamer.books import Book, canonical, parse_levels
from tests import actors

D = Decimal

# ---------------------------------------------------------------- the model


class Model:
    """The naive book: two plain dicts, sorted on demand."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def side(self, is_bid: bool) -> dict[Decimal, Decimal]:
        return self.bids if is_bid else self.asks

    def replace(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
        self.bids = dict(bids)
        self.asks = dict(asks)

    def set_level(self, is_bid: bool, price: Decimal, size: Decimal) -> None:
        side = self.side(is_bid)
        if size == 0:
            side.pop(price, None)
        else:
            side[price] = size

    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None

    def top(self, is_bid: bool, n: int) -> list[tuple[Decimal, Decimal]]:
        side = self.side(is_bid)
        prices = sorted(side, reverse=is_bid)
        return [(p, side[p]) for p in prices[: max(n, 0)]]

    def is_crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)


def model_parse_levels(raw: list[object]) -> tuple[dict[Decimal, Decimal], int]:
    """parse_levels, written the slow and obvious way."""
    out: dict[Decimal, Decimal] = {}
    bad = 0
    for level in raw:
        try:
            assert isinstance(level, dict)
            price_text, size_text = level["price"], level["size"]
            assert isinstance(price_text, str) and isinstance(size_text, str)
            price, size = D(price_text), D(size_text)
            assert price.is_finite() and size.is_finite() and size >= 0
        except Exception:
            bad += 1
            continue
        if size != 0:
            out[price] = size
        else:
            out.pop(price, None)
    return out, bad


# ---------------------------------------------------------------- random values

PRICE_TICKS = 40  # a small grid, so prices collide and levels are updated and removed


def spell(value: Decimal, rng: random.Random) -> str:
    """Write a decimal in one of several equal spellings ("0.5", "0.50", ".5", "5E-1")."""
    text = canonical(value)
    assert text is not None
    choice = rng.randrange(4)
    if choice == 1:
        return text + ("0" if "." in text else ".0")
    if choice == 2 and text.startswith("0."):
        return text[1:]
    if choice == 3:
        return f"{value:E}"
    return text


def random_price(rng: random.Random) -> Decimal:
    return D(spell(D(rng.randrange(1, PRICE_TICKS)) / 100, rng))


def random_size(rng: random.Random) -> Decimal:
    return D(spell(D(rng.randrange(1, 100_000)) / 100, rng))


def random_raw_levels(rng: random.Random) -> list[object]:
    """A raw ``bids``/``asks`` list: mostly good levels, some zero, duplicate or bad ones."""
    raw: list[object] = []
    for _ in range(rng.randrange(0, 30)):
        kind = rng.random()
        price = spell(random_price(rng), rng)
        if kind < 0.8:
            raw.append({"price": price, "size": spell(random_size(rng), rng)})
        elif kind < 0.88:
            raw.append({"price": price, "size": rng.choice(["0", "0.00", "0E-3"])})
        else:
            raw.append(
                rng.choice(
                    [None, "0.5", {"price": price}, {"size": "1"}, {"price": "x", "size": "1"}, {"price": price, "size": "-3"}]
                )
            )
    return raw


# ---------------------------------------------------------------- actors

ACTORS, actor = actors.registry()


@actor(1)
def stress_replace(book: Book, model: Model, rng: random.Random) -> None:
    raw_bids, raw_asks = random_raw_levels(rng), random_raw_levels(rng)
    bids, bad_bids = parse_levels(raw_bids)
    asks, bad_asks = parse_levels(raw_asks)
    assert (bids, bad_bids) == model_parse_levels(raw_bids)
    assert (asks, bad_asks) == model_parse_levels(raw_asks)
    book.replace(bids, asks)
    model.replace(bids, asks)


@actor(1)
def stress_replace_empty_side(book: Book, model: Model, rng: random.Random) -> None:
    levels, _ = parse_levels(random_raw_levels(rng))
    if rng.random() < 0.5:
        book.replace(levels, {})
        model.replace(levels, {})
    else:
        book.replace({}, levels)
        model.replace({}, levels)


@actor(6)
def stress_set_level_add(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    price = random_price(rng)
    size = random_size(rng)
    book.set_level(is_bid, price, size)
    model.set_level(is_bid, price, size)


@actor(6)
def stress_set_level_update(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    side = model.side(is_bid)
    if not side:
        return stress_set_level_add(book, model, rng)
    price = D(spell(rng.choice(sorted(side)), rng))  # the same price, maybe spelled otherwise
    size = random_size(rng)
    book.set_level(is_bid, price, size)
    model.set_level(is_bid, price, size)
    return None


@actor(5)
def stress_set_level_remove(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    side = model.side(is_bid)
    if not side:
        return None
    price = D(spell(rng.choice(sorted(side)), rng))
    zero = D(rng.choice(["0", "0.0", "0E-5"]))
    book.set_level(is_bid, price, zero)
    model.set_level(is_bid, price, zero)
    assert price not in (book.bids if is_bid else book.asks)
    return None


@actor(2)
def stress_set_level_remove_absent(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    price = D(rng.randrange(PRICE_TICKS, 2 * PRICE_TICKS)) / 100  # off the grid: never present
    before = book.level_counts()
    book.set_level(is_bid, price, D(0))
    model.set_level(is_bid, price, D(0))
    assert book.level_counts() == before


@actor(1)
def stress_set_level_negative(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    with pytest.raises(ValueError):
        book.set_level(is_bid, random_price(rng), -random_size(rng))


@actor(2)
def stress_best(book: Book, model: Model, rng: random.Random) -> None:
    assert book.best_bid() == model.best_bid()
    assert book.best_ask() == model.best_ask()


@actor(3)
def stress_top(book: Book, model: Model, rng: random.Random) -> None:
    is_bid = rng.random() < 0.5
    n = rng.randrange(-1, 2 * PRICE_TICKS)
    assert book.top(is_bid, n) == model.top(is_bid, n)


@actor(1)
def stress_level_counts(book: Book, model: Model, rng: random.Random) -> None:
    assert book.level_counts() == (len(model.bids), len(model.asks))


@actor(1)
def stress_is_crossed(book: Book, model: Model, rng: random.Random) -> None:
    assert book.is_crossed() == model.is_crossed()


def assert_same(book: Book, model: Model) -> None:
    """The whole state agrees (decimal equality), and the book's invariants hold."""
    book._check()
    assert dict(book.bids.items()) == model.bids
    assert dict(book.asks.items()) == model.asks


def stress(iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    book, model = Book(), Model()
    for _ in range(iterations):
        operation = rng.choice(ACTORS)
        operation(book, model, rng)
        assert_same(book, model)


def test_stress() -> None:
    stress(3000, 0)


def test_stress_actors_registered_with_weights() -> None:
    assert ACTORS.count(stress_set_level_add) == 6
    assert ACTORS.count(stress_replace) == 1
    assert len(set(ACTORS)) == 11


# ---------------------------------------------------------------- hypothesis state machine

prices = st.integers(min_value=1, max_value=30).map(lambda tick: D(tick) / 100)
sizes = st.integers(min_value=1, max_value=10_000).map(lambda cents: D(cents) / 100)
level_dicts = st.dictionaries(prices, sizes, max_size=12)


class BookMachine(RuleBasedStateMachine):
    """The same model comparison, with hypothesis choosing and shrinking the operations."""

    def __init__(self) -> None:
        super().__init__()
        self.book = Book()
        self.model = Model()

    @initialize(bids=level_dicts, asks=level_dicts)
    def start(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
        self.book.replace(bids, asks)
        self.model.replace(bids, asks)

    @rule(bids=level_dicts, asks=level_dicts)
    def replace(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
        self.book.replace(bids, asks)
        self.model.replace(bids, asks)

    @rule(is_bid=st.booleans(), price=prices, size=sizes)
    def set_level(self, is_bid: bool, price: Decimal, size: Decimal) -> None:
        self.book.set_level(is_bid, price, size)
        self.model.set_level(is_bid, price, size)

    @rule(is_bid=st.booleans(), price=prices)
    def remove_level(self, is_bid: bool, price: Decimal) -> None:
        self.book.set_level(is_bid, price, D(0))
        self.model.set_level(is_bid, price, D(0))

    @precondition(lambda self: bool(self.model.bids))
    @rule(data=st.data())
    def remove_existing_bid(self, data: st.DataObject) -> None:
        price = data.draw(st.sampled_from(sorted(self.model.bids)))
        self.book.set_level(True, price, D("0.00"))
        self.model.set_level(True, price, D(0))

    @rule(is_bid=st.booleans(), n=st.integers(min_value=-1, max_value=40))
    def top(self, is_bid: bool, n: int) -> None:
        assert self.book.top(is_bid, n) == self.model.top(is_bid, n)

    @invariant()
    def agrees_with_model(self) -> None:
        assert_same(self.book, self.model)
        assert self.book.best_bid() == self.model.best_bid()
        assert self.book.best_ask() == self.model.best_ask()
        assert self.book.level_counts() == (len(self.model.bids), len(self.model.asks))
        assert self.book.is_crossed() == self.model.is_crossed()


BookMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestBookMachine = BookMachine.TestCase


def main(argv: list[str]) -> None:
    iterations = int(argv[1]) if len(argv) > 1 else 100_000
    seed = int(argv[2]) if len(argv) > 2 else 0
    stress(iterations, seed)
    print(f"ok: {iterations} operations, seed {seed}")


if __name__ == "__main__":
    main(sys.argv)
