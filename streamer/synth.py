"""Deterministic generator of realistic synthetic recorder captures (websocket rows, REST checkpoints, 10B manifest)."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from random import Random
from typing import Any, BinaryIO

import orjson

from .writer import AtomicFile, write_atomic

__all__ = ("CaptureShape", "Capture", "generate_capture", "main")


@dataclass(frozen=True)
class CaptureShape:
    """What a synthetic capture looks like; every rate is a probability per line (or per frame)."""

    markets: int = 3  #: binary markets, each with a YES and a NO token (mirrored books)
    ws_lines: int = 2000  #: physical websocket lines to write (all files together)
    ws_files: int = 1  #: rotated websocket files, in time order
    rest_files: int = 1  #: rotated REST checkpoint files, in time order
    start: str = "2026-04-19T17:00:00Z"  #: first receive time
    messages_per_second: float = 50.0  #: mean websocket frame rate
    rest_interval_seconds: float = 5.0  #: a REST /books checkpoint of all tokens this often
    drop_rate: float = 0.002  #: fraction of book-changing websocket lines the recorder loses
    rest_lag_ms: tuple[int, int] = (-400, 1200)  #: REST shows the venue at receive time + U(lag) ms
    legacy_price_change_fraction: float = 0.0  #: price_change frames in the pre-2025-09-15 form
    pong_rate: float = 0.01  #: PONG text frames per line
    extra_event_rate: float = 0.05  #: last_trade_price / best_bid_ask / tick_size_change / new_market
    reconnect_every: int = 0  #: every N lines a new subscription array of books (0 = only at start)
    empty_frame_rate: float = 0.001  #: [] frames
    book_without_event_type_rate: float = 0.0  #: book objects written without event_type
    duplicate_rate: float = 0.0  #: exact duplicate frames written again 0-120 ms later
    blank_line_rate: float = 0.0  #: blank lines in the websocket files
    rest_error_rate: float = 0.0  #: REST rows with http_status 404 and json {"error": ...}
    gzip: bool = True  #: .jsonl.gz (gzip, mtime 0) or plain .jsonl
    levels: int = 30  #: approximate levels per side
    trade_rate: float = 0.005  #: trades per line: a price_change at the best level, last_trade_price, two books
    unlisted_token_rate: float = 0.1  #: checkpoints whose REST reply also holds a token the websocket never sends


@dataclass(frozen=True)
class Capture:
    """The files one generate_capture call wrote."""

    manifest_10b: Path
    ws_files: list[Path]
    rest_files: list[Path]
    ws_lines: int  #: physical websocket lines written (blank lines included)
    rest_lines: int
    token_ids: list[str]  #: listed tokens, YES then NO per market, in manifest order


# ---------------------------------------------------------------------------------------------
# formatting helpers

_PRICE = [format((Decimal(c) / 100).normalize(), "f") for c in range(101)]
_MAX_CENT = 99
_FLUSH_BYTES = 1 << 18


def _size_str(hundredths: int) -> str:
    whole, frac = divmod(hundredths, 100)
    if frac == 0:
        return str(whole)
    if frac % 10 == 0:
        return f"{whole}.{frac // 10}"
    return f"{whole}.{frac:02d}"


def _parse_start(text: str) -> int:
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


class _Clock:
    """Formats microsecond epoch times as recorder receive times, caching the seconds prefix."""

    __slots__ = ("_sec", "_prefix")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def fmt(self, t_us: int) -> str:
        """``t_us`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

        Cost: O(1); raises OverflowError, OSError or ValueError for a time datetime cannot represent.
        """
        sec, us = divmod(t_us, 1_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{us:06d}Z"


class _LineWriter:
    """Appends lines to one output file (gzip with mtime 0, or plain), buffering a bounded amount.

    The file is an :class:`~streamer.writer.AtomicFile`: renamed to ``path`` by :meth:`close`, so
    an interrupted generation never leaves a shortened file under a capture's name.
    """

    __slots__ = ("path", "lines", "_file", "_out", "_buf", "_size")

    def __init__(self, path: Path, use_gzip: bool) -> None:
        self.path = path
        self.lines = 0
        self._file = AtomicFile(path)
        raw: BinaryIO = self._file.handle
        self._out: BinaryIO = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)  # type: ignore[assignment]
            if use_gzip
            else raw
        )
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, line: bytes) -> None:
        """Buffer one line (flushed past 256 KiB). Cost: O(len(line)) amortized; raises OSError (flush)."""
        self._buf.append(line)
        self._size += len(line)
        self.lines += 1
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines out. Cost: O(bytes buffered); raises OSError when the write fails."""
        if self._buf:
            self._out.write(b"".join(self._buf))
            self._buf.clear()
            self._size = 0

    def close(self) -> None:
        """Flush, end the gzip stream and publish the file at ``path``.

        Cost: O(bytes buffered) and an fsync; raises OSError (write, rename), the file then dropped.
        """
        try:
            self.flush()
            if self._out is not self._file.handle:
                self._out.close()
        except BaseException:
            self._file.abort()
            raise
        self._file.commit()

    def abort(self) -> None:
        """Drop the unfinished file; ``path`` is left as it was. Cost: O(1); raises nothing."""
        self._file.abort()


# ---------------------------------------------------------------------------------------------
# venue simulation


class _Market:
    """The venue's true books of one binary market: the YES book; the NO book is its mirror."""

    __slots__ = (
        "index", "condition_id", "slug", "question", "yes_id", "no_id",
        "bids", "asks", "mid0", "hash_yes", "hash_no", "ts_yes", "ts_no", "ltp", "tick",
    )

    def __init__(self, index: int, rng: Random, levels: int, start_ms: int) -> None:
        self.index = index
        self.condition_id = "0x%064x" % rng.getrandbits(256)
        self.slug = f"synthetic-market-{index}-{self.condition_id[2:10]}"
        self.question = f"Will synthetic event {index} ({self.condition_id[2:10]}) happen?"
        self.yes_id = str(rng.randrange(10**76, 10**77))
        self.no_id = str(rng.randrange(10**76, 10**77))
        # Both sides must have room for `levels` prices on the 0.01 grid.
        lo = min(50, math.ceil(levels * 1.15) + 2)
        self.mid0 = rng.randint(lo, 100 - lo)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        half = rng.randint(1, 2)
        price = self.mid0 - half
        while price >= 1 and len(self.bids) < levels:
            if rng.random() < 0.9 or not self.bids:
                self.bids[price] = _draw_size(rng)
            price -= 1
        price = self.mid0 + (1 if half == 1 else rng.randint(1, 2))
        while price <= _MAX_CENT and len(self.asks) < levels:
            if rng.random() < 0.9 or not self.asks:
                self.asks[price] = _draw_size(rng)
            price += 1
        self.hash_yes = _sha1(f"init:{self.yes_id}")
        self.hash_no = _sha1(f"init:{self.no_id}")
        self.ts_yes = self.ts_no = start_ms - rng.randint(1_000, 60_000)
        self.ltp = rng.randint(max(1, self.mid0 - 3), min(_MAX_CENT, self.mid0 + 3))
        self.tick = "0.01"

    def best_bid(self) -> int:
        """The best YES bid in cents (0 when none). Cost: O(levels). Raises nothing."""
        return max(self.bids) if self.bids else 0

    def best_ask(self) -> int:
        """The best YES ask in cents (100 when none). Cost: O(levels). Raises nothing."""
        return min(self.asks) if self.asks else 100

    # Levels as the venue writes them: bids ascending, asks descending (best level last).
    def levels_yes(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The YES book's ``(bids, asks)``. Cost: O(levels log levels). Raises nothing."""
        bids = [{"price": _PRICE[p], "size": _size_str(self.bids[p])} for p in sorted(self.bids)]
        asks = [{"price": _PRICE[p], "size": _size_str(self.asks[p])} for p in sorted(self.asks, reverse=True)]
        return bids, asks

    def levels_no(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The NO book's ``(bids, asks)``, the YES book mirrored.

        Cost: O(levels log levels). Raises nothing.
        """
        # NO bids are 1 - YES asks (ascending NO price = descending YES ask price), NO asks 1 - YES bids.
        bids = [{"price": _PRICE[100 - p], "size": _size_str(self.asks[p])} for p in sorted(self.asks, reverse=True)]
        asks = [{"price": _PRICE[100 - p], "size": _size_str(self.bids[p])} for p in sorted(self.bids)]
        return bids, asks


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _draw_size(rng: Random) -> int:
    """A level size in hundredths: log-uniform 5..20000, mostly whole or one-decimal numbers."""
    hundredths = int(math.exp(rng.uniform(6.2146, 14.5087)))  # ln(500) .. ln(2_000_000)
    r = rng.random()
    if r < 0.55:
        hundredths -= hundredths % 100
    elif r < 0.75:
        hundredths -= hundredths % 10
    return max(hundredths, 100)


@dataclass
class _Checkpoint:
    sequence: int
    received_us: int
    snapshot_us: int
    error: bool
    unlisted: bool
    summaries: list[dict[str, Any]] | None = None


class _Generator:
    """One capture being written: venue state, recorder, REST poller."""

    def __init__(self, out_dir: Path, shape: CaptureShape, seed: int) -> None:
        if shape.markets < 1:
            raise ValueError("markets must be at least 1")
        if shape.ws_files < 1 or shape.rest_files < 1:
            raise ValueError("ws_files and rest_files must be at least 1")
        if shape.messages_per_second <= 0 or shape.rest_interval_seconds <= 0:
            raise ValueError("messages_per_second and rest_interval_seconds must be positive")
        if shape.rest_lag_ms[0] > shape.rest_lag_ms[1]:
            raise ValueError("rest_lag_ms must be (low, high) with low <= high")
        self.shape = shape
        self.seed = seed
        self.rng = Random(seed)
        self.out_dir = out_dir
        self.suffix = ".jsonl.gz" if shape.gzip else ".jsonl"
        self.clock_fmt = _Clock()
        self.start_us = _parse_start(shape.start)
        self.now_us = self.start_us
        self.last_written_us = self.start_us
        self.change_counter = 0
        rng = self.rng
        self.markets = [_Market(i, rng, max(shape.levels, 3), self.start_us // 1000) for i in range(shape.markets)]
        self.token_ids = [t for m in self.markets for t in (m.yes_id, m.no_id)]
        self.unlisted_id = str(rng.randrange(10**76, 10**77))
        self.unlisted_market = "0x%064x" % rng.getrandbits(256)
        self.unlisted_summary = self._unlisted_book(rng)
        # websocket files
        self.ws_paths = [out_dir / f"ws-{i:03d}{self.suffix}" for i in range(shape.ws_files)]
        self.rest_paths = [out_dir / f"rest-{i:03d}{self.suffix}" for i in range(shape.rest_files)]
        self.ws_per_file = max(1, math.ceil(shape.ws_lines / shape.ws_files))
        self.ws_index = 0
        self.ws_writer = _LineWriter(self.ws_paths[0], shape.gzip)
        self.ws_total = 0
        self.sequence = 0
        # REST poller
        interval_us = int(round(shape.rest_interval_seconds * 1_000_000))
        self.rest_interval_us = max(1, interval_us)
        est_duration_us = shape.ws_lines / shape.messages_per_second * 1_000_000
        est_checkpoints = max(1, int(est_duration_us // self.rest_interval_us))
        self.rest_per_file = max(1, math.ceil(est_checkpoints / shape.rest_files))
        self.rest_index = 0
        try:
            self.rest_writer = _LineWriter(self.rest_paths[0], shape.gzip)
        except OSError:
            self.ws_writer.abort()
            raise
        self.rest_total = 0
        self.next_checkpoint = 1
        self.last_checkpoint_us = self.start_us
        self.pending: list[_Checkpoint] = []
        self.lines_since_reconnect = 0

    # -- output --------------------------------------------------------------------------------

    def _ws_write(self, line: bytes) -> None:
        if self.ws_writer.lines >= self.ws_per_file and self.ws_index + 1 < len(self.ws_paths):
            self.ws_writer.close()
            self.ws_index += 1
            self.ws_writer = _LineWriter(self.ws_paths[self.ws_index], self.shape.gzip)
        self.ws_writer.write(line)
        self.ws_total += 1
        self.lines_since_reconnect += 1

    def _ws_row(self, t_us: int, payload: bytes | None) -> None:
        """Write one recorder row (payload None: a PONG text frame), then maybe a blank line."""
        self.sequence += 1
        self.last_written_us = t_us
        head = b'{"received_at_utc":"' + self.clock_fmt.fmt(t_us).encode() + b'","global_message_sequence":'
        if payload is None:
            self._ws_write(head + str(self.sequence).encode() + b',"json":null,"text":"PONG"}\n')
        else:
            self._ws_write(head + str(self.sequence).encode() + b',"json":' + payload + b"}\n")
        rate = self.shape.blank_line_rate
        if rate and self.ws_total < self.shape.ws_lines and self.rng.random() < rate:
            self._ws_write(b"\n" if self.rng.random() < 0.8 else b"  \n")

    def _rest_write(self, cp: _Checkpoint) -> None:
        if self.rest_writer.lines >= self.rest_per_file and self.rest_index + 1 < len(self.rest_paths):
            self.rest_writer.close()
            self.rest_index += 1
            self.rest_writer = _LineWriter(self.rest_paths[self.rest_index], self.shape.gzip)
        token_ids = list(self.token_ids)
        if cp.unlisted:
            token_ids.append(self.unlisted_id)
        row: dict[str, Any] = {
            "checkpoint_sequence": cp.sequence,
            "received_at_utc": self.clock_fmt.fmt(cp.received_us),
            "request": {"endpoint": "POST /books", "token_ids": token_ids},
        }
        if cp.error:
            row["http_status"] = 404
            row["json"] = {"error": "No orderbook exists for the requested token id"}
        else:
            row["http_status"] = 200
            row["json"] = cp.summaries + [self.unlisted_summary] if cp.unlisted and cp.summaries is not None else cp.summaries
        self.rest_writer.write(orjson.dumps(row) + b"\n")
        self.rest_total += 1

    # -- REST poller -------------------------------------------------------------------------------

    def _unlisted_book(self, rng: Random) -> dict[str, Any]:
        mid = rng.randint(20, 80)
        bids = [{"price": _PRICE[p], "size": _size_str(_draw_size(rng))} for p in range(max(1, mid - 8), mid)]
        asks = [{"price": _PRICE[p], "size": _size_str(_draw_size(rng))} for p in range(min(_MAX_CENT, mid + 8), mid, -1)]
        return {
            "market": self.unlisted_market,
            "asset_id": self.unlisted_id,
            "timestamp": str(self.start_us // 1000 - 3_600_000),
            "hash": _sha1(f"unlisted:{self.unlisted_id}"),
            "bids": bids,
            "asks": asks,
            "min_order_size": "5",
            "tick_size": "0.01",
            "neg_risk": False,
            "last_trade_price": _PRICE[mid],
        }

    def _summaries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.markets:
            for token, (bids, asks), ts, h, ltp in (
                (m.yes_id, m.levels_yes(), m.ts_yes, m.hash_yes, m.ltp),
                (m.no_id, m.levels_no(), m.ts_no, m.hash_no, 100 - m.ltp),
            ):
                out.append({
                    "market": m.condition_id,
                    "asset_id": token,
                    "timestamp": str(ts),
                    "hash": h,
                    "bids": bids,
                    "asks": asks,
                    "min_order_size": "5",
                    "tick_size": m.tick,
                    "neg_risk": False,
                    "last_trade_price": _PRICE[ltp],
                })
        return out

    def _schedule(self, limit_us: int) -> None:
        """Schedule every checkpoint whose earliest possible snapshot time is at or before limit_us."""
        lo_us = self.shape.rest_lag_ms[0] * 1000
        while self.start_us + self.next_checkpoint * self.rest_interval_us + lo_us <= limit_us:
            self._schedule_one()

    def _schedule_one(self) -> _Checkpoint:
        rng = self.rng
        base = self.start_us + self.next_checkpoint * self.rest_interval_us
        received = max(self.last_checkpoint_us, base + rng.randint(0, min(250_000, self.rest_interval_us // 4)))
        lo, hi = self.shape.rest_lag_ms
        lag_us = rng.randint(lo * 1000, hi * 1000) if hi > lo else lo * 1000
        cp = _Checkpoint(
            sequence=self.next_checkpoint,
            received_us=received,
            snapshot_us=received + lag_us,
            error=rng.random() < self.shape.rest_error_rate,
            unlisted=rng.random() < self.shape.unlisted_token_rate,
        )
        self.next_checkpoint += 1
        self.last_checkpoint_us = received
        self.pending.append(cp)
        return cp

    def _advance_rest(self, t_us: int) -> None:
        """Before the venue changes at t_us: snapshot checkpoints that look at an earlier time, write ready rows."""
        self._schedule(t_us)
        for cp in self.pending:
            if cp.summaries is None and cp.snapshot_us < t_us:
                cp.summaries = self._summaries()
        while self.pending and self.pending[0].summaries is not None and self.pending[0].received_us < t_us:
            self._rest_write(self.pending.pop(0))

    def _finish_rest(self) -> None:
        end = self.last_written_us
        while self.start_us + self.next_checkpoint * self.rest_interval_us <= end:
            self._schedule_one()
        for cp in self.pending:
            if cp.received_us > end:
                break
            if cp.summaries is None:
                cp.summaries = self._summaries()
            self._rest_write(cp)
        self.pending.clear()

    # -- payloads ---------------------------------------------------------------------------------

    def _new_hashes(self, m: _Market, ts_ms: int) -> None:
        self.change_counter += 1
        n = self.change_counter
        m.hash_yes = _sha1(f"{self.seed}:{n}:{m.yes_id}")
        m.hash_no = _sha1(f"{self.seed}:{n}:{m.no_id}")
        m.ts_yes = m.ts_no = ts_ms

    def _book_obj(self, m: _Market, yes: bool, opening: bool) -> dict[str, Any]:
        bids, asks = m.levels_yes() if yes else m.levels_no()
        token = m.yes_id if yes else m.no_id
        ts = str(m.ts_yes if yes else m.ts_no)
        h = m.hash_yes if yes else m.hash_no
        with_type = not (self.shape.book_without_event_type_rate and self.rng.random() < self.shape.book_without_event_type_rate)
        if opening:
            obj: dict[str, Any] = {"market": m.condition_id, "asset_id": token, "timestamp": ts, "hash": h,
                                   "bids": bids, "asks": asks, "tick_size": m.tick}
            if with_type:
                obj["event_type"] = "book"
            obj["last_trade_price"] = _PRICE[m.ltp if yes else 100 - m.ltp]
        else:
            obj = {"market": m.condition_id, "asset_id": token, "bids": bids, "asks": asks, "hash": h, "timestamp": ts}
            if with_type:
                obj["event_type"] = "book"
        return obj

    def _change_entries(self, m: _Market, bid_side: bool, price: int, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Entries (YES, NO) for the YES level (side, price) having become size."""
        size_s = _size_str(size) if size else "0"
        bb, ba = m.best_bid(), m.best_ask()
        yes = {"asset_id": m.yes_id, "price": _PRICE[price], "size": size_s, "side": "BUY" if bid_side else "SELL",
               "hash": m.hash_yes, "best_bid": _PRICE[bb], "best_ask": _PRICE[ba]}
        no = {"asset_id": m.no_id, "price": _PRICE[100 - price], "size": size_s, "side": "SELL" if bid_side else "BUY",
              "hash": m.hash_no, "best_bid": _PRICE[100 - ba], "best_ask": _PRICE[100 - bb]}
        return yes, no

    def _set_level(self, m: _Market, bid_side: bool, price: int, size: int, ts_ms: int) -> None:
        book = m.bids if bid_side else m.asks
        if size:
            book[price] = size
        else:
            book.pop(price, None)
        self._new_hashes(m, ts_ms)

    def _choose_change(self, m: _Market, force_mid: bool) -> tuple[bool, int, int]:
        """Pick a venue change of the YES book: (bid side?, price, new size; 0 removes)."""
        rng = self.rng
        target = max(self.shape.levels, 3)
        bid_side = rng.random() < 0.5
        kind = "mid" if force_mid else None
        if kind is None:
            r = rng.random()
            kind = ("deep" if r < 0.87 else "top" if r < 0.95 else "mid" if r < 0.96
                    else "move" if r < 0.985 else "depth")
        if kind == "move":
            bb, ba = m.best_bid(), m.best_ask()
            mid = (bb + ba) / 2
            up = rng.random() < min(0.9, max(0.1, 0.5 + (m.mid0 - mid) * 0.05))
            spread = ba - bb
            improve = spread >= 3 or (spread == 2 and rng.random() < 0.5)
            if up:
                if improve:
                    return True, bb + 1, _draw_size(rng)
                if len(m.asks) > 3:
                    return False, ba, 0
            else:
                if improve:
                    return False, ba - 1, _draw_size(rng)
                if len(m.bids) > 3:
                    return True, bb, 0
            kind = "top"
        book = m.bids if bid_side else m.asks
        ranked = sorted(book, reverse=bid_side)  # best first
        if kind == "depth":
            if len(ranked) < target or (len(ranked) == target and rng.random() < 0.5):
                worst = ranked[-1]
                price = worst - 1 if bid_side else worst + 1
                if 1 <= price <= _MAX_CENT:
                    return bid_side, price, _draw_size(rng)
                kind = "deep"
            elif len(ranked) > 12:
                return bid_side, ranked[rng.randrange(10, len(ranked))], 0
            else:
                kind = "top"
        if kind == "deep" and len(ranked) > 10:
            price = ranked[rng.randrange(10, len(ranked))]
        elif kind == "mid" and len(ranked) > 3:
            price = ranked[rng.randrange(3, min(10, len(ranked)))]
        else:
            r = rng.random()
            rank = 0 if r < 0.6 else 1 if r < 0.85 else 2
            price = ranked[min(rank, len(ranked) - 1)]
        return bid_side, price, _draw_size(rng)

    def _price_change_step(self, t_us: int) -> list[tuple[int, bytes]]:
        rng = self.rng
        shape = self.shape
        m = self.markets[rng.randrange(len(self.markets))]
        legacy = shape.legacy_price_change_fraction and rng.random() < shape.legacy_price_change_fraction
        dropped = [rng.random() < shape.drop_rate for _ in range(2 if legacy else 1)]
        # A lost frame is, more often than its share, a size update deep in the top 10: the
        # divergence that no later websocket change explains.
        force_mid = dropped[0] and rng.random() < 0.4
        bid_side, price, size = self._choose_change(m, force_mid)
        ts_ms = t_us // 1000 - 35
        self._set_level(m, bid_side, price, size, ts_ms)
        yes, no = self._change_entries(m, bid_side, price, size)
        out: list[tuple[int, bytes]] = []
        if legacy:
            for entry, token, h, drop in ((yes, m.yes_id, m.hash_yes, dropped[0]), (no, m.no_id, m.hash_no, dropped[1])):
                if drop:
                    continue
                out.append((t_us, orjson.dumps({
                    "asset_id": token,
                    "changes": [{"price": entry["price"], "side": entry["side"], "size": entry["size"]}],
                    "event_type": "price_change", "market": m.condition_id, "timestamp": str(ts_ms), "hash": h,
                })))
        elif not dropped[0]:
            pair = [yes, no] if rng.random() < 0.5 else [no, yes]
            out.append((t_us, orjson.dumps({
                "market": m.condition_id, "price_changes": pair, "timestamp": str(ts_ms), "event_type": "price_change",
            })))
        return out

    def _trade_step(self, t_us: int) -> list[tuple[int, bytes]]:
        """A trade: the best level shrinks or goes, last_trade_price, then a full book per token."""
        rng = self.rng
        m = self.markets[rng.randrange(len(self.markets))]
        buy = rng.random() < 0.5  # aggressor buys YES: takes the best ask
        book = m.asks if buy else m.bids
        price = min(book) if buy else max(book)
        old = book[price]
        if rng.random() < 0.35 and len(book) > 3:
            new = 0
        else:
            new = max(1, int(old * rng.uniform(0.2, 0.95)))
        taken = old - new
        ts_ms = t_us // 1000 - 35
        self._set_level(m, not buy, price, new, ts_ms)
        m.ltp = price
        yes, no = self._change_entries(m, not buy, price, new)
        out: list[tuple[int, bytes]] = []
        if rng.random() >= self.shape.drop_rate:
            pair = [yes, no] if rng.random() < 0.5 else [no, yes]
            out.append((t_us, orjson.dumps({
                "market": m.condition_id, "price_changes": pair, "timestamp": str(ts_ms), "event_type": "price_change",
            })))
        t = t_us + rng.randint(100, 3000)
        yes_trade = rng.random() < 0.5
        out.append((t, orjson.dumps({
            "market": m.condition_id, "asset_id": m.yes_id if yes_trade else m.no_id,
            "price": _PRICE[price if yes_trade else 100 - price], "size": _size_str(max(taken, 1)),
            "fee_rate_bps": "0", "side": ("BUY" if buy else "SELL") if yes_trade else ("SELL" if buy else "BUY"),
            "timestamp": str(ts_ms + 10), "event_type": "last_trade_price",
            "transaction_hash": "0x" + _sha1(f"tx:{self.seed}:{self.change_counter}") + _sha1(f"tx2:{self.change_counter}")[:24],
        })))
        for yes_book in (True, False):
            t += rng.randint(0, 2000)
            if rng.random() < self.shape.drop_rate:
                continue
            out.append((t, orjson.dumps(self._book_obj(m, yes_book, opening=False))))
        return out

    def _extra_step(self, t_us: int) -> list[tuple[int, bytes]]:
        rng = self.rng
        m = self.markets[rng.randrange(len(self.markets))]
        yes = rng.random() < 0.5
        token = m.yes_id if yes else m.no_id
        ts = str(t_us // 1000 - 35)
        r = rng.random()
        if r < 0.4:
            bb, ba = m.best_bid(), m.best_ask()
            if not yes:
                bb, ba = 100 - ba, 100 - bb
            obj: dict[str, Any] = {"market": m.condition_id, "asset_id": token, "best_bid": _PRICE[bb],
                                   "best_ask": _PRICE[ba], "spread": _PRICE[ba - bb], "timestamp": ts,
                                   "event_type": "best_bid_ask"}
        elif r < 0.75:
            p = m.ltp if yes else 100 - m.ltp
            obj = {"market": m.condition_id, "asset_id": token, "price": _PRICE[p],
                   "size": _size_str(_draw_size(rng) // 10 + 1), "fee_rate_bps": "0",
                   "side": "BUY" if rng.random() < 0.5 else "SELL", "timestamp": ts, "event_type": "last_trade_price"}
        elif r < 0.85:
            old = m.tick
            m.tick = "0.001" if old == "0.01" else "0.01"
            obj = {"event_type": "tick_size_change", "asset_id": token, "market": m.condition_id,
                   "old_tick_size": old, "new_tick_size": m.tick, "timestamp": ts}
        else:
            cid = "0x%064x" % rng.getrandbits(256)
            ident = rng.randrange(1_000_000, 9_999_999)
            obj = {"id": str(ident), "question": f"Will unrelated event {ident} happen?", "market": cid,
                   "slug": f"unrelated-event-{ident}", "description": "A market this capture does not follow.",
                   "assets_ids": [str(rng.randrange(10**76, 10**77)), str(rng.randrange(10**76, 10**77))],
                   "outcomes": ["Yes", "No"], "event_message": None, "timestamp": ts, "event_type": "new_market"}
        return [(t_us, orjson.dumps(obj))]

    def _subscription(self, t_us: int) -> list[tuple[int, bytes]]:
        books = []
        for m in self.markets:
            books.append(self._book_obj(m, True, opening=True))
            books.append(self._book_obj(m, False, opening=True))
        self.lines_since_reconnect = 0
        return [(t_us, orjson.dumps(books))]

    # -- main loop ---------------------------------------------------------------------------------

    def run(self) -> Capture:
        """Write every line of the capture, then close its files; returns what was written.

        Cost: O(levels) a line, O(markets x levels) a subscription or REST row; raises OSError (writes).
        """
        shape = self.shape
        rng = self.rng
        rate = shape.messages_per_second
        try:
            first = True
            while self.ws_total < shape.ws_lines:
                if first:
                    t = self.start_us
                else:
                    t = max(self.now_us, self.last_written_us) + max(1, int(rng.expovariate(rate) * 1_000_000))
                self.now_us = t
                self._advance_rest(t)
                lines: list[tuple[int, bytes | None]]
                r = rng.random()
                if first or (shape.reconnect_every and self.lines_since_reconnect >= shape.reconnect_every):
                    lines = list(self._subscription(t))
                    first = False
                elif r < shape.pong_rate:
                    lines = [(t, None)]
                elif (r := r - shape.pong_rate) < shape.empty_frame_rate:
                    lines = [(t, b"[]")]
                elif (r := r - shape.empty_frame_rate) < shape.extra_event_rate:
                    lines = list(self._extra_step(t))
                elif (r := r - shape.extra_event_rate) < shape.trade_rate:
                    lines = list(self._trade_step(t))
                else:
                    lines = list(self._price_change_step(t))
                # Exact duplicates follow the step's own lines, so a re-applied change is never stale.
                dups: list[bytes] = []
                for t_line, payload in lines:
                    if self.ws_total >= shape.ws_lines:
                        break
                    self._ws_row(t_line, payload)
                    if payload is not None and shape.duplicate_rate and rng.random() < shape.duplicate_rate:
                        dups.append(payload)
                for payload in dups:
                    if self.ws_total >= shape.ws_lines:
                        break
                    self._ws_row(self.last_written_us + rng.randint(0, 120_000), payload)
            self._finish_rest()
            self.ws_writer.close()
            self.rest_writer.close()
            # Every named file exists, even when the capture was too short to reach it.
            for path in self.ws_paths[self.ws_index + 1:] + self.rest_paths[self.rest_index + 1:]:
                self.ws_writer = _LineWriter(path, shape.gzip)  # (held there: a failure aborts it below)
                self.ws_writer.close()
        except BaseException:  # (an interrupt, a full disk): no unfinished file under a capture's name
            self.ws_writer.abort()
            self.rest_writer.abort()
            raise
        return Capture(
            manifest_10b=self.out_dir / "manifest_10b.json",
            ws_files=list(self.ws_paths),
            rest_files=list(self.rest_paths),
            ws_lines=self.ws_total,
            rest_lines=self.rest_total,
            token_ids=list(self.token_ids),
        )


def _manifest_path(path: Path, path_base: Path | None) -> str:
    if path_base is None:
        return str(path)
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(path_base))).as_posix()


def generate_capture(out_dir: Path, shape: CaptureShape, seed: int, *, path_base: Path | None = None) -> Capture:
    """Write a synthetic capture (websocket files, REST files, 10B manifest) into out_dir.

    The venue keeps a true book per token (YES and NO mirrored, 0.01 grid); the recorder writes
    what the websocket delivered minus drops; the REST poller snapshots the true books at its
    receive time plus a random lag. Same shape and seed give byte-identical files.

    Each file is written beside its name and renamed into place when complete; the 10B manifest
    last, after removing any earlier one in ``out_dir``: an interrupted call leaves no manifest
    naming a partial capture.

    Cost: O(levels) per line; memory O(markets * levels), independent of ws_lines (every line is
    written as it is produced).

    :param out_dir: directory to write into (created if missing).
    :param shape: what the capture looks like.
    :param seed: seed of the only random generator used.
    :param path_base: when given, manifest paths are relative to it; else ``str(path)`` of each file.
    :return: the written files and counts.
    :raises ValueError: when the shape is inconsistent (no market or file, a non-positive
        ``messages_per_second`` or ``rest_interval_seconds``, ``rest_lag_ms`` low above high).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest goes first and comes back last: files of an interrupted generation are never
    # named by a 10B manifest (an earlier capture's, say), so nothing reads them as complete.
    (out_dir / "manifest_10b.json").unlink(missing_ok=True)
    gen = _Generator(out_dir, shape, seed)
    capture = gen.run()
    output_files = [{"path": _manifest_path(p, path_base), "kind": "raw_websocket_messages"} for p in capture.ws_files]
    output_files += [{"path": _manifest_path(p, path_base), "kind": "rest_books_checkpoints"} for p in capture.rest_files]
    manifest = {
        "schema_name": "checkpoint_010b_ws_raw_sample",
        "gate_status": "WS_RAW_SAMPLE_PASS",
        "markets": [
            {
                "condition_id": m.condition_id,
                "market_slug": m.slug,
                "question": m.question,
                "tokens": [{"token_id": m.yes_id, "outcome": "Yes"}, {"token_id": m.no_id, "outcome": "No"}],
            }
            for m in gen.markets
        ],
        "output_files": output_files,
    }
    write_atomic(capture.manifest_10b, orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return capture


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m streamer.synth OUT_DIR [--seed S] [--<shape-field> VALUE ...]``.

    Cost: as :func:`generate_capture`; raises SystemExit for bad arguments (ValueError, OSError: exit 2).
    """
    parser = argparse.ArgumentParser(prog="python -m streamer.synth", description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--path-base", type=Path, default=None,
                        help="write manifest paths relative to this directory (default: as given by OUT_DIR)")
    for field in dataclasses.fields(CaptureShape):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs=2, default=list(default), metavar=("LOW", "HIGH"))
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args(argv)
    values = {}
    for field in dataclasses.fields(CaptureShape):
        value = getattr(args, field.name)
        values[field.name] = tuple(value) if isinstance(field.default, tuple) else value
    try:
        capture = generate_capture(args.out_dir, CaptureShape(**values), args.seed, path_base=args.path_base)
    except (ValueError, OSError) as exc:
        print(f"streamer.synth: error: {exc}", file=sys.stderr)
        return 2
    print(capture.manifest_10b)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
