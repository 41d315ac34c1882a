"""Payload normalisation: a recorder row's payload -> items, item types, compact per-token events.

The compact events are those of SPEC section 4 (the reference analyzer's context entries); they
are kept as small tuples that point into the parsed payload and are turned into JSON objects only
when a divergence needs them (:func:`compact_event`). Both ``price_change`` forms are indexed
(the reference ignores the older one: a deliberate departure, SPEC section 4).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .books import parse_decimal

# Part tags: the first element of a compact part tuple.
PRICE_CHANGE = "price_change"
LEGACY_PRICE_CHANGE = "price_change_legacy"
BOOK = "book"
BEST_BID_ASK = "best_bid_ask"
LAST_TRADE_PRICE = "last_trade_price"
NEW_MARKET = "new_market"
OTHER = "other"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_UTC = dt.UTC
#: "YYYY-MM-DDTHH:MM:SS." (a prefix that parsed) -> µs since the epoch of that whole second
_prefix_seconds: dict[str, int] = {}


def _length(value: Any) -> int:
    """``len(value or [])`` where that is defined; 0 where it would fail (e.g. a number)."""
    if not value:
        return 0
    try:
        return len(value)
    except TypeError:
        return 0


class InexactNumber(ValueError):
    """A token id the fast JSON parser read as a float: maybe an integer beyond 64 bits, rounded."""


def _token_text(value: Any, exact: bool) -> str:
    """``str(value)`` of a token id that is not a string; a float raises unless ``exact``."""
    if type(value) is float and not exact:
        raise InexactNumber(value)
    return str(value)


def analysis_parts(payload: Any, exact: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Group a payload's compact events by token id (``str(asset_id)``), in payload order.

    Mirrors the reference's ``compact_token_events`` for every token at once: ``price_change``
    entries go to their own ``asset_id``; any other item goes to its top-level ``asset_id``;
    a ``new_market`` item also goes to each other token its ``assets_ids`` (or
    ``clob_token_ids``) names. Lists that are not lists (a number, a string) carry nothing.

    A token id given as a JSON number is ``str()`` of the number as parsed. orjson reads an
    integer beyond 64 bits as a float (losing digits), so unless ``exact`` (the payload came from
    the standard parser) a float token id raises :class:`InexactNumber`: the caller parses the
    line again with the standard parser (:func:`streamer.session.row_parts`).

    Cost: O(items + entries).
    """
    parts: dict[str, list[tuple[Any, ...]]] = {}
    if type(payload) is dict:
        items: Any = (payload,)
    elif type(payload) is list:
        items = payload
    else:
        return parts
    for item in items:
        if type(item) is not dict:
            continue
        event_type = item.get("event_type")
        if event_type:
            if type(event_type) is not str:
                event_type = str(event_type)
        elif "asset_id" in item and "bids" in item and "asks" in item:
            event_type = BOOK
        else:
            event_type = "unknown_object"
        if event_type == PRICE_CHANGE:
            changes = item.get("price_changes")
            if type(changes) is list:
                for change in changes:
                    if type(change) is dict:
                        token = change.get("asset_id")
                        token = token if type(token) is str else _token_text(token, exact)
                        bucket = parts.get(token)
                        if bucket is None:
                            parts[token] = [(PRICE_CHANGE, change)]
                        else:
                            bucket.append((PRICE_CHANGE, change))
            legacy = item.get("changes")
            if type(legacy) is list:
                token = _token_text(item.get("asset_id"), exact)
                item_hash = item.get("hash")
                bucket = parts.setdefault(token, [])
                for change in legacy:
                    if type(change) is dict:
                        bucket.append((LEGACY_PRICE_CHANGE, change, item_hash))
                if not bucket:
                    del parts[token]
            continue
        token = item.get("asset_id")
        token = token if type(token) is str else _token_text(token, exact)
        if event_type == BOOK:
            part: tuple[Any, ...] = (BOOK, _length(item.get("bids")), _length(item.get("asks")),
                                     item.get("hash"), item.get("timestamp"))
        elif event_type == BEST_BID_ASK:
            part = (BEST_BID_ASK, item)
        elif event_type == LAST_TRADE_PRICE:
            part = (LAST_TRADE_PRICE, item)
        else:
            part = (OTHER, event_type)
        bucket = parts.get(token)
        if bucket is None:
            parts[token] = [part]
        else:
            bucket.append(part)
        if event_type == NEW_MARKET:
            ids = item.get("assets_ids") or item.get("clob_token_ids")
            try:  # whatever the reference iterates (a list; an object's keys; a string's characters)
                named = dict.fromkeys(_token_text(value, exact) for value in ids) if ids else {}
            except TypeError:  # a number: nothing to iterate
                named = {}
            for other in named:
                if other != token:
                    parts.setdefault(other, []).append((NEW_MARKET, item.get("market"), item.get("timestamp")))
    return parts


