"""Compare one REST book summary with the local book: best quotes, spread, level counts, top-N diffs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from streamer.books import Book, canonical, exact_subtract

__all__ = ("compare_books",)


def _top_diff(
    rest_top: list[tuple[Decimal, Decimal]],
    local_top: list[tuple[Decimal, Decimal]],
) -> tuple[dict[str, list[Any]], bool]:
    """Diff two top-N lists of ``(price, size)``, each best first.

    Cost: O(top_n).

    :return: ``({"missing_prices", "extra_prices", "size_deltas"}, all three empty)``.
    """
    local_sizes = dict(local_top)
    rest_prices = {price for price, _ in rest_top}
    missing: list[str | None] = []
    deltas: list[dict[str, str | None]] = []
    for price, rest_size in rest_top:
        local_size = local_sizes.get(price)
        if local_size is None:
            missing.append(canonical(price))
        elif local_size != rest_size:
            deltas.append(
                {
                    "price": canonical(price),
                    "rest_size": canonical(rest_size),
                    "local_size": canonical(local_size),
                }
            )
    extra = [canonical(price) for price, _ in local_top if price not in rest_prices]
    diff: dict[str, list[Any]] = {
        "missing_prices": missing,
        "extra_prices": extra,
        "size_deltas": deltas,
    }
    return diff, not (missing or extra or deltas)


#: The book a token without one compares as (never mutated).
_EMPTY_BOOK = Book()


def _no_diff() -> dict[str, list[Any]]:
    """An empty top-N diff (a new dict each time: rows are independent objects). Cost: O(1)."""
    return {"missing_prices": [], "extra_prices": [], "size_deltas": []}


def _compare_side(rest: dict[Decimal, Decimal], local: Book, is_bid: bool, local_best: Decimal | None,
                  top_n: int) -> tuple[Decimal | None, dict[str, list[Any]], bool]:
    """One side: ``(REST best price, top-N diff, diff empty)``. Cost: O(n) equal, else O(n log n)."""
    # The usual matching row: a REST side equal to the local side as a dict (same prices, same
    # sizes, as decimals) has the same best price, count and top N; nothing to select or diff.
    if rest == (local.bids if is_bid else local.asks):
        return local_best, _no_diff(), True
    best = (max(rest) if is_bid else min(rest)) if rest else None
    if top_n <= 0:
        return best, _no_diff(), True
    # (sorted is C and linear on the venue's already ordered levels; heapq costs 9x more here)
    top = [(price, rest[price]) for price in sorted(rest, reverse=is_bid)[:top_n]]
    diff, same = _top_diff(top, local.top(is_bid, top_n))
    return best, diff, same


def _spread(bid: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """Return ``ask - bid`` exactly when both exist, else None. Cost: O(1)."""
    if bid is None or ask is None:
        return None
    return exact_subtract(ask, bid)


def compare_books(
    rest_bids: dict[Decimal, Decimal],
    rest_asks: dict[Decimal, Decimal],
    local: Book | None,
    top_n: int,
) -> tuple[dict[str, Any], bool]:
    """Compare one REST book summary with the local book (SPEC §2.5, §3).

    Best bid is the highest bid price and best ask the lowest ask price, None for
    an empty side; spread is ``ask - bid`` (exact) when both exist, else None. Each
    ``*_match`` compares REST with local as decimals, None equal to None.
    ``level_count_match`` is True when both the bid and the ask level counts agree.
    ``rest_best_bid`` etc. are canonical strings (:func:`~streamer.books.canonical`)
    or None.

    Top N per side are the ``top_n`` best prices, bids high to low, asks low to
    high. In each ``*_top_n_diff``: ``missing_prices`` are prices in the REST top N
    but not in the local top N (REST order); ``extra_prices`` are prices in the local
    top N but not in the REST top N (local order); ``size_deltas`` are
    ``{"price", "rest_size", "local_size"}`` for prices in both top Ns whose sizes
    differ (REST order). Every value is a canonical string. Prices and sizes are
    compared as decimals, so "0.5" and "0.50" are the same. ``top_n`` <= 0 compares
    no levels (all six lists empty).

    The returned dict has exactly these keys, in this order: ``best_bid_match``,
    ``best_ask_match``, ``spread_match``, ``level_count_match``, ``rest_best_bid``,
    ``local_best_bid``, ``rest_best_ask``, ``local_best_ask``, ``bid_top_n_diff``,
    ``ask_top_n_diff``. It never says whether the token had a book: telling
    ``no_local_book`` from ``match``/``divergent`` is the caller's job.

    Cost: O(n) for n REST levels on a side when it equals the local side (one dict comparison,
    then nothing is sorted or diffed); otherwise O(n log n) for the REST side (``sorted``, O(n) when
    the levels come sorted, as the venue sends them) and O(top_n) for the local side
    (:meth:`Book.top`, no sort).

    :param rest_bids: REST bid levels, price -> size (from ``parse_levels``; unsorted).
    :param rest_asks: REST ask levels, price -> size.
    :param local: the token's local book; None compares as an empty book.
    :param top_n: how many best levels per side to diff.
    :return: ``(fields, all_match)``: ``all_match`` is True when the four
        ``*_match`` are True and the six diff lists are empty (the row's status is
        then ``match``).
    :raises: nothing for values from ``parse_levels`` and a valid :class:`Book`.
    """
    if local is None:
        local = _EMPTY_BOOK
    local_bid = local.best_bid()
    local_ask = local.best_ask()
    rest_bid, bid_diff, bid_same = _compare_side(rest_bids, local, True, local_bid, top_n)
    rest_ask, ask_diff, ask_same = _compare_side(rest_asks, local, False, local_ask, top_n)

    bid_match = rest_bid == local_bid
    ask_match = rest_ask == local_ask
    if bid_match and ask_match:
        spread_match = True
    else:
        spread_match = _spread(rest_bid, rest_ask) == _spread(local_bid, local_ask)
    local_bid_count, local_ask_count = local.level_counts()
    count_match = len(rest_bids) == local_bid_count and len(rest_asks) == local_ask_count

    fields: dict[str, Any] = {
        "best_bid_match": bid_match,
        "best_ask_match": ask_match,
        "spread_match": spread_match,
        "level_count_match": count_match,
        "rest_best_bid": canonical(rest_bid),
        "local_best_bid": canonical(local_bid),
        "rest_best_ask": canonical(rest_ask),
        "local_best_ask": canonical(local_ask),
        "bid_top_n_diff": bid_diff,
        "ask_top_n_diff": ask_diff,
    }
    all_match = bid_match and ask_match and spread_match and count_match and bid_same and ask_same
    return fields, all_match
