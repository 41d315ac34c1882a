"""Choose the JSON and gzip decoders once: the fastest available, overridable by environment.

``STREAMER_JSON`` (``orjson`` or ``json``) and ``STREAMER_GZIP`` (``isal`` or ``zlib``) force a
choice; otherwise the first importable of each list is used. ``benchmarks/README.md`` records the
measurements behind the order. Every decoder accepts exactly what the standard library accepts:
when orjson refuses a line that :func:`json.loads` takes (``NaN``, integers beyond 64 bits), the
standard parser decides, so the choice never changes what counts as valid input.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any, Callable

JSON_BACKENDS = ("orjson", "json")
GZIP_BACKENDS = ("isal", "zlib")


#: Lines the standard parser read after orjson refused them (NaN, Infinity, numbers beyond
#: float range). Once any was read, outputs are serialized with ``json`` (:func:`exact_output`),
#: which writes those values back as the reference does; orjson would write them as null.
_fallbacks = [0]


def exact_output() -> bool:
    """Whether values only the standard library writes faithfully may be in the data.

    Cost: O(1). Raises nothing.
    """
    return _fallbacks[0] > 0


def _stdlib_loads(line: bytes) -> Any:
    """Parse one line as the reference does: strict UTF-8, then :func:`json.loads`."""
    return json.loads(line.decode("utf-8"))


def _make_orjson_loads() -> Callable[[bytes], Any]:
    import orjson

    fast = orjson.loads
    error = orjson.JSONDecodeError

    def loads(line: bytes) -> Any:
        try:
            return fast(line)
        except error:
            value = _stdlib_loads(line)
            _fallbacks[0] += 1
            return value

    return loads


def _make_orjson_dumps() -> Callable[[Any], bytes]:
    import orjson

    fast = orjson.dumps

    def dumps(value: Any) -> bytes:
        try:
            return fast(value)
        except TypeError:  # integers beyond 64 bits, lone surrogates: what only json writes
            return _stdlib_dumps(value)

    return dumps


def _stdlib_dumps(value: Any) -> bytes:
    # ASCII escapes: a lone surrogate (valid JSON, "\\ud800") cannot be encoded as UTF-8
    return json.dumps(value, separators=(",", ":")).encode("ascii")


#: Serialize as the reference does, NaN and Infinity included (orjson would write null).
exact_dumps = _stdlib_dumps
#: Read back what :func:`exact_dumps` wrote, value for value.
exact_loads = _stdlib_loads


#: What is wrong with STREAMER_JSON / STREAMER_GZIP, one line each: the command line refuses to
#: run with them (exit 2) rather than fail at import with a traceback.
SETTING_ERRORS: list[str] = []


def _select(variable: str, choices: tuple[str, ...]) -> list[str]:
    forced = os.environ.get(variable)
    if forced:
        if forced not in choices:
            SETTING_ERRORS.append(f"{variable}={forced!r}: expected one of {', '.join(choices)}")
            return list(choices)
        return [forced]
    return list(choices)


def _unavailable(variable: str, fallback: str) -> str:
    SETTING_ERRORS.append(f"{variable}={os.environ.get(variable)!r}: not installed here")
    return fallback


def _pick_json() -> tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]:
    for name in _select("STREAMER_JSON", JSON_BACKENDS):
        if name == "orjson":
            try:
                return name, _make_orjson_loads(), _make_orjson_dumps()
            except ImportError:
                continue
        return "json", _stdlib_loads, _stdlib_dumps
    return _unavailable("STREAMER_JSON", "json"), _stdlib_loads, _stdlib_dumps


def _pick_gzip() -> tuple[str, Callable[..., Any]]:
    for name in _select("STREAMER_GZIP", GZIP_BACKENDS):
        if name == "isal":
            try:
                from isal import isal_zlib
            except ImportError:
                continue
            return name, isal_zlib.decompressobj
        return "zlib", zlib.decompressobj
    return _unavailable("STREAMER_GZIP", "zlib"), zlib.decompressobj


JSON_BACKEND, loads, dumps = _pick_json()


def fallback_loads(line: bytes) -> Any:
    """The standard parser, for a line the fast one refused (counted: see :func:`exact_output`).

    Cost: O(len(line)); raises ValueError (bad UTF-8 or JSON) or RecursionError (deep nesting).
    """
    value = _stdlib_loads(line)
    _fallbacks[0] += 1
    return value


#: orjson reads an integer literal beyond 64 bits as a float, which is then integral and at least this big.
_ROUNDED_FROM = float(2**63)


def holds_rounded_integer(value: Any) -> bool:
    """Whether a decoded value holds a float that may be an integer beyond 64 bits the fast parser rounded.

    Such a value reads exactly with :func:`fallback_loads` (a float literal as big reads the same).
    Cost: O(size of ``value``), iterative; raises nothing.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is float and abs(item) >= _ROUNDED_FROM and item.is_integer():
            return True
    return False


#: For hot loops that inline :func:`loads`: the fast parser, and what it raises on a line that
#: :func:`fallback_loads` must then decide.
if JSON_BACKEND == "orjson":
    import orjson as _orjson

    fast_loads: Callable[[bytes], Any] = _orjson.loads
    FAST_ERRORS: tuple[type[BaseException], ...] = (_orjson.JSONDecodeError,)
else:
    fast_loads = _stdlib_loads
    FAST_ERRORS = (ValueError, RecursionError)
GZIP_BACKEND, gzip_decompressobj = _pick_gzip()
#: CRC-32 of inflated text (gzip trailers), from the decompressor's library.
if GZIP_BACKEND == "isal":
    from isal.isal_zlib import crc32
else:
    crc32 = zlib.crc32
#: Errors a decompressor raises on corrupt data (both backends derive from zlib.error or their own).
try:
    from isal.isal_zlib import error as _isal_error

    GZIP_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _isal_error)
except ImportError:  # pragma: no cover - isal missing
    GZIP_ERRORS = (zlib.error,)
