"""Per-token order books: decimal parsing, canonical printing, and a sorted book per token."""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from itertools import islice

from sortedcontainers import SortedDict

__all__ = (
    "DECIMAL_EXPONENT_LIMIT",
    "Book",
    "cached_decimal",
    "cached_size",
    "canonical",
    "decimal_cache",
    "exact_subtract",
    "parse_decimal",
    "parse_levels",
    "size_cache",
)

#: A parsed decimal's adjusted exponent (``Decimal.adjusted()``) must lie within
#: ``[-DECIMAL_EXPONENT_LIMIT, DECIMAL_EXPONENT_LIMIT]``. Real prices and sizes are
#: nowhere near it; the bound keeps a corrupt value such as ``"1E+999999999"`` from
#: turning into a gigabyte of digits when printed, or into an overflow when subtracted.
DECIMAL_EXPONENT_LIMIT = 1000

# A context that never rounds, overflows or underflows for the values parse_decimal
# accepts: the default context rounds to 28 digits, so ``normalize()`` and subtraction
# under it would silently change a long decimal.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def parse_decimal(value: object) -> Decimal | None:
    """Read a price or size as a finite :class:`~decimal.Decimal`.

    A ``str`` must be plain decimal syntax ("0.50", ".5", "100", "1E+2", "-0.1"):
    surrounding whitespace, ``_`` digit separators and non-ASCII digits, which
    :class:`~decimal.Decimal` would accept, are rejected. A JSON number (``int`` or ``float``) is read through
    its text, ``str(value)``, so ``0.1`` gives ``Decimal("0.1")``. ``bool`` is not a
    number. Anything else (None, "", "abc", "NaN", "Infinity", a list, a dict), and
    any decimal whose adjusted exponent lies outside
    ``±DECIMAL_EXPONENT_LIMIT``, gives None.

    Cost: O(d) for a value of d characters; caches nothing.

    :param value: a decoded JSON value.
    :return: the decimal, or None when ``value`` is not a usable finite decimal.
    :raises: nothing; every bad value gives None.
    """
    # Exact str first: it is the hot case (every level of every book).
    if type(value) is str or isinstance(value, str):
        # Plain decimal syntax only: Decimal would also take whitespace, "_" and non-ASCII digits.
        if not value.isascii() or "_" in value or value != value.strip():
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # (str(True) is "True", which Decimal rejects anyway; the bool test says it.)
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):  # ValueError: an int past the str digit limit
            return None
    else:
        return None
    if number.is_finite() and -DECIMAL_EXPONENT_LIMIT <= number.adjusted() <= DECIMAL_EXPONENT_LIMIT:
        return number
    return None


def canonical(value: Decimal | None) -> str | None:
    """Print a decimal canonically: normalized, fixed point.

    ``format(value.normalize(), "f")`` computed exactly (never rounded to the default
    context's 28 digits): "0.50" -> "0.5", "1E+2" -> "100", "0.0050" -> "0.005",
    "0.0" -> "0". Negative zero prints as "-0", as the formula gives it.

    Cost: O(1) for a value printed recently (bounded cache, by decimal value); O(d) for a result
    of d characters.

    :param value: a finite decimal (from :func:`parse_decimal`), or None.
    :return: the canonical text, or None for None.
    :raises decimal.InvalidOperation: when ``value`` is NaN (never from parse_decimal).
    """
    if value is None:
        return None
    text = _canonical_cache.get(value)
    if text is None:
        text = format(value.normalize(_EXACT), "f")
        # Equal decimals print alike, but for the sign of zero: zeros are not cached. Nor are long
        # texts (a corrupt "1E+999" prints 1000 digits): the cache stays a few hundred KB.
        if value and len(text) <= 40:
            if len(_canonical_cache) >= CACHE_LIMIT:
                _canonical_cache.clear()
            _canonical_cache[value] = text
    return text


def exact_subtract(left: Decimal, right: Decimal) -> Decimal:
    """Return ``left - right`` exactly, never rounded to the default context's 28 digits.

    Cost: O(d) for operands of d digits (bounded by the exponent limit for values
    from :func:`parse_decimal`).

    :raises decimal.InvalidOperation: when an operand is NaN.
    """
    return _EXACT.subtract(left, right)


#: text -> Decimal (or None when not a finite decimal), for prices and sizes alike.
decimal_cache: dict[str, Decimal | None] = {}
#: text -> Decimal when a valid size (finite, >= 0), else None.
size_cache: dict[str, Decimal | None] = {}
#: text -> Decimal for sizes > 0 only: a whole side reads through it in one comprehension.
positive_cache: dict[str, Decimal] = {}
#: Entries per cache before it is cleared (prices and sizes repeat a lot: consecutive
#: snapshots of a book share most levels).
CACHE_LIMIT = 1 << 14
#: Decimal -> its canonical text (nonzero values only).
_canonical_cache: dict[Decimal, str] = {}


