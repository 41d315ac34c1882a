"""The streaming join of divergent comparison rows (queries) with websocket events.

For a divergent row with token ``k``, last applied line ``L``, checkpoint time ``T`` and affected
prices ``P`` the analysis needs (SPEC section 4, DESIGN section 1):

- ``before``: the last ``C`` events of ``k`` with key <= ``L``; ``after``: the first ``C`` with
  key > ``L`` (both empty when ``L`` is null);
- ``evidence``: the first 20 events of ``k``, in line order, received within ``S`` seconds of ``T``
  that hold a price_change entry at a price in ``P``.

:class:`ContextJoin` answers these while the websocket stream goes by, from the bounded
per-token indexes of :mod:`streamer.index`; a row is *taken* when the stream passes ``T``, waits
(pending) until its after-context and evidence window are complete, then is handed to
``on_result``. A question the retained events cannot answer exactly is a *miss*, handed to
``on_miss`` and answered later by :func:`answer_exactly` in a second, targeted pass.

Receive times may step backwards by up to ``allowance_seconds``; an event later than that (a
*late* event) that could fall in the window of a row already finished sets
:attr:`ContextJoin.redo_required`, and the caller then answers every row exactly instead.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from typing import Any, Callable, Iterable

from .classify import Query, line_is_unusable
from .index import Entry, TokenIndex, entry_key
from .payloads import BOOK, LEGACY_PRICE_CHANGE, PRICE_CHANGE, part_price_key

EVIDENCE_CAP = 20

Evidence = list[tuple[Entry, list[tuple[Any, ...]]]]
ResultSink = Callable[[Query, list[Entry], list[Entry], Evidence], None]


def matched_parts(parts: list[tuple[Any, ...]], prices: frozenset[Any]) -> list[tuple[Any, ...]]:
    """The price_change parts of an entry whose price is one of ``prices`` (as decimals).

    Cost: O(len(parts)) (price keys are cached: :func:`~streamer.payloads.price_key`). Raises nothing.
    """
    return [part for part in parts
            if (part[0] == PRICE_CHANGE or part[0] == LEGACY_PRICE_CHANGE)
            and part_price_key(part) in prices]


class Pending:
    """A taken row whose after-context or evidence is still open."""

    __slots__ = ("query", "before", "after", "evidence", "after_open", "evidence_open", "low_us",
                 "high_us", "done")

    def __init__(self, query: Query, before: list[Entry], after: list[Entry], evidence: Evidence,
                 after_open: bool, evidence_open: bool, low_us: int, high_us: int) -> None:
        self.query = query
        self.before = before
        self.after = after
        self.evidence = evidence
        self.after_open = after_open
        self.evidence_open = evidence_open
        self.low_us = low_us
        self.high_us = high_us
        self.done = False


class ContextJoin:
    """Per-token indexes, pending rows and miss detection for one pass over the websocket stream.

    Feed it in stream order: :meth:`take` for each divergent row once the stream has passed its
    checkpoint time, :meth:`advance` with each websocket row's receive time, :meth:`index` with
    each websocket row's compact parts, and :meth:`close` at the end.

    Cost: O(log n) per indexed event plus O(pending rows of that token); memory O(tokens x
    (context_limit + events in the evidence window + allowance)) plus pending rows, which are
    bounded by ``max_pending`` (beyond it the rows of the busiest token become misses).
    """

    #: Sharded analyze: the events of ``foreign_tokens`` (the driver: other processes' tokens) are
    #: not indexed; with ``held_tokens`` set (a helper), only the events of those are.
    foreign_tokens: frozenset[str] = frozenset()
    held_tokens: frozenset[str] | None = None

    def __init__(self, context_limit: int, evidence_seconds: int, on_result: ResultSink,
                 on_miss: Callable[[Query], None], *, allowance_seconds: float = 5.0,
                 cap: int = 4096, max_pending: int = 50_000) -> None:
        self.context_limit = context_limit
        self.evidence_us = evidence_seconds * 1_000_000
        self.allowance_us = int(allowance_seconds * 1_000_000)
        self.cap = max(cap, context_limit + 1)
        self.max_pending = max_pending
        self.on_result = on_result
        self.on_miss = on_miss
        self.indexes: dict[str, TokenIndex] = {}
        self.max_us: int | None = None
        self._deadlines: list[tuple[int, int, Pending]] = []
        self._pending_count = 0
        # Tokens dropped whole (no book, nothing pending, nothing recent): what they held.
        self.dropped_through: float | None = None
        self.dropped_max_us: int | None = None
        # Windows of rows whose evidence closed on time, per token: (lowest low, highest high).
        self._closed_windows: dict[str, tuple[int, int]] = {}
        self.redo_required = False
        self.late_events = 0
        self.misses = 0
        self.spilled_pending = 0

    # -- the stream -------------------------------------------------------------------------

    def answers(self, token: str | None) -> bool:
        """Whether rows of ``token`` are this join's to answer (always, unless sharded). Cost: O(1)."""
        held = self.held_tokens
        return token in held if held is not None else token not in self.foreign_tokens

    def cutoff_us(self) -> int | None:
        """Receive time before which an event can no longer fall in a window taken from now on.

        Cost: O(1). Raises nothing.
        """
        if self.max_us is None:
            return None
        return self.max_us - self.evidence_us - self.allowance_us

    def advance(self, received_us: int | None) -> None:
        """Account for the receive time of the next websocket row; close windows it passes.

        Cost: O(log d + p) per window closed (d deadlines, p pending on its token); raises what sinks do.
        """
        if received_us is None:
            return
        max_us = self.max_us
        if max_us is None or received_us > max_us:
            self.max_us = received_us
            watermark = received_us - self.allowance_us
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] < watermark:
                pending = heapq.heappop(deadlines)[2]
                if pending.done:
                    continue
                pending.evidence_open = False
                self._closed_by_time(pending)
                if not pending.after_open:
                    self.indexes[pending.query.lookup].pending.remove(pending)
                    self._pending_count -= 1
                    self._finish(pending)

    def index(self, key: float, row: tuple[Any, ...], parts: dict[str, list[tuple[Any, ...]]]) -> None:
        """Add one websocket row's compact parts (grouped by token) to the indexes.

        ``row`` is ``(file_index, line, global_sequence, received_at_utc, received_us)``.
        Cost: O(tokens in the row x log n).
        """
        received_us = row[4]
        max_us = self.max_us
        late = received_us is not None and max_us is not None and received_us < max_us - self.allowance_us
        if late:
            self.late_events += 1
        indexes = self.indexes
        foreign = self.foreign_tokens
        held = self.held_tokens
        for token, token_parts in parts.items():
            if token in foreign or (held is not None and token not in held):  # not answers(): inline, per event
                continue
            index = indexes.get(token)
            if index is None:
                index = indexes[token] = self._new_index()
            entry = (key, row, token_parts)
            tail = index.tail
            tail.append(entry)
            for part in token_parts:
                tag = part[0]
                if tag is BOOK:
                    index.has_book = True
                    index.anchor = key
                    break
                if (tag is PRICE_CHANGE or tag is LEGACY_PRICE_CHANGE) and index.has_book:
                    index.anchor = key
                    break
            if index.pending:
                self._offer(index, entry, received_us)
            if late and not self.redo_required:
                window = self._closed_windows.get(token)
                if window is not None and window[0] <= received_us <= window[1]:
                    self.redo_required = True
            if len(tail) >= index.tail_room:
                index.flush()
                if len(index.entries) >= index.next_trim:
                    index.trim(self.context_limit, self.cutoff_us(), self.cap)

    def sweep(self) -> None:
        """Drop whole indexes of tokens that never had a book and hold nothing recent.

        Keeps memory bounded by live tokens when the feed names ever new ones (``new_market``).
        Cost: O(tokens).
        """
        cutoff = self.cutoff_us()
        if cutoff is None:
            return
        for index in self.indexes.values():
            index.flush()
        for token in [token for token, index in self.indexes.items()
                      if not index.has_book and not index.pending
                      and (not index.entries or (index.entries[-1][1][4] or cutoff - 1) < cutoff)]:
            index = self.indexes.pop(token)
            keys = [index.entries[-1][0]] if index.entries else []
            times = [entry[1][4] for entry in index.entries]
            keys.append(index.evicted_through)
            times.append(index.evicted_max_us)
            keys.append(self.dropped_through)
            times.append(self.dropped_max_us)
            known_keys = [key for key in keys if key is not None]
            known_times = [time for time in times if time is not None]
            self.dropped_through = max(known_keys) if known_keys else None
            self.dropped_max_us = max(known_times) if known_times else None

    # -- rows ---------------------------------------------------------------------------------

    def take(self, query: Query, file_index: int, stream_key: float) -> None:
        """Start answering a divergent row; ``file_index`` is that of its websocket file.

        ``stream_key`` is the key of the last websocket row read (infinity at the end): a
        last line beyond it would need events not read yet, so such a row is a miss.

        Finishes it at once when everything is known, registers it as pending otherwise, or
        reports it as a miss when the retained events cannot answer it exactly.
        Cost: O(log n + C + w), n retained, w in the window (a flush or spill more); raises what sinks do.
        """
        if query.lookup is None or line_is_unusable(query.last_line):
            return self._miss(query)  # answered once every row's token, or all its events, are known
        index = self.indexes.get(query.lookup)
        limit = self.context_limit
        before: list[Entry] = []
        after: list[Entry] = []
        after_open = False
        if query.last_line is not None:
            key = entry_key(file_index, query.last_line)
            if key > stream_key:
                return self._miss(query)  # the before-context lies ahead of the stream
            if index is None:
                if self.dropped_through is not None:
                    return self._miss(query)
            else:
                split = index.position(key)  # flushes the index
                if not index.context_is_exact(key, split, limit):
                    return self._miss(query)
                entries = index.entries
                before = list(entries.islice(max(0, split - limit), split))
                after = list(entries.islice(split, split + limit))
            after_open = len(after) < limit
        evidence: Evidence = []
        evidence_open = False
        low = high = 0
        if query.prices and query.t_us is not None:
            low = query.t_us - self.evidence_us
            high = query.t_us + self.evidence_us
            if index is None:
                if self.dropped_max_us is not None and self.dropped_max_us >= low:
                    return self._miss(query)
            else:
                index.flush()
                if not index.window_is_exact(low):
                    return self._miss(query)
                evidence = self._window(index, query.prices, low, high)
            evidence_open = len(evidence) < EVIDENCE_CAP
        pending = Pending(query, before, after, evidence, after_open, evidence_open, low, high)
        if evidence_open and self.max_us is not None and high < self.max_us - self.allowance_us:
            pending.evidence_open = evidence_open = False
            self._closed_by_time(pending)
        if not after_open and not evidence_open:
            self._finish(pending)
            return
        if index is None:
            index = self.indexes[query.lookup] = self._new_index()
        index.pending.append(pending)
        self._pending_count += 1
        if evidence_open:
            heapq.heappush(self._deadlines, (high, query.seq, pending))
        if self._pending_count > self.max_pending:
            self._spill_busiest()

    def _window(self, index: TokenIndex, prices: frozenset[Any], low: int, high: int) -> Evidence:
        """The first 20 retained entries, in line order, received in [low, high] at those prices.

        With no late event so far, every entry before one received earlier than ``low`` minus the
        allowance was received before ``low`` too (an event is late exactly when it breaks that),
        so the scan starts there instead of at the front. Cost: O(entries in the window).
        """
        entries = index.entries
        start = 0
        if not self.late_events:
            bound = low - self.allowance_us
            later = 0
            for entry in reversed(entries):
                received = entry[1][4]
                if received is not None and received < bound:
                    start = len(entries) - later
                    break
                later += 1
        evidence: Evidence = []
        for entry in entries.islice(start):
            received = entry[1][4]
            if received is None or received < low or received > high:
                continue
            matched = matched_parts(entry[2], prices)
            if matched:
                evidence.append((entry, matched))
                if len(evidence) >= EVIDENCE_CAP:
                    break
        return evidence

    def close(self) -> None:
        """End of the stream: every pending row is finished with what it has.

        Cost: O(tokens + pending rows); raises what ``on_result`` raises.
        """
        for index in self.indexes.values():
            for pending in index.pending:
                pending.after_open = pending.evidence_open = False
                self._finish(pending)
            index.pending = []
        self._pending_count = 0
        self._deadlines = []

    # -- internals ------------------------------------------------------------------------------

    def _offer(self, index: TokenIndex, entry: Entry, received_us: int | None) -> None:
        limit = self.context_limit
        finished = False
        priced: list[tuple[tuple[Any, ...], Any]] | None = None
        for pending in index.pending:
            if pending.after_open:
                pending.after.append(entry)
                if len(pending.after) >= limit:
                    pending.after_open = False
            if (pending.evidence_open and received_us is not None
                    and pending.low_us <= received_us <= pending.high_us):
                if priced is None:
                    priced = [(part, part_price_key(part)) for part in entry[2]
                              if part[0] == PRICE_CHANGE or part[0] == LEGACY_PRICE_CHANGE]
                prices = pending.query.prices
                matched = [part for part, price in priced if price in prices]
                if matched:
                    pending.evidence.append((entry, matched))
                    if len(pending.evidence) >= EVIDENCE_CAP:
                        pending.evidence_open = False
            if not pending.after_open and not pending.evidence_open:
                finished = True
        if finished:
            still = []
            for pending in index.pending:
                if pending.after_open or pending.evidence_open:
                    still.append(pending)
                else:
                    self._pending_count -= 1
                    self._finish(pending)
            index.pending = still

    def _new_index(self) -> TokenIndex:
        """A token's index. Once whole indexes have been dropped (:meth:`sweep`), a new one may
        belong to a dropped token: it starts as if everything dropped had been evicted from it."""
        index = TokenIndex()
        index.evicted_through = self.dropped_through
        index.evicted_max_us = self.dropped_max_us
        return index

    def _finish(self, pending: Pending) -> None:
        pending.done = True
        self.on_result(pending.query, pending.before, pending.after, pending.evidence)

    def _closed_by_time(self, pending: Pending) -> None:
        """Remember the window of a row whose evidence closed on time (see late events)."""
        token = pending.query.lookup
        window = self._closed_windows.get(token)
        self._closed_windows[token] = (
            (pending.low_us, pending.high_us) if window is None
            else (min(window[0], pending.low_us), max(window[1], pending.high_us)))

    def _miss(self, query: Query) -> None:
        self.misses += 1
        self.on_miss(query)

    def _spill_busiest(self) -> None:
        index = max(self.indexes.values(), key=lambda candidate: len(candidate.pending))
        for pending in index.pending:
            pending.done = True
            self.spilled_pending += 1
            self._miss(pending.query)
        self._pending_count -= len(index.pending)
        index.pending = []


