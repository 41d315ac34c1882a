"""Reconstruction: apply websocket rows to per-token books; compare them at REST checkpoints.

SPEC section 3 and the README's decisions: rows apply in stream order (``book`` replaces,
``price_change`` of both forms sets levels), and a checkpoint yields one comparison row (SPEC
section 2.5) per book summary. What the feed does wrong is reported, never repaired
(:class:`Anomalies`): duplicates, stale entries, crossed books, entries for tokens without a book,
REST books for tokens the websocket never named, rejected REST rows, rows without a receive time,
malformed books, unknown event types.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from .books import Book, cached_decimal, cached_size, decimal_cache, parse_levels, size_cache
from .compare import compare_books
from .decoders import dumps
from .payloads import parse_time_us

#: Event types of the market channel that do not change a book (POLYMARKET.md section 2.1).
PASSIVE_EVENT_TYPES = frozenset({"last_trade_price", "best_bid_ask", "tick_size_change", "new_market",
                                 "market_resolved"})
DUPLICATE_WINDOW_US = 2_000_000
#: How far a receive clock may step back with repeats still found: a payload is remembered until
#: the newest receive time is this much past its window (the analysis join's allowance too).
DUPLICATE_STEP_BACK_US = 5_000_000
#: SortedDict keeps its keys sorted beside the dict; re-sizing a known level touches only the dict.
_set_size = dict.__setitem__
#: Locations listed per anomaly; counts are always complete.
ANOMALY_LOCATIONS = 20

def _millis(value: Any) -> int | None:
    """A ``timestamp`` (ms, string or number) as an int, or None."""
    if type(value) is int:
        return value
    if type(value) is str and value.isdigit() and value.isascii():
        return int(value)
    return None


def rest_time_us(rest_row: dict[str, Any]) -> int | None:
    """A REST checkpoint row's receive time (µs), or None when it has none usable.

    Cost: O(1). Raises nothing (an unparseable time gives None).
    """
    value = rest_row.get("received_at_utc")
    return parse_time_us(value) if value and type(value) is str else None


def rest_rejection(row: dict[str, Any]) -> str | None:
    """Why a REST row yields no comparison rows (its anomaly name), or None when it is accepted.

    Rejected: an ``http_status`` present and not 2xx or a ``json`` that is not a list
    (``rejected_rest_row``); a row without a usable receive time, which cannot be placed in the
    stream (``rest_row_without_receive_time``). Cost: O(1). Raises nothing.
    """
    status = row.get("http_status")
    if (status is not None and not (type(status) is int and 200 <= status < 300)) or type(row.get("json")) is not list:
        return "rejected_rest_row"
    if rest_time_us(row) is None:
        return "rest_row_without_receive_time"
    return None


def accepted_summaries(row: dict[str, Any]) -> list[Any] | None:
    """A REST row's ``json`` list, or None when the row is rejected (:func:`rest_rejection`).

    Cost: O(1). Raises nothing.
    """
    return row["json"] if rest_rejection(row) is None else None


def book_sides(item: dict[str, Any]) -> tuple[list[Any], list[Any]] | None:
    """A book's (or book summary's) raw bid and ask levels: ``bids``/``asks``, else ``buys``/``sells``;
    None when a side is missing or not a list (the book is malformed: skipped and counted).

    Cost: O(1). Raises nothing.
    """
    bids = item["bids"] if "bids" in item else item.get("buys")
    asks = item["asks"] if "asks" in item else item.get("sells")
    if type(bids) is not list or type(asks) is not list:
        return None
    return bids, asks


def is_book_summary(summary: Any) -> bool:
    """Whether an element of an accepted REST row yields a comparison row: an object with an
    ``asset_id`` and both sides as lists. Cost: O(1). Raises nothing."""
    return type(summary) is dict and summary.get("asset_id") is not None and book_sides(summary) is not None


def comparison_row_count(row: dict[str, Any]) -> int:
    """How many comparison rows :meth:`Reconstructor.compare` makes of ``row`` (known up front).

    Cost: O(summaries in the row). Raises nothing.
    """
    summaries = accepted_summaries(row)
    return 0 if summaries is None else sum(1 for summary in summaries if is_book_summary(summary))


#: Anomalies that leave input unused (a row, an item, an entry, a level): "skipped" on stderr; the
#: others are feed faults applied as SPEC section 3 says ("found").
SKIPPING_ANOMALIES = frozenset({"bad_book", "bad_book_summary", "bad_level", "bad_price_change",
                                "bad_price_change_entry", "rejected_rest_row", "rest_row_without_receive_time",
                                "untyped_object"})
#: Locations of each anomaly named on stderr (the manifest keeps more).
ANOMALY_SHOWN = 5


class Anomalies:
    """Feed faults by name: complete counts and the first :data:`ANOMALY_LOCATIONS` places."""

    __slots__ = ("counts", "locations")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.locations: dict[str, list[str]] = {}

    def add(self, name: str, where: str) -> None:
        """Count one ``name`` fault; keep ``where`` if among the first :data:`ANOMALY_LOCATIONS`.

        Cost: O(1). Raises nothing.
        """
        count = self.counts[name]
        self.counts[name] = count + 1
        if count < ANOMALY_LOCATIONS:
            self.locations.setdefault(name, []).append(where)

    def merge(self, other: "Anomalies") -> None:
        """Add ``other``'s counts and (up to the cap) its locations.

        Cost: O(names x :data:`ANOMALY_LOCATIONS`). Raises nothing.
        """
        for name, count in other.counts.items():
            self.counts[name] += count
            kept = self.locations.setdefault(name, [])
            kept.extend(other.locations.get(name, [])[: max(0, ANOMALY_LOCATIONS - len(kept))])

    def as_json(self) -> dict[str, Any]:
        """Each fault's ``count`` and ``first`` locations, by name in name order.

        Cost: O(k log k + kept locations) for k names. Raises nothing.
        """
        return {name: {"count": count, "first": self.locations.get(name, [])}
                for name, count in sorted(self.counts.items())}


class TokenState:
    """One token's book and the bookkeeping of the rows applied to it.

    ``first`` and ``last`` are the positions (``(file_index, line, global_sequence,
    received_at_utc, received_us)``) of the first and the latest row applied to the token;
    ``row_id`` the reconstructor's number of the latest, so that a row counts once per token.
    """

    __slots__ = ("token", "book", "applied", "first", "last", "row_id", "timestamp")

    def __init__(self, token: str) -> None:
        self.token = token
        self.book: Book | None = None
        self.applied = 0
        self.first: tuple[Any, ...] | None = None
        self.last: tuple[Any, ...] | None = None
        self.row_id = 0
        self.timestamp: int | None = None  # the book's current timestamp (ms)


class Reconstructor:
    """Books for every token, advanced one websocket row at a time, compared at checkpoints.

    :param markets: ``token_id -> market labels`` from the 10B manifest.
    :param ws_names: websocket files as the manifest names them (``raw_websocket_file``).
    :param rest_names: REST files likewise (``rest_checkpoint_file``).

    Cost: O(entries x log levels) per row; memory O(tokens x levels) plus the payloads of the last
    7 s (the duplicate window and the clock's step-back allowance).
    """

    _newest_us = -1  # newest receive time seen (a class default: a follow state saved before it resumes)

    def __init__(self, markets: dict[str, dict[str, Any]], ws_names: list[str], rest_names: list[str],
                 top_n: int = 10) -> None:
        self.markets = markets
        self.ws_names = ws_names
        self.rest_names = rest_names
        self.top_n = top_n
        self.tokens: dict[str, TokenState] = {}
        self.anomalies = Anomalies()
        self.status_counts: Counter[str] = Counter()
        self.rest_rows = 0
        self.rest_rejected = 0
        self.comparison_rows = 0
        self._recent: dict[bytes, int] = {}
        self._recent_order: deque[tuple[int, bytes]] = deque()
        self._row_id = 0  # rows applied so far: TokenState.row_id says which one touched a token last

    # -- websocket --------------------------------------------------------------------------------

    def _state(self, token: str) -> TokenState:
        state = self.tokens.get(token)
        if state is None:
            state = self.tokens[token] = TokenState(token)
        return state

    def apply(self, position: tuple[Any, ...], row: dict[str, Any], raw: bytes | None = None) -> None:
        """Apply one websocket row (SPEC section 3). Cost: O(entries x log levels).

        ``position`` is ``(file_index, line, global_sequence, received_at_utc, received_us)``, as
        :func:`streamer.batch.iter_ws_rows` yields it; ``raw`` is the row's line as read: when
        given, duplicate payloads are found from its bytes.
        """
        payload = row.get("json")
        if type(payload) is dict:
            items: Any = (payload,)
        elif type(payload) is list:
            items = payload
        else:
            return
        received_us = position[4]
        if payload:
            if received_us is not None:
                self._check_duplicate(payload, raw, received_us, position)
            else:  # applied in file order (SPEC 3 allows it) but never "after" a checkpoint: say so
                self.anomalies.add("ws_row_without_receive_time", self._where(position))
        self._row_id += 1
        # States of the tokens this row applied to, each once, in first-touch order.
        touched: list[TokenState] = []
        for item in items:
            if type(item) is not dict:
                continue
            event_type = item.get("event_type")
            if not (type(event_type) is str and event_type):
                if "asset_id" in item and (("bids" in item and "asks" in item)
                                           or ("buys" in item and "sells" in item)):
                    event_type = "book"
                else:
                    self.anomalies.add("untyped_object", self._where(position))
                    continue
            if event_type == "price_change":
                stamp = item.get("timestamp")
                if type(stamp) is not int:  # _millis, inline: once per price_change row
                    stamp = int(stamp) if type(stamp) is str and stamp.isdigit() and stamp.isascii() else None
                entries = item.get("price_changes")
                usable = type(entries) is list
                if usable:
                    self._changes(None, entries, stamp, touched, position)
                entries = item.get("changes")
                if type(entries) is list and item.get("asset_id") is not None:
                    self._changes(str(item["asset_id"]), entries, stamp, touched, position)
                    usable = True
                if not usable:  # no list of entries in either form (or the older one without its token)
                    self.anomalies.add("bad_price_change", self._where(position))
            elif event_type == "book":
                token = item.get("asset_id")
                if token is None:
                    self.anomalies.add("bad_book", self._where(position))
                    continue
                sides = book_sides(item)
                if sides is None:
                    self.anomalies.add("bad_book", self._where(position))
                    continue
                bids, bad_bids = parse_levels(sides[0])
                asks, bad_asks = parse_levels(sides[1])
                if bad_bids or bad_asks:
                    self.anomalies.add("bad_level", self._where(position))
                state = self._state(str(token))
                if state.book is None:
                    state.book = Book()
                state.book.replace(bids, asks)
                state.timestamp = _millis(item.get("timestamp"))
                self._touch(state, position, touched)
            else:
                token = item.get("asset_id")
                if token is not None and str(token) not in self.tokens:
                    self._state(str(token))
                if event_type not in PASSIVE_EVENT_TYPES:
                    self.anomalies.add(f"unknown_event_type:{event_type}", self._where(position))
        for state in touched:  # after the whole row: a row may move both sides of a book
            book = state.book
            if book is not None:
                bids = book.bids
                asks = book.asks
                # Book.is_crossed, inline (twice per price_change row): the sorted keys' ends
                if bids and asks and bids._list._maxes[-1] >= asks._list._lists[0][0]:
                    self.anomalies.add("crossed_book", f"{self._where(position)} {state.token}")

    def _touch(self, state: TokenState, position: tuple[Any, ...], touched: list[TokenState]) -> None:
        """Count the current row for ``state``'s token, once per row."""
        if state.row_id != self._row_id:
            state.row_id = self._row_id
            if not state.applied:
                state.first = position
            state.applied += 1
            state.last = position
            touched.append(state)

    def _changes(self, token: str | None, entries: list[Any], stamp: int | None, touched: list[TokenState],
                 position: tuple[Any, ...]) -> None:
        """Apply price_change entries: each names its token, or all are for ``token`` (older form)."""
        tokens = self.tokens
        prices = decimal_cache
        sizes = size_cache
        for entry in entries:
            if type(entry) is not dict:
                self.anomalies.add("bad_price_change_entry", self._where(position))
                continue
            name = token
            if name is None:
                name = entry.get("asset_id")
                if name is None:
                    self.anomalies.add("bad_price_change_entry", self._where(position))
                    continue
                if type(name) is not str:
                    name = str(name)
            state = tokens.get(name)
            if state is None:
                state = tokens[name] = TokenState(name)
            side = entry.get("side")
            try:
                price = prices[entry["price"]]
                size = sizes[entry["size"]]
            except (KeyError, TypeError):
                price = cached_decimal(entry.get("price"))
                size = cached_size(entry.get("size"))
            if price is None or size is None or (side != "BUY" and side != "SELL"):
                self.anomalies.add("bad_price_change_entry", self._where(position))
                continue
            book = state.book
            if book is None:
                self.anomalies.add("price_change_without_book", self._where(position))
                continue
            if stamp is not None:
                current = state.timestamp
                if current is None or stamp >= current:
                    state.timestamp = stamp
                else:
                    self.anomalies.add("stale_price_change", self._where(position))
            levels = book.bids if side == "BUY" else book.asks
            if not size:
                levels.pop(price, None)
            elif price in levels:  # a new size at a known level: the plain dict write is enough
                _set_size(levels, price, size)
            else:
                levels[price] = size
            self._touch(state, position, touched)

    def _check_duplicate(self, payload: Any, raw: bytes | None, received_us: int,
                         position: tuple[Any, ...]) -> None:
        """Exact repeats of a payload within 2 s of the first (reported, still applied).

        The fingerprint is the line from its ``"json"`` key on (the payload's own bytes and what
        follows it) when the receive time and sequence come before it, as recorders write them;
        otherwise the payload re-serialized (a row holding only one of them included).
        """
        recent = self._recent
        order = self._recent_order
        # Forgotten by the newest time seen, not this row's: after the receive clock steps back, a
        # repeat within 2 s of its first copy is still found (up to DUPLICATE_STEP_BACK_US).
        if received_us > self._newest_us:
            self._newest_us = received_us
        horizon = self._newest_us - DUPLICATE_WINDOW_US - DUPLICATE_STEP_BACK_US
        while order and order[0][0] < horizon:
            stamp, old = order.popleft()
            if recent.get(old) == stamp:
                del recent[old]
        start = raw.find(b'"json"') if raw is not None else -1
        # the recorder's layout: both row fields before the payload (searched in the short prefix)
        if (start >= 0 and raw.find(b'"received_at_utc"', 0, start) >= 0  # type: ignore[union-attr]
                and raw.find(b'"global_message_sequence"', 0, start) >= 0):  # type: ignore[union-attr]
            fingerprint = raw[start:]  # type: ignore[index]
        else:  # the row's own fields follow the payload: the line's tail is not the payload's
            try:
                fingerprint = dumps(payload)
            except (TypeError, ValueError):
                return
        seen = recent.get(fingerprint)
        if seen is not None and 0 <= received_us - seen <= DUPLICATE_WINDOW_US:
            self.anomalies.add("duplicate_payload", self._where(position))
            return
        recent[fingerprint] = received_us
        order.append((received_us, fingerprint))

    def _where(self, position: tuple[Any, ...]) -> str:
        return f"{self.ws_names[position[0]]}:{position[1]}" if self.ws_names else str(position[1])

    # -- checkpoints ------------------------------------------------------------------------------

    def compare(self, file_index: int, line: int, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The comparison rows of one REST checkpoint row, in its summaries' order.

        A rejected row (:func:`rest_rejection`) gives none and is recorded under its reason.
        Cost: O(summaries x (levels log levels + top_n)).
        """
        self.rest_rows += 1
        where = f"{self.rest_names[file_index]}:{line}"
        rejection = rest_rejection(row)
        if rejection is not None:
            self.rest_rejected += 1
            self.anomalies.add(rejection, where)
            return []
        summaries = row["json"]
        out = []
        for summary in summaries:
            if not is_book_summary(summary):
                self.anomalies.add("bad_book_summary", where)
                continue
            out.append(self._compare_summary(summary, row, file_index, line, where))
        return out

    def _compare_summary(self, summary: dict[str, Any], row: dict[str, Any], file_index: int, line: int,
                         where: str) -> dict[str, Any]:
        token = str(summary["asset_id"])
        sides = book_sides(summary)
        assert sides is not None, "is_book_summary checked the sides"
        rest_bids, bad_bids = parse_levels(sides[0])
        rest_asks, bad_asks = parse_levels(sides[1])
        if bad_bids or bad_asks:
            self.anomalies.add("bad_level", where)
        state = self.tokens.get(token)
        if state is None:
            self.anomalies.add("rest_token_not_seen_on_websocket", f"{where} {token}")
        local = state.book if state is not None else None
        fields, all_match = compare_books(rest_bids, rest_asks, local, self.top_n)
        status = "no_local_book" if local is None else ("match" if all_match else "divergent")
        self.status_counts[status] += 1
        self.comparison_rows += 1
        market = self.markets.get(token)
        applied = state is not None and state.applied > 0
        first = state.first if applied else None  # type: ignore[union-attr]
        last = state.last if applied else None  # type: ignore[union-attr]
        first_ws = self.ws_names[0] if self.ws_names else None
        result = {
            "comparison_status": status,
            "token_id": token,
            "market": dict(market) if market is not None else {
                "market_slug": None, "condition_id": summary.get("market"), "outcome": None},
            "rest_checkpoint_sequence": row.get("checkpoint_sequence"),
            "rest_checkpoint_received_at_utc": row.get("received_at_utc"),
            "rest_checkpoint_file": self.rest_names[file_index],
            "rest_checkpoint_line": line,
            "raw_websocket_file": self.ws_names[last[0]] if applied else first_ws,  # type: ignore[index]
            "applied_ws_message_count": state.applied if applied else 0,  # type: ignore[union-attr]
            "applied_ws_line_span": [first[1], last[1]] if applied else [None, None],  # type: ignore[index]
            "applied_ws_global_sequence_span": [first[2], last[2]] if applied else [None, None],  # type: ignore[index]
            "last_applied_ws_line": last[1] if applied else None,  # type: ignore[index]
            "last_applied_ws_received_at_utc": last[3] if applied else None,  # type: ignore[index]
            "last_local_update_received_at_utc": last[3] if applied else None,  # type: ignore[index]
        }
        result.update(fields)
        return result

    def warnings(self) -> list[str]:
        """What a user must know before trusting a gate: one line each (none when all is well):
        the markets that label nothing, a websocket input that gave no book, and every anomaly
        (count and first places), input it skipped or feed faults it applied.

        Cost: O(tokens + anomaly kinds). Raises nothing.
        """
        lines = list(getattr(self.markets, "notes", ()))  # (a follow state saved before notes: a plain dict)
        if self.comparison_rows and not any(state.book is not None for state in self.tokens.values()):
            lines.append("no websocket row gave any token a book: every comparison row is no_local_book, so the "
                         "gates say nothing about reconstruction (is the websocket input the capture?)")
        for name, count in sorted(self.anomalies.counts.items()):  # said here too, not only in the manifest
            shown = self.anomalies.locations.get(name, [])[:ANOMALY_SHOWN]
            more = ", ..." if count > len(shown) else ""
            verb = "skipped" if name in SKIPPING_ANOMALIES else "found"
            lines.append(f"{verb} {count} ({name}, in the 10C manifest's anomalies): {', '.join(shown)}{more}")
        return lines

    def gate(self) -> str:
        """The 10C gate: PASS when every comparison matched, DIVERGENT otherwise, or NO_CHECKPOINTS.

        Cost: O(1). Raises nothing.
        """
        if not self.comparison_rows:
            return "BOOK_RECONSTRUCTION_NO_CHECKPOINTS"
        if self.status_counts.get("match", 0) == self.comparison_rows:
            return "BOOK_RECONSTRUCTION_PASS"
        return "BOOK_RECONSTRUCTION_DIVERGENT"