def cached_decimal(value: object) -> Decimal | None:
    """:func:`parse_decimal`, remembering the answer for strings (bounded cache).

    Cost: O(1) on a hit; O(d) on a miss. Memory O(:data:`CACHE_LIMIT`).
    """
    if type(value) is not str:
        return parse_decimal(value)
    number = decimal_cache.get(value, False)
    if number is False:
        number = parse_decimal(value)
        if len(decimal_cache) >= CACHE_LIMIT:
            decimal_cache.clear()
        decimal_cache[value] = number
    return number  # type: ignore[return-value]


def cached_size(value: object) -> Decimal | None:
    """A size: :func:`cached_decimal` when it is >= 0, else None (cached likewise).

    Cost: O(1) on a hit; O(d) on a miss. Raises nothing: a bad or negative size gives None.
    """
    if type(value) is not str:
        number = parse_decimal(value)
        return number if number is not None and number >= 0 else None
    number = size_cache.get(value, False)
    if number is False:
        number = cached_decimal(value)
        if number is not None and number < 0:
            number = None
        if len(size_cache) >= CACHE_LIMIT:
            size_cache.clear()
            positive_cache.clear()
        size_cache[value] = number
        if number:
            positive_cache[value] = number
    return number  # type: ignore[return-value]


def parse_levels(levels: object) -> tuple[dict[Decimal, Decimal], int]:
    """Turn a ``bids``/``asks`` list of ``{"price", "size"}`` objects into ``{price: size}``.

    A level is *bad* (skipped and counted) when it is not an object, lacks ``price``
    or ``size``, has a price or size that :func:`parse_decimal` rejects, or has a
    negative size. When a price repeats, the last good level wins, and a last level
    of size 0 means the price is not a level (size 0 is never bad); prices are
    equal as decimals, so
    "0.5" and "0.50" are one price (the key kept is the first spelling seen; the
    size is the last one). The input's order is irrelevant.

    ``levels`` None (the field is missing) gives ``({}, 0)``; any other non-list
    (an object, a string, a number) gives ``({}, 1)``: the whole side is one bad level.

    Cost: O(m) for m input levels.

    :param levels: the decoded ``bids`` or ``asks`` value.
    :return: ``(levels by price, number of bad levels)``; sizes are all > 0.
    :raises: nothing.
    """
    if levels is None:
        return {}, 0
    if not isinstance(levels, list):
        return {}, 1
    try:  # the usual side: every level an object with a known price and a known size > 0
        prices = decimal_cache
        positive = positive_cache
        fast = {prices[level["price"]]: positive[level["size"]] for level in levels}
    except (KeyError, TypeError, IndexError):
        pass
    else:
        if None not in fast:
            return fast, 0
    prices = decimal_cache
    sizes = size_cache
    out: dict[Decimal, Decimal] = {}
    bad = 0
    for level in levels:
        try:
            price = prices[level["price"]]
            size = sizes[level["size"]]
        except (KeyError, TypeError, IndexError):
            if not isinstance(level, dict):
                bad += 1
                continue
            price = cached_decimal(level.get("price"))
            size = cached_size(level.get("size"))
        if price is None or size is None:
            bad += 1
        elif size:
            out[price] = size
        else:  # size 0: the price is not a level, whatever came before it in the list
            out.pop(price, None)
    return out, bad