def part_event_type(part: tuple[Any, ...]) -> str:
    """The ``event_type`` a compact part reports. Cost: O(1)."""
    tag = part[0]
    if tag == OTHER:
        return part[1]
    if tag == LEGACY_PRICE_CHANGE:
        return PRICE_CHANGE
    return tag


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def compact_event(part: tuple[Any, ...]) -> dict[str, Any]:
    """The JSON object of a compact part, exactly as the reference's context entries hold it.

    Cost: O(1).
    """
    tag = part[0]
    if tag == PRICE_CHANGE or tag == LEGACY_PRICE_CHANGE:
        change = part[1]
        return {
            "event_type": PRICE_CHANGE,
            "side": change.get("side"),
            "price": _text_or_none(change.get("price")),
            "size": _text_or_none(change.get("size")),
            "best_bid": change.get("best_bid"),
            "best_ask": change.get("best_ask"),
            "hash": change.get("hash") if tag == PRICE_CHANGE else part[2],
        }
    if tag == BOOK:
        return {"event_type": BOOK, "bid_level_count": part[1], "ask_level_count": part[2],
                "hash": part[3], "timestamp": part[4]}
    if tag == BEST_BID_ASK:
        item = part[1]
        return {"event_type": BEST_BID_ASK, "best_bid": item.get("best_bid"),
                "best_ask": item.get("best_ask"), "spread": item.get("spread"),
                "timestamp": item.get("timestamp")}
    if tag == LAST_TRADE_PRICE:
        item = part[1]
        return {"event_type": LAST_TRADE_PRICE, "side": item.get("side"), "price": item.get("price"),
                "size": item.get("size"), "timestamp": item.get("timestamp")}
    if tag == NEW_MARKET:
        return {"event_type": NEW_MARKET, "market": part[1], "timestamp": part[2]}
    return {"event_type": part[1]}


_price_keys: dict[str, Any] = {}


def price_key(value: Any) -> Any:
    """A price as evidence matching compares it: a Decimal when it reads as one, else its text.

    ``"0.50"`` and ``".5"`` match (SPEC section 4: match decimals, not strings); text that is
    not plain decimal syntax (see :func:`streamer.books.parse_decimal`) matches only itself.
    Cost: O(1); prices lie on a tick grid, so a small bounded cache answers most calls.
    """
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    key = _price_keys.get(text)
    if key is not None:
        return key
    number = parse_decimal(text)
    key = text if number is None else number
    if len(_price_keys) >= 65536:
        _price_keys.clear()
    _price_keys[text] = key
    return key


def part_price_key(part: tuple[Any, ...]) -> Any:
    """The evidence price key of a price_change part, or None for other parts.

    Cost: O(1) (cached, see :func:`price_key`). Raises nothing.
    """
    tag = part[0]
    if tag == PRICE_CHANGE or tag == LEGACY_PRICE_CHANGE:
        price = part[1].get("price")
        return None if price is None else price_key(price)
    return None


def parse_time_us(value: Any) -> int | None:
    """Microseconds since the epoch of an ISO-8601 receive time, or None when it does not parse.

    Exactly the reference's ``parse_iso`` (a trailing ``Z`` is UTC, a naive time is UTC), with a
    fast path for the recorder's own form ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. Callers pass strings
    (or None); falsy values give None.

    Cost: O(1).
    """
    if not value:
        return None
    if len(value) == 27 and value[26] == "Z":
        fraction = value[20:26]
        if fraction.isdigit() and fraction.isascii():
            # The recorder's form. The cache holds only prefixes "YYYY-MM-DDTHH:MM:SS." that
            # parsed, so a hit needs no other check.
            prefix = value[:20]
            seconds_us = _prefix_seconds.get(prefix)
            if seconds_us is None and (value[19] == "." and value[10] == "T" and value[4] == "-"
                                       and value[7] == "-" and value[13] == ":" and value[16] == ":"):
                seconds_us = _slow_parse_us(value[:19] + "Z")
                if seconds_us is not None:
                    if len(_prefix_seconds) > 8192:
                        _prefix_seconds.clear()
                    _prefix_seconds[prefix] = seconds_us
            if seconds_us is not None:
                return seconds_us + int(fraction)
    return _slow_parse_us(value)


def _slow_parse_us(value: str) -> int | None:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return (parsed - _EPOCH) // _ONE_US
