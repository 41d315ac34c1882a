"""Per-token index: a bounded SortedList of compact events keyed by (file, line), with retention.

Each token keeps only what a comparison row taken from now on can still ask for (DESIGN section
2): the ``context_limit`` events up to its latest *applied* line and everything after it, plus the
events received within the evidence window. What falls out is remembered by two numbers
(:attr:`TokenIndex.evicted_through`, :attr:`TokenIndex.evicted_max_us`) so that a question the
index can no longer answer is detected, never guessed: the join then answers it with a second,
targeted pass.

An entry is a tuple ``(key, row, parts)``: ``key = file_index * 2**40 + line``; ``row`` is
``(file_index, line, global_sequence, received_at_utc, received_us)``; ``parts`` the compact
parts of :mod:`streamer.payloads` for this token on that line.
"""

from __future__ import annotations

from typing import Any

from bisect import bisect_right
from operator import itemgetter

from sortedcontainers import SortedKeyList

#: Keys are ``file_index * LINE_SPAN + line``: lines of one file stay below the next file's keys.
LINE_SPAN = 1 << 40

Entry = tuple[int, tuple[Any, ...], list[tuple[Any, ...]]]
#: New events a token buffers before they join its SortedList in one merge.
FLUSH_EVERY = 64
_KEY = itemgetter(0)


def entry_key(file_index: int, line: float) -> float:
    """The index key of a (file, line) position; ``line`` may be a float between lines.

    Lines outside a file's range are clamped into it, so a reference to line -3 of the second file
    never reaches into the first; infinities and NaN go to the ends (where the reference's bisect
    puts them). Cost: O(1).
    """
    if line < -0.5:
        line = -0.5
    elif line > LINE_SPAN - 1 or line != line:  # NaN sorts after every line, as bisect places it
        line = LINE_SPAN - 1
    return file_index * LINE_SPAN + line


class TokenIndex:
    """The retained compact events of one token, and the pending rows waiting on it.

    - ``entries``: SortedList of entries, ascending by key; new entries wait in ``tail`` and
      join it in bulk (:meth:`flush`): one C-level merge instead of an insertion per event.
    - ``anchor``: key of the token's latest applied line (a book, or a price_change while it has a
      book), or None before the first.
    - ``evicted_through``: largest key evicted so far (every retained key is larger), or None.
    - ``evicted_max_us``: largest receive time among evicted entries, or None.
    - ``pending``: rows taken but not finished (their after-context or evidence is still open).
    - ``has_book``: whether a ``book`` for the token has been seen (price changes then apply).

    Cost: append O(log n); trim O(evicted * log n); n is bounded by ``cap``.
    """

    __slots__ = ("entries", "tail", "anchor", "evicted_through", "evicted_max_us", "pending", "has_book",
                 "next_trim", "tail_room")

    def __init__(self) -> None:
        self.entries: SortedKeyList = SortedKeyList(key=_KEY)
        #: entries appended since the last :meth:`flush` (keys above every key in ``entries``)
        self.tail: list[Entry] = []
        self.anchor: float | None = None
        self.evicted_through: float | None = None
        self.evicted_max_us: int | None = None
        self.pending: list[Any] = []
        self.has_book = False
        #: size at which the owner should call :meth:`trim` next (amortises eviction)
        self.next_trim = 16
        #: appends to ``tail`` before the owner should flush (and maybe trim)
        self.tail_room = min(FLUSH_EVERY, self.next_trim)

    def flush(self) -> None:
        """Move the appended entries into the SortedList. Cost: O(n): one rebuild from sorted runs."""
        if self.tail:
            self._rebuild(list(self.entries) + self.tail if self.entries else self.tail)

    def _rebuild(self, entries: list[Entry]) -> None:
        # The tail's keys follow every retained key, so ``entries`` is sorted: building a fresh
        # SortedKeyList from it is one pass, where add() per entry or a prefix delete (which
        # sortedcontainers answers with clear() and a re-sort of the rest) cost more.
        self.entries = SortedKeyList(entries, key=_KEY)
        self.tail = []
        self.tail_room = max(1, min(FLUSH_EVERY, self.next_trim - len(entries)))

    def trim(self, keep_before_anchor: int, cutoff_us: int | None, cap: int) -> None:
        """Evict from the front what no future question needs.

        An entry goes when it is beyond the ``keep_before_anchor`` newest entries at or before
        the anchor (the last entry stands in for a missing anchor) and it was received before
        ``cutoff_us`` (or has no receive time); and always when more than ``cap`` are held.
        Callers may call this only now and then (see :attr:`next_trim`): eviction is in bulk.

        Cost: O(n) for n retained entries (a rebuild, amortised over the appends since the last).
        """
        entries: list[Entry] = list(self.entries) + self.tail if self.tail else list(self.entries)
        size = len(entries)
        anchor = self.anchor
        if anchor is None:
            at_or_before = size
        else:
            at_or_before = bisect_right(entries, anchor, key=_KEY)
        evict = 0
        for entry in entries:
            if size - evict > cap:
                pass
            elif at_or_before - evict > keep_before_anchor:
                received = entry[1][4]
                if cutoff_us is not None and received is not None and received >= cutoff_us:
                    break
            else:
                break
            received = entry[1][4]
            if received is not None and (self.evicted_max_us is None or received > self.evicted_max_us):
                self.evicted_max_us = received
            self.evicted_through = entry[0]
            evict += 1
        size -= evict
        self.next_trim = min(cap + 1, size + max(32, size))
        self._rebuild(entries[evict:] if evict else entries)

    def position(self, key: float) -> int:
        """Number of retained entries with key <= ``key``. Cost: O(log n) after a flush."""
        self.flush()
        return self.entries.bisect_key_right(key)

    def context_is_exact(self, key: float, split: int, limit: int) -> bool:
        """Whether before/after context around ``key`` can be answered from what is retained.

        ``split`` is :meth:`position` of ``key``. Exact when nothing was evicted, or the key is at
        or past the eviction point and at least ``limit`` retained entries lie at or before it.
        Cost: O(1).
        """
        evicted = self.evicted_through
        return evicted is None or (key >= evicted and split >= limit)

    def window_is_exact(self, low_us: int) -> bool:
        """Whether every entry received at or after ``low_us`` is still retained. Cost: O(1)."""
        return self.evicted_max_us is None or self.evicted_max_us < low_us

    def _check(self) -> None:
        """Assert the invariants (tests call this after every mutation). Cost: O(n)."""
        try:
            self.flush()
            entries = self.entries
            entries._check()
            keys = [entry[0] for entry in entries]
            # keys strictly ascending: one entry per (token, line)
            assert all(a < b for a, b in zip(keys, keys[1:])), "keys not strictly ascending"
            # everything retained lies after the eviction point
            if self.evicted_through is not None and keys:
                assert keys[0] > self.evicted_through, "retained key at or before evicted_through"
            # each entry is well formed: key matches its row's (file, line), parts non-empty
            for key, row, parts in entries:
                assert key == entry_key(row[0], row[1]), "key does not match the row"
                assert parts, "entry without parts"
            # the eviction summary agrees with what was evicted: a time only when a key is known
            if self.evicted_max_us is not None:
                assert self.evicted_through is not None, "evicted time without evicted key"
        except AssertionError:
            print("TokenIndex state:", list(self.entries), self.anchor, self.evicted_through,
                  self.evicted_max_us)
            raise
