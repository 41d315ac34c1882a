"""Reading manifests (10B, 10C, 10BC, review, and streamer's own) with ijson, in one pass.

Manifests written by other tools can be large (long ``markets`` lists, row arrays); streamer
needs a few keys of each. :func:`read_manifest` streams the document with ijson, builds only the
keys asked for, and hashes the bytes as they pass, so a manifest is read once whatever its size.
:func:`iter_divergence_rows` streams the rows of a (possibly huge) divergence manifest back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator

import ijson

from .errors import InputError
from .sources import open_regular

KIND_WS = "raw_websocket_messages"
KIND_REST = "rest_books_checkpoints"
KIND_COMPARISON = "rest_comparison_rows"
#: Deepest nesting a manifest may have: Python's json (the reference's reader, and streamer's
#: writer for what it copies) fails at about 1,000 levels.
MAX_DEPTH = 900


class _HashingReader:
    """A binary file wrapper that hashes and counts what is read through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        """Read, hash and count up to ``size`` bytes. Cost: O(bytes read); raises OSError from the read."""
        data = self._handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) the rest of the file. Cost: O(bytes left); raises OSError from the read."""
        for chunk in iter(lambda: self.read(1 << 20), b""):
            pass


class Manifest:
    """The keys read from one manifest, and its identity (path as named, bytes, sha256)."""

    __slots__ = ("name", "path", "values", "size", "sha256")

    def __init__(self, name: str, path: Path, values: dict[str, Any], size: int, sha256: str) -> None:
        self.name = name
        self.path = path
        self.values = values
        self.size = size
        self.sha256 = sha256

    def get(self, key: str, default: Any = None) -> Any:
        """The value read for ``key``, or ``default``. Cost: O(1). Raises nothing."""
        return self.values.get(key, default)

    def artifact(self, kind: str) -> dict[str, Any]:
        """The ``input_artifacts`` entry of this manifest.

        Cost: O(len(name)). Raises nothing.
        """
        return {"path": Path(self.name).as_posix(), "kind": kind, "bytes": self.size, "sha256": self.sha256}

    def gate(self) -> Any:
        """The gate as the reference reads a review: gate_status, else review_gate, else status.

        Cost: O(1). Raises nothing.
        """
        return self.values.get("gate_status") or self.values.get("review_gate") or self.values.get("status")

    def files(self, kind: str) -> list[str]:
        """Paths of ``output_files`` entries of ``kind``, in order.

        Cost: O(entries); raises InputError (below).

        :raises InputError: when ``output_files`` or a matching entry is malformed (no path, a NUL in it).
        """
        entries = self.values.get("output_files")
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise InputError(f"manifest {self.name}: output_files is not a list")
        paths = []
        for entry in entries:
            if isinstance(entry, dict) and entry.get("kind") == kind:
                path = entry.get("path")
                if not isinstance(path, str) or not path:
                    raise InputError(f"manifest {self.name}: an output_files entry of kind {kind} has no path")
                if "\0" in path:  # no file system takes it; open() would raise ValueError
                    raise InputError(f"manifest {self.name}: an output_files path of kind {kind} holds a NUL character")
                paths.append(path)
        return paths


def read_manifest(name: str | os.PathLike[str], keys: tuple[str, ...]) -> Manifest:
    """Read the top-level ``keys`` of a JSON-object manifest, streaming, and hash the whole file.

    Cost: O(file bytes) time; memory O(the values of ``keys``).

    :raises InputError: when the file is missing, unreadable, not JSON, not a JSON object, or
        nested more than :data:`MAX_DEPTH` levels deep.
    """
    text = os.fspath(name)
    path = Path(text)
    wanted = set(keys)
    values: dict[str, Any] = {}
    try:
        with open_regular(path) as handle:
            reader = _HashingReader(handle)
            # basic_parse, not parse: parse builds each event's path, O(depth) per event, so a
            # deeply nested key that is not wanted would cost O(depth^2) memory.
            events = ijson.basic_parse(reader, use_float=True)
            first = next(events, None)
            if first is None or first[0] != "start_map":
                raise InputError(f"manifest {text} is not a JSON object")
            depth = 1  # containers open around the next event
            builder = None
            current = None
            for event, value in events:
                if builder is not None:
                    builder.event(event, value)
                    if builder.containers > MAX_DEPTH - depth:
                        raise InputError(f"manifest {text} nests more than {MAX_DEPTH} levels deep")
                    if builder.containers == 0:
                        values[current] = builder.value
                        builder = current = None
                    continue
                if event == "map_key":
                    if depth == 1 and value in wanted:
                        current = value
                        kind, start_value = next(events)
                        if kind in ("start_map", "start_array"):
                            builder = _Builder()
                            builder.event(kind, start_value)
                        else:
                            values[current] = start_value
                            current = None
                elif event in ("start_map", "start_array"):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise InputError(f"manifest {text} nests more than {MAX_DEPTH} levels deep")
                elif event in ("end_map", "end_array"):
                    depth -= 1
            reader.drain()
    except FileNotFoundError:
        raise InputError(f"cannot read manifest {text}: No such file or directory") from None
    except IsADirectoryError:
        raise InputError(f"cannot read manifest {text}: it is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read manifest {text}: {exc.strerror or exc}") from None
    except (ijson.JSONError, UnicodeDecodeError):
        # yajl refuses what Python's json reads (NaN, Infinity, integers beyond 64 bits): the
        # reference reads manifests with json, so such a manifest is read whole that way.
        return _read_manifest_whole(text, path, wanted)
    return Manifest(text, path, values, reader.size, reader.digest.hexdigest())


def _read_manifest_whole(text: str, path: Path, wanted: set[str]) -> Manifest:
    try:
        data = path.read_bytes()
    except OSError as exc:  # (gone or changed since the streaming read began)
        raise InputError(f"cannot read manifest {text}: {exc.strerror or exc}") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        what = "gzip-compressed data" if data[:2] == b"\x1f\x8b" else "not UTF-8 text"
        raise InputError(f"manifest {text} is not valid JSON (it is {what})") from None
    except ValueError as exc:  # json's message says where: "Expecting value: line 1 column 7 (char 6)"
        raise InputError(f"manifest {text} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"manifest {text} is not valid JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise InputError(f"manifest {text} is not a JSON object")
    values = {key: value for key, value in document.items() if key in wanted}
    return Manifest(text, path, values, len(data), hashlib.sha256(data).hexdigest())


class _Builder:
    """ijson's ObjectBuilder, counting open containers so the caller knows when a value ends."""

    def __init__(self) -> None:
        self._builder = ijson.ObjectBuilder()
        self.containers = 0

    def event(self, event: str, value: Any) -> None:
        """Add one parser event. Cost: O(1) amortized; raises nothing for events in parser order."""
        if event in ("start_map", "start_array"):
            self.containers += 1
        elif event in ("end_map", "end_array"):
            self.containers -= 1
        self._builder.event(event, value)

    @property
    def value(self) -> Any:
        """The value built so far (None before the first event). Cost: O(1). Raises nothing."""
        return self._builder.value


