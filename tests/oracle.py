"""Reference reconstruction for tests: a plain, whole-file, obviously-correct reading of SPEC §2.5/§3 and the README decisions."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

__all__ = ("reconstruct", "read_lines", "parse_time", "canonical")

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


# ---------------------------------------------------------------------------------------------
# reading


def read_lines(path: Path) -> list[tuple[int, Any]]:
    """Every row of a JSONL file as (line number, object); blank, non-JSON and non-object lines are skipped.

    Line numbers count every physical line (\\n, \\r\\n or a lone \\r ends one).
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    pieces = _NEWLINE.split(data)
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the text after the last line end is not a line
    rows: list[tuple[int, Any]] = []
    for number, raw in enumerate(pieces, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError:
            continue
        if isinstance(value, dict):
            rows.append((number, value))
    return rows


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def parse_time(value: Any) -> datetime | None:
    """A receive time as an aware UTC datetime, or None when it is not a usable ISO-8601 string."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _decimal(value: Any) -> Decimal | None:
    """A finite decimal from a decimal string or a JSON number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def canonical(value: Decimal | None) -> str | None:
    """SPEC §2.3: Decimal.normalize() in fixed point ("0.5", "100", "0.005")."""
    if value is None:
        return None
    return format(value.normalize(), "f")


# ---------------------------------------------------------------------------------------------
# payloads


def _items(row: dict[str, Any]) -> list[dict[str, Any]]:
    payload = row.get("json")
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list):
        return [item for item in payload if isinstance(item, dict)]
    return []


def _item_type(item: dict[str, Any]) -> str | None:
    event_type = item.get("event_type")
    if isinstance(event_type, str) and event_type:
        return event_type
    if "asset_id" in item and (("bids" in item and "asks" in item) or ("buys" in item and "sells" in item)):
        return "book"
    return None


def _side_levels(obj: dict[str, Any], key: str, fallback: str) -> dict[Decimal, Decimal]:
    """One side of a book: bids/asks (or buys/sells when absent) as {price: size}, size-0 and bad levels dropped."""
    levels = obj[key] if key in obj else obj.get(fallback)
    side: dict[Decimal, Decimal] = {}
    if not isinstance(levels, list):
        return side
    for level in levels:
        if not isinstance(level, dict) or "price" not in level or "size" not in level:
            continue
        price = _decimal(level["price"])
        size = _decimal(level["size"])
        if price is None or size is None or size < 0:
            continue
        if size == 0:
            side.pop(price, None)  # the last occurrence of a price wins, a zero one too
        else:
            side[price] = size
    return side


def _sides_are_lists(obj: dict[str, Any]) -> bool:
    """A book (or summary) is malformed, and skipped, unless both sides (bids/asks, else buys/sells) are lists."""
    return all(isinstance(obj[key] if key in obj else obj.get(fallback), list)
               for key, fallback in (("bids", "buys"), ("asks", "sells")))