def answer_exactly(rows: Iterable[tuple[float, tuple[Any, ...], dict[str, list[tuple[Any, ...]]]]],
                   queries: list[tuple[Query, float | None]], context_limit: int,
                   evidence_seconds: int, on_result: ResultSink, close_after_us: int | None = None,
                   on_unusable: Callable[[Query], None] | None = None) -> None:
    """Answer ``queries`` exactly with one pass over the websocket ``rows`` (the second pass).

    ``rows`` yields ``(key, row, parts)`` for every websocket row in stream order; ``queries``
    pairs each query with its context key (None when its last line is null). With
    ``close_after_us`` (the first pass saw no receive time step back more than that), a query is
    answered as soon as its context is complete and the stream's latest receive time is more than
    that past its evidence window, so only the open ones are held; without it, all are answered
    at the end of the pass (a late line could still fall into any window). A query whose last
    line is not a number (:func:`~streamer.classify.line_is_unusable`) is answered at the end:
    with no context and no evidence when its token has no event at all, as the reference answers
    it, else handed to ``on_unusable`` (the reference fails on it).

    Cost: O(rows + entries of queried tokens x log q + output); memory O(q x (2C + 20)) entries,
    O(open queries x (2C + 20)) with ``close_after_us``.
    """
    limit = context_limit
    span = evidence_seconds * 1_000_000
    by_token: dict[str, dict[str, Any]] = {}
    # per query: [before, after, evidence, the query]
    results: dict[int, list[Any]] = {query.seq: [[], [], [], query] for query, _key in queries}
    # what each query still waits for (its context passing, its after-context, its evidence window);
    # answered when none is left (only with close_after_us: else everything waits for the end)
    waits: dict[int, int] = {}
    closes: list[tuple[int, int]] = []  # (latest receive time that may still hold evidence, seq)
    open_evidence: set[int] = set()
    for query, key in queries:
        if query.lookup is None:
            continue
        state = by_token.setdefault(query.lookup, {"context": [], "times": [], "by_time": [], "seen": False})
        if line_is_unusable(query.last_line):
            continue  # (only whether the token has events at all matters: "seen")
        waiting = 0
        if key is not None:
            state["context"].append((key, query.seq, query))
            waiting += 2 if limit > 0 else 1
        if query.prices and query.t_us is not None:
            state["by_time"].append((query.t_us, query.seq, query))
            if close_after_us is not None:
                closes.append((query.t_us + span + close_after_us, query.seq))
                open_evidence.add(query.seq)
                waiting += 1
        if close_after_us is not None and waiting:
            waits[query.seq] = waiting
    heapq.heapify(closes)

    def settle(seq: int) -> None:
        waits[seq] -= 1
        if not waits[seq]:
            del waits[seq]
            before, after, evidence, query = results.pop(seq)
            on_result(query, before, after, evidence)

    for state in by_token.values():
        state["context"].sort(key=lambda item: (item[0], item[1]))
        state["by_time"].sort(key=lambda item: (item[0], item[1]))
        state["times"] = [item[0] for item in state["by_time"]]
        state["next"] = 0
        state["ring"] = deque(maxlen=limit) if limit > 0 else deque(maxlen=0)
        state["open_after"] = []
    max_us: int | None = None
    for key, row, parts in rows:
        for token, token_parts in parts.items():
            state = by_token.get(token)
            if state is None:
                continue
            state["seen"] = True
            entry = (key, row, token_parts)
            context = state["context"]
            position = state["next"]
            while position < len(context) and context[position][0] < key:
                query = context[position][2]
                results[query.seq][0] = list(state["ring"])
                if limit > 0:
                    state["open_after"].append((query.seq, results[query.seq][1]))
                if query.seq in waits:
                    settle(query.seq)  # its before-context is complete
                position += 1
            state["next"] = position
            if state["open_after"]:
                still = []
                for seq, after in state["open_after"]:
                    after.append(entry)
                    if len(after) < limit:
                        still.append((seq, after))
                    elif seq in waits:
                        settle(seq)  # its after-context is complete
                state["open_after"] = still
            if limit > 0:
                state["ring"].append(entry)
            received = row[4]
            if received is not None and state["times"]:
                times = state["times"]
                start = bisect_left(times, received - span)
                stop = bisect_right(times, received + span)
                for position in range(start, stop):
                    query = state["by_time"][position][2]
                    answer = results.get(query.seq)
                    if answer is None:  # answered already
                        continue
                    evidence = answer[2]
                    if len(evidence) >= EVIDENCE_CAP:
                        continue
                    matched = matched_parts(token_parts, query.prices)
                    if matched:
                        evidence.append((entry, matched))
                        if len(evidence) >= EVIDENCE_CAP and query.seq in open_evidence:
                            open_evidence.discard(query.seq)
                            settle(query.seq)  # its evidence is complete
        received = row[4]
        if received is not None and (max_us is None or received > max_us):
            max_us = received
            while closes and closes[0][0] < max_us:  # no later line can fall in these windows
                seq = heapq.heappop(closes)[1]
                if seq in open_evidence:
                    open_evidence.discard(seq)
                    settle(seq)
    for state in by_token.values():
        for _key, _seq, query in state["context"][state["next"]:]:
            if query.seq in results:
                results[query.seq][0] = list(state["ring"])
    for query, _key in queries:
        if query.seq in results:
            before, after, evidence, _query = results.pop(query.seq)
            if not line_is_unusable(query.last_line):
                on_result(query, before, after, evidence)
            elif query.lookup is not None and by_token[query.lookup]["seen"]:
                assert on_unusable is not None, "a query whose last line is not a number needs on_unusable"
                on_unusable(query)
            else:
                on_result(query, [], [], [])