def iter_divergence_rows(path: Path, key: str = "divergence_rows") -> Iterator[dict[str, Any]]:
    """Stream the items of one array of a divergence manifest (``divergence_rows`` by default).

    Cost: O(file bytes); memory O(one row).
    """
    with open(path, "rb") as handle:
        yield from ijson.items(handle, f"{key}.item", use_float=True)


class MarketLabels(dict):  # type: ignore[type-arg]
    """``token_id -> labels``, with :attr:`notes` saying what of the ``markets`` list was left out."""

    notes: list[str]


def markets_by_token(manifest: Manifest) -> MarketLabels:
    """``token_id -> {"market_slug", "condition_id", "outcome"}`` from a 10B ``markets`` list.

    Malformed entries are left out (the list only labels rows), and said in the result's
    ``notes`` (one line each, for stderr). Cost: O(tokens). Raises nothing.
    """
    labels = MarketLabels()
    labels.notes = []
    markets = manifest.get("markets")
    if markets is None:  # (optional: rows are then unlabelled, as for unlisted tokens)
        return labels
    if not isinstance(markets, list):
        labels.notes.append(f"the 10B manifest's markets is not a list (a JSON {_json_type(markets)}): "
                            "no comparison row gets market labels")
        return labels
    left_out = 0
    for market in markets:
        if not isinstance(market, dict) or not isinstance(market.get("tokens"), list):
            left_out += 1
            continue
        for token in market["tokens"]:
            if isinstance(token, dict) and token.get("token_id") is not None:
                labels[str(token["token_id"])] = {
                    "market_slug": market.get("market_slug"),
                    "condition_id": market.get("condition_id"),
                    "outcome": token.get("outcome"),
                }
            else:
                left_out += 1
    if left_out:
        labels.notes.append(f"{left_out} entr{'y' if left_out == 1 else 'ies'} of the 10B manifest's markets "
                            "(a market without a tokens list, or a token without token_id) left out: rows of "
                            "their tokens get no market labels")
    return labels


def _json_type(value: Any) -> str:
    return {dict: "object", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "value")