class Book:
    """One token's order book: price levels on the bid and the ask side.

    ``bids`` and ``asks`` are :class:`~sortedcontainers.SortedDict` objects mapping a
    Decimal price to a Decimal size, both ascending by price: the best bid is the
    *last* bid key, the best ask the *first* ask key. Every stored size is > 0; a
    price appears once per side (decimal equality: "0.5" is "0.50"). A crossed book
    (best bid >= best ask) is allowed: it is the feed's fault to report, see
    :meth:`is_crossed`.

    Callers promise that prices and sizes are finite Decimals (as
    :func:`parse_decimal` returns them); this is not checked on the hot path.

    Methods:

    * mutating: :meth:`replace`, :meth:`set_level`
    * looking up: :meth:`best_bid`, :meth:`best_ask`, :meth:`top`,
      :meth:`level_counts`, :meth:`is_crossed`
    * miscellaneous: :meth:`_check` (invariants, for tests), ``repr``
    """

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        """Make an empty book.

        Cost: O(1).
        """
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()

    def replace(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
        """Replace both sides wholesale (a ``book`` snapshot).

        The dicts are copied, never aliased. They normally come from
        :func:`parse_levels`, which never yields a size <= 0.

        Cost: O(n log n) for n levels on a side.

        :param bids: bid levels, price -> size.
        :param asks: ask levels, price -> size.
        :raises ValueError: when a size is <= 0; the book is then left unchanged.
        """
        for side in (bids, asks):
            for price, size in side.items():
                if not size > 0:
                    raise ValueError(f"size {size!r} at price {price!r} is not > 0")
        self.bids = SortedDict(bids)
        self.asks = SortedDict(asks)

    def set_level(self, is_bid: bool, price: Decimal, size: Decimal) -> None:
        """Set the level at ``price`` on one side to ``size`` (a new total, not a delta).

        Size 0 removes the level (a no-op when it is absent); size > 0 adds or
        updates it. An existing level keeps its key object, so its spelling
        ("0.5" or "0.50") may be the older one; they are equal.

        Cost: O(log n) for n levels on the side (amortised, as SortedDict).

        :param is_bid: True for the bid side (``BUY``), False for the ask side (``SELL``).
        :param price: the level's price.
        :param size: the level's new size, >= 0.
        :raises ValueError: when ``size`` is negative (callers filter them out).
        :raises decimal.InvalidOperation: when ``size`` is NaN.
        """
        side = self.bids if is_bid else self.asks
        if size > 0:
            side[price] = size
        elif size == 0:
            side.pop(price, None)
        else:
            raise ValueError(f"negative size {size!r} at price {price!r}")

    def best_bid(self) -> Decimal | None:
        """Return the highest bid price, or None when there are no bids.

        Cost: O(1).
        """
        bids = self.bids
        return bids._list[-1] if bids else None  # the SortedDict's sorted keys: O(1) at either end

    def best_ask(self) -> Decimal | None:
        """Return the lowest ask price, or None when there are no asks.

        Cost: O(1).
        """
        asks = self.asks
        return asks._list[0] if asks else None

    def top(self, is_bid: bool, n: int) -> list[tuple[Decimal, Decimal]]:
        """Return the ``n`` best levels of one side as ``(price, size)`` pairs.

        Bids come high to low, asks low to high, best first. Fewer than ``n``
        levels give them all; ``n`` <= 0 gives an empty list.

        Cost: O(n) (reverse or forward iteration of the SortedDict; never sorts).

        :param is_bid: True for the bid side, False for the ask side.
        :param n: how many levels at most.
        :return: a new list of ``(price, size)`` pairs.
        """
        if n <= 0:
            return []
        side = self.bids if is_bid else self.asks
        prices = reversed(side) if is_bid else iter(side)
        return [(price, side[price]) for price in islice(prices, min(n, len(side)))]  # (islice refuses n > maxsize)

    def level_counts(self) -> tuple[int, int]:
        """Return ``(number of bid levels, number of ask levels)``.

        Cost: O(1).
        """
        return len(self.bids), len(self.asks)

    def is_crossed(self) -> bool:
        """Return True when both sides are non-empty and best bid >= best ask.

        A crossed (or locked) book is a feed fault to report, not a broken invariant.

        Cost: O(1).
        """
        bids = self.bids
        asks = self.asks
        # the highest bid and lowest ask straight from the SortedLists of keys: O(1), no calls
        return bool(bids) and bool(asks) and bids._list._maxes[-1] >= asks._list._lists[0][0]

    def __repr__(self) -> str:
        """Return the book's levels, for debugging and :meth:`_check` failures.

        Cost: O(n).
        """
        return f"Book(bids={list(self.bids.items())!r}, asks={list(self.asks.items())!r})"

    def _check(self) -> None:
        """Check the book's invariants; for tests, never called in production.

        On failure, print the book's state and re-raise the AssertionError.

        Cost: O(n).

        :raises AssertionError: when an invariant does not hold.
        """
        try:
            for side in (self.bids, self.asks):
                # Each side is a SortedDict in natural (ascending) key order, and its
                # own invariants (sorted list and dict agree, sublists sorted) hold.
                assert type(side) is SortedDict
                assert side._key is None
                side._check()

                # Every key and every value is a Decimal (never a float or a str).
                assert all(type(price) is Decimal for price in side)
                assert all(type(size) is Decimal for size in side.values())

                # Every price is finite (no NaN or infinity as a key).
                assert all(price.is_finite() for price in side)

                # Every size is finite and > 0: a zero size is a removed level, a
                # negative one a rejected input.
                assert all(size.is_finite() and size > 0 for size in side.values())

                # Keys are strictly ascending, so each price appears once and the
                # best bid is the last key, the best ask the first.
                keys = list(side)
                assert all(low < high for low, high in zip(keys, keys[1:]))
        except BaseException:
            # Print the raw state without trusting it (the sorted key list and the
            # dict may disagree), as sortedcontainers' _check does.
            print("Book._check failed")
            for name, side in (("bids", self.bids), ("asks", self.asks)):
                print(f"{name} type:", type(side).__name__)
                if isinstance(side, dict):
                    print(f"{name} items:", list(dict.items(side)))
                print(f"{name} sorted keys:", list(getattr(side, "_list", [])))
            raise
