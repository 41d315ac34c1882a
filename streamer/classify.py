"""Pure analysis rules: affected prices, affects, the divergence category, aggregates and the gate.

Everything here is a function of one comparison row and its context and evidence lists (SPEC
section 4, the reference analyzer's rules), or a sum of such results; no I/O, no state beyond
:class:`Aggregates`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .payloads import price_key

GATE_PASS = "WS_DIVERGENCE_ANALYSIS_PASS"
GATE_BLOCKED = "BLOCKED_WS_DIVERGENCE_UNEXPLAINED"

CATEGORY_INSUFFICIENT = "insufficient_raw_context"
CATEGORY_MISMATCH = "best_quote_or_price_membership_mismatch"
CATEGORY_LAG = "timing_or_feed_lag_likely"
CATEGORY_UNEXPLAINED = "size_only_unexplained"


class RowShapeError(Exception):
    """A divergent comparison row whose fields the analysis cannot use (counted, skipped)."""


class Query:
    """What the join must find for one divergent row, and what the output needs from the row.

    Built by :func:`make_query`; ``prices`` are evidence price keys (:func:`price_key`).
    """

    __slots__ = ("seq", "file_index", "comparison_line", "row", "token", "lookup", "last_line", "t_us",
                 "prices", "bid_diff", "ask_diff")

    def __init__(self, seq: int, file_index: int, comparison_line: int, row: dict[str, Any],
                 token: str, last_line: Any, t_us: int | None, prices: frozenset[Any],
                 bid_diff: Any, ask_diff: Any) -> None:
        self.seq = seq
        self.file_index = file_index
        self.comparison_line = comparison_line
        self.row = row
        self.token = token
        #: the token whose events answer the row; None while unknown: a row with a falsy
        #: token id has the events of ``str(token_id)`` only when another row names that token
        #: (the reference indexes the truthy ids of all rows), so the join answers it last
        self.lookup: str | None = token if row.get("token_id") else None
        self.last_line = last_line
        self.t_us = t_us
        self.prices = prices
        self.bid_diff = bid_diff
        self.ask_diff = ask_diff


def _diff_prices(diff: Any) -> set[str]:
    prices: set[str] = set()
    for name in ("missing_prices", "extra_prices"):
        prices.update(str(price) for price in diff.get(name) or [])
    for delta in diff.get("size_deltas") or []:
        if isinstance(delta, dict) and delta.get("price") is not None:
            prices.add(str(delta["price"]))
    return prices


#: Why a divergent row whose last line is not a number is skipped (when its token has events).
UNUSABLE_LINE = "mistyped_comparison_field: last_applied_ws_line is not a number"


def line_is_unusable(last_line: Any) -> bool:
    """Whether a row's ``last_applied_ws_line`` is neither null nor a number: the reference can
    place it only among no events (it compares it with each line number of the token's events, and
    fails on the first), so the row is answered once the token's events are all known.

    Cost: O(1). Raises nothing.
    """
    return last_line is not None and type(last_line) not in (int, float, bool)


def make_query(seq: int, file_index: int, comparison_line: int, row: dict[str, Any],
               parse_time_us: Any) -> Query:
    """Check a divergent row's fields the way the reference uses them, and build its query.

    Cost: O(size of the row's diffs).

    :raises RowShapeError: when the reference would fail on the row (a field of the wrong type).
    """
    try:
        bid_diff = row.get("bid_top_n_diff") or {}
        ask_diff = row.get("ask_top_n_diff") or {}
        prices = _diff_prices(bid_diff) | _diff_prices(ask_diff)
        len(bid_diff.get("size_deltas") or [])
        len(ask_diff.get("size_deltas") or [])
        market = row.get("market") or {}
        market.get("market_slug")
    except (AttributeError, TypeError) as exc:
        raise RowShapeError(f"unusable diff or market field ({exc})") from None
    last_line = row.get("last_applied_ws_line")  # (not a number: see line_is_unusable)
    checkpoint_time = row.get("rest_checkpoint_received_at_utc")
    t_us = None
    if prices and checkpoint_time:
        if type(checkpoint_time) is not str:
            raise RowShapeError("rest_checkpoint_received_at_utc is not a string")
        t_us = parse_time_us(checkpoint_time)
    keys = frozenset(price_key(price) for price in prices) if t_us is not None else frozenset()
    return Query(seq, file_index, comparison_line, row, str(row.get("token_id")), last_line, t_us,
                 keys, bid_diff, ask_diff)


def classify(row: dict[str, Any], bid_diff: Any, ask_diff: Any, has_context: bool,
             has_evidence: bool) -> tuple[str, dict[str, Any]]:
    """The category and the ``affects`` object of a divergent row (the reference's rules).

    Cost: O(1) beyond the diffs' lengths.
    """
    best_bid = row.get("best_bid_match") is False
    best_ask = row.get("best_ask_match") is False
    spread = row.get("spread_match") is False
    level_count = row.get("level_count_match") is False
    membership = bool(bid_diff.get("missing_prices") or bid_diff.get("extra_prices")) or bool(
        ask_diff.get("missing_prices") or ask_diff.get("extra_prices"))
    bid_deltas = len(bid_diff.get("size_deltas") or [])
    ask_deltas = len(ask_diff.get("size_deltas") or [])
    quote_or_membership = best_bid or best_ask or spread or level_count or membership
    size_only = bool(bid_deltas + ask_deltas) and not quote_or_membership
    affects = {
        "best_bid": best_bid,
        "best_ask": best_ask,
        "spread": spread,
        "level_count": level_count,
        "top_n_price_membership": membership,
        "size_only": size_only,
        "bid_size_delta_count": bid_deltas,
        "ask_size_delta_count": ask_deltas,
    }
    if not has_context:
        category = CATEGORY_INSUFFICIENT
    elif quote_or_membership:
        category = CATEGORY_MISMATCH
    elif size_only and has_evidence:
        category = CATEGORY_LAG
    elif size_only:
        category = CATEGORY_UNEXPLAINED
    else:
        category = CATEGORY_INSUFFICIENT
    return category, affects


class Aggregates:
    """Summable counters over all comparison rows and divergence results.

    Cost: O(1) per row; memory O(distinct statuses + categories).
    """

    __slots__ = ("status_counts", "category_counts", "affect_counts", "comparison_rows",
                 "divergent_rows", "divergence_results", "all_size_only", "all_with_context")

    def __init__(self) -> None:
        self.status_counts: Counter[str] = Counter()
        self.category_counts: Counter[str] = Counter()
        self.affect_counts: Counter[str] = Counter()
        self.comparison_rows = 0
        self.divergent_rows = 0
        self.divergence_results = 0
        self.all_size_only = True
        self.all_with_context = True

    def count_row(self, row: dict[str, Any]) -> str:
        """Count one comparison row; return its status text (``unknown`` when it has none).

        Cost: O(1). Raises nothing.
        """
        self.comparison_rows += 1
        status = row.get("comparison_status")
        text = str(status or "unknown")
        self.status_counts[text] += 1
        if status == "divergent":
            self.divergent_rows += 1
        return text

    def add_result(self, category: str, affects: dict[str, Any], has_context: bool) -> None:
        """Count one finished divergence result.

        Cost: O(len(affects)); raises KeyError when ``affects`` lacks a key :func:`classify` sets.
        """
        self.divergence_results += 1
        self.category_counts[category] += 1
        counts = self.affect_counts
        for name, value in affects.items():
            if value is True:
                counts[name] += 1
        counts["bid_size_deltas"] += affects["bid_size_delta_count"]
        counts["ask_size_deltas"] += affects["ask_size_delta_count"]
        if not affects["size_only"]:
            self.all_size_only = False
        if not has_context:
            self.all_with_context = False

    def gate(self) -> str:
        """The analysis gate: blocked by any quote/membership effect or missing context.

        Cost: O(1). Raises nothing.
        """
        counts = self.affect_counts
        if (counts.get("best_bid") or counts.get("best_ask") or counts.get("spread")
                or counts.get("level_count") or counts.get("top_n_price_membership")
                or self.category_counts.get(CATEGORY_INSUFFICIENT)):
            return GATE_BLOCKED
        return GATE_PASS