def _book(obj: dict[str, Any]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return _side_levels(obj, "bids", "buys"), _side_levels(obj, "asks", "sells")


def _token(value: Any) -> str | None:
    return None if value is None else str(value)


def _changes(item: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """(token, entry) for every price_change entry of both forms."""
    out: list[tuple[str | None, Any]] = []
    entries = item.get("price_changes")
    if isinstance(entries, list):
        for entry in entries:
            out.append((_token(entry.get("asset_id")) if isinstance(entry, dict) else None, entry))
    entries = item.get("changes")
    if isinstance(entries, list):
        top = _token(item.get("asset_id"))
        for entry in entries:
            out.append((top, entry))
    return out


class _Books:
    """Books and applied-row bookkeeping, advanced one websocket row at a time."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        # token -> {"count", "first_line", "last_line", "first_seq", "last_seq", "received", "file"}
        self.applied: dict[str, dict[str, Any]] = {}

    def apply(self, file: str, line: int, row: dict[str, Any]) -> None:
        touched: list[str] = []
        for item in _items(row):
            kind = _item_type(item)
            if kind == "book":
                token = _token(item.get("asset_id"))
                if token is None or not _sides_are_lists(item):
                    continue
                self.books[token] = _book(item)
                touched.append(token)
            elif kind == "price_change":
                for token, entry in _changes(item):
                    if token is None or not isinstance(entry, dict):
                        continue
                    side = entry.get("side")
                    price = _decimal(entry.get("price"))
                    size = _decimal(entry.get("size"))
                    if side not in ("BUY", "SELL") or price is None or size is None or size < 0:
                        continue
                    if token not in self.books:
                        continue  # no book yet: ignored
                    levels = self.books[token][0 if side == "BUY" else 1]
                    if size == 0:
                        levels.pop(price, None)
                    else:
                        levels[price] = size
                    touched.append(token)
        for token in dict.fromkeys(touched):
            info = self.applied.get(token)
            if info is None:
                info = self.applied[token] = {
                    "count": 0,
                    "first_line": line,
                    "first_seq": row.get("global_message_sequence"),
                }
            info["count"] += 1
            info["last_line"] = line
            info["last_seq"] = row.get("global_message_sequence")
            info["received"] = row.get("received_at_utc")
            info["file"] = file


# ---------------------------------------------------------------------------------------------
# comparison


def _top(side: dict[Decimal, Decimal], bids: bool, n: int) -> list[Decimal]:
    return sorted(side, reverse=bids)[:n]


def _diff(rest: dict[Decimal, Decimal], local: dict[Decimal, Decimal], bids: bool, n: int) -> dict[str, Any]:
    rest_top = _top(rest, bids, n)
    local_top = _top(local, bids, n)
    return {
        "missing_prices": [canonical(p) for p in rest_top if p not in local_top],
        "extra_prices": [canonical(p) for p in local_top if p not in rest_top],
        "size_deltas": [
            {"price": canonical(p), "rest_size": canonical(rest[p]), "local_size": canonical(local[p])}
            for p in rest_top
            if p in local_top and rest[p] != local[p]
        ],
    }


def _best(side: dict[Decimal, Decimal], bids: bool) -> Decimal | None:
    if not side:
        return None
    return max(side) if bids else min(side)


def _compare(rest_book: tuple[dict, dict], local_book: tuple[dict, dict] | None, n: int) -> dict[str, Any]:
    rest_bids, rest_asks = rest_book
    local_bids, local_asks = local_book if local_book is not None else ({}, {})
    rb, lb = _best(rest_bids, True), _best(local_bids, True)
    ra, la = _best(rest_asks, False), _best(local_asks, False)
    rs = ra - rb if ra is not None and rb is not None else None
    ls = la - lb if la is not None and lb is not None else None
    return {
        "best_bid_match": rb == lb,
        "best_ask_match": ra == la,
        "spread_match": rs == ls,
        "level_count_match": len(rest_bids) == len(local_bids) and len(rest_asks) == len(local_asks),
        "rest_best_bid": canonical(rb),
        "local_best_bid": canonical(lb),
        "rest_best_ask": canonical(ra),
        "local_best_ask": canonical(la),
        "bid_top_n_diff": _diff(rest_bids, local_bids, True, n),
        "ask_top_n_diff": _diff(rest_asks, local_asks, False, n),
    }


def _rest_accepted(row: dict[str, Any]) -> bool:
    status = row.get("http_status")
    if status is not None and not (isinstance(status, int) and not isinstance(status, bool) and 200 <= status < 300):
        return False
    # a checkpoint without a usable receive time cannot be placed in the stream: rejected too
    return isinstance(row.get("json"), list) and parse_time(row.get("received_at_utc")) is not None


def _ws_row_usable(row: dict[str, Any]) -> bool:
    """A falsy received_at_utc counts as absent; any other non-string is a mistyped row (skipped)."""
    value = row.get("received_at_utc")
    return not value or isinstance(value, str)


# ---------------------------------------------------------------------------------------------
# the whole reconstruction


def reconstruct(manifest_10b: Path, top_n: int = 10) -> list[dict[str, Any]]:
    """Comparison rows (SPEC §2.5, key order as listed there) for the capture a 10B manifest names, in REST file order.

    For each REST row received at T the books are those after every websocket row (all files, in
    order) preceding the first websocket row whose receive time parses and is strictly after T.
    """
    manifest = json.loads(Path(manifest_10b).read_text(encoding="utf-8"))
    files = [f for f in manifest.get("output_files") or [] if isinstance(f, dict)]
    ws_names = [str(f["path"]) for f in files if f.get("kind") == "raw_websocket_messages"]
    rest_names = [str(f["path"]) for f in files if f.get("kind") == "rest_books_checkpoints"]

    listed: dict[str, dict[str, Any]] = {}
    for market in manifest.get("markets") or []:
        if not isinstance(market, dict):
            continue
        for token in market.get("tokens") or []:
            if isinstance(token, dict) and token.get("token_id") is not None:
                listed.setdefault(str(token["token_id"]), {
                    "market_slug": market.get("market_slug"),
                    "condition_id": market.get("condition_id"),
                    "outcome": token.get("outcome"),
                })

    ws_rows: list[tuple[str, int, dict[str, Any], datetime | None]] = []
    for name in ws_names:
        for line, row in read_lines(Path(name)):
            if _ws_row_usable(row):
                ws_rows.append((name, line, row, parse_time(row.get("received_at_utc"))))

    # Every REST row with the number of websocket rows (a prefix of the stream) it is compared after.
    checkpoints: list[tuple[str, int, dict[str, Any], int]] = []
    for name in rest_names:
        for line, row in read_lines(Path(name)):
            if not _rest_accepted(row):
                continue
            at = parse_time(row.get("received_at_utc"))
            prefix = next((i for i, (_f, _l, _r, t) in enumerate(ws_rows) if t is not None and t > at), len(ws_rows))
            checkpoints.append((name, line, row, prefix))

    # Replay the stream once, comparing each checkpoint when its prefix is reached.
    results: dict[int, list[dict[str, Any]]] = {}
    books = _Books()
    position = 0
    first_ws = ws_names[0] if ws_names else None
    for index in sorted(range(len(checkpoints)), key=lambda i: checkpoints[i][3]):
        name, line, row, prefix = checkpoints[index]
        while position < prefix:
            ws_file, ws_line, ws_row, _t = ws_rows[position]
            books.apply(ws_file, ws_line, ws_row)
            position += 1
        out: list[dict[str, Any]] = []
        for summary in row["json"]:
            if not isinstance(summary, dict) or summary.get("asset_id") is None or not _sides_are_lists(summary):
                continue
            token = str(summary["asset_id"])
            local = books.books.get(token)
            compared = _compare(_book(summary), local, top_n)
            info = books.applied.get(token)
            if local is None:
                status = "no_local_book"
            elif (
                compared["best_bid_match"] and compared["best_ask_match"] and compared["spread_match"]
                and compared["level_count_match"]
                and not any(compared[d][k] for d in ("bid_top_n_diff", "ask_top_n_diff")
                            for k in ("missing_prices", "extra_prices", "size_deltas"))
            ):
                status = "match"
            else:
                status = "divergent"
            market = listed.get(token) or {"market_slug": None, "condition_id": summary.get("market"), "outcome": None}
            out.append({
                "comparison_status": status,
                "token_id": token,
                "market": dict(market),
                "rest_checkpoint_sequence": row.get("checkpoint_sequence"),
                "rest_checkpoint_received_at_utc": row.get("received_at_utc"),
                "rest_checkpoint_file": name,
                "rest_checkpoint_line": line,
                "raw_websocket_file": info["file"] if info else first_ws,
                "applied_ws_message_count": info["count"] if info else 0,
                "applied_ws_line_span": [info["first_line"], info["last_line"]] if info else [None, None],
                "applied_ws_global_sequence_span": [info["first_seq"], info["last_seq"]] if info else [None, None],
                "last_applied_ws_line": info["last_line"] if info else None,
                "last_applied_ws_received_at_utc": info["received"] if info else None,
                "last_local_update_received_at_utc": info["received"] if info else None,
                "best_bid_match": compared["best_bid_match"],
                "best_ask_match": compared["best_ask_match"],
                "spread_match": compared["spread_match"],
                "level_count_match": compared["level_count_match"],
                "rest_best_bid": compared["rest_best_bid"],
                "local_best_bid": compared["local_best_bid"],
                "rest_best_ask": compared["rest_best_ask"],
                "local_best_ask": compared["local_best_ask"],
                "bid_top_n_diff": compared["bid_top_n_diff"],
                "ask_top_n_diff": compared["ask_top_n_diff"],
            })
        results[index] = out
    return [row for index in range(len(checkpoints)) for row in results[index]]
