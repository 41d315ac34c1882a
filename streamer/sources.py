"""Input decoding: gzip or plain by content, multi-member and truncated gzip, lines, sha256.

Every command reads its inputs through :func:`read_batches`, which reads a file once, front to
back, hashing the bytes as they pass, decompressing on a worker thread (the decompressor and
the hash release the GIL, so this overlaps with parsing on the main thread), and yielding lists
of complete lines. The building blocks (:class:`GzipMembers`, :class:`LineSplitter`) are also
used by ``follow`` to read files that are still growing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import stat
import threading
from pathlib import Path
from typing import IO, Iterator

from .decoders import GZIP_ERRORS, crc32, gzip_decompressobj
from .errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
READ_SIZE = 1 << 20
#: Upper bound on the bytes one decompress step may produce (highly compressible input).
INFLATE_STEP = 1 << 20
#: Compressed bytes per inflate call: what a corrupt stream can lose before its damage.
FEED_SLICE = 1 << 14
#: Longest gzip member header taken (RFC 1952 sets no bound on its name and comment).
MAX_HEADER = 1 << 20


class GzipMembers:
    """A streaming decompressor for a sequence of gzip members (``cat a.gz b.gz``).

    Feed raw bytes with :meth:`feed`; it returns what they decompress to. :attr:`at_boundary` is
    true between members (a clean place for the stream to end). A decode failure is not raised:
    :attr:`error` is set and later input is ignored, so callers keep the lines decoded so far.
    Headers and trailers are read here and the deflate data inflated raw, so that a member whose
    CRC or length check fails still gives all it inflated (a damaged trailer must not cost the
    member's last lines); the failed check is the :attr:`error`.

    Cost: O(bytes fed); memory O(:data:`INFLATE_STEP`) per call, whatever the ratio.
    """

    __slots__ = ("_inflater", "_in_trailer", "_pending", "_crc", "_size", "error", "at_boundary")

    def __init__(self) -> None:
        self._inflater = None  # inflating a member's deflate data (None: in a header or a trailer)
        self._in_trailer = False
        self._pending = b""  # the first bytes of a header or a trailer, waiting for the rest
        self._crc = 0  # of the member's text so far
        self._size = 0
        self.error: str | None = None
        self.at_boundary = True

    def feed(self, data: bytes) -> list[bytes]:
        """Decompress ``data``; returns the output pieces (possibly none).

        Cost: O(len(data) + output), all held at once; raises nothing (corrupt data sets :attr:`error`).
        """
        return list(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """Decompress ``data`` lazily, one piece of at most :data:`INFLATE_STEP` bytes at a time.

        A reader that hands each piece on before asking for the next holds one piece, however
        far ``data`` expands (a 1 MiB read of a repetitive file can inflate to 40 MiB).
        Iterate it to the end before feeding more. ``data`` is inflated in slices of
        :data:`FEED_SLICE` bytes, so that corrupt deflate data loses at most the text of one slice
        before the damage (an inflater that fails keeps none of that call's output).

        Cost: O(len(data) + output); raises nothing (corrupt data sets :attr:`error` and ends it).
        """
        for start in range(0, len(data), FEED_SLICE):
            if self.error is not None:
                return
            yield from self._inflate(data[start:start + FEED_SLICE])

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        while data and self.error is None:
            inflater = self._inflater
            if inflater is not None:
                try:
                    piece = inflater.decompress(data, INFLATE_STEP)
                    while piece:
                        self._crc = crc32(piece, self._crc)
                        self._size += len(piece)
                        yield piece
                        if not inflater.unconsumed_tail:
                            break
                        piece = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
                except GZIP_ERRORS as exc:
                    self.error = f"corrupt gzip data ({exc})"
                    return
                data = b""
                if inflater.eof:
                    data = inflater.unused_data
                    self._inflater = None
                    self._in_trailer = True
                continue
            data = self._pending + data
            self._pending = b""
            if self._in_trailer:  # CRC-32 and length of the member's text
                if len(data) < 8:
                    self._pending = data
                    return
                if int.from_bytes(data[:4], "little") != self._crc:
                    self.error = "corrupt gzip data (CRC check failed: the member's text was used, the rest not)"
                elif int.from_bytes(data[4:8], "little") != self._size & 0xFFFFFFFF:
                    self.error = "corrupt gzip data (length check failed: the member's text was used, the rest not)"
                else:
                    self._in_trailer = False
                    self.at_boundary = True
                data = data[8:]
                continue
            if self.at_boundary:
                data = data.lstrip(b"\0")  # zeros padding a member, as Python's gzip (the reference's) skips them
                if not data:
                    return
            try:  # a header
                length = _header_length(data)
            except ValueError as exc:
                self.error = f"corrupt gzip data ({exc})"
                return
            self.at_boundary = False
            if length is None:
                if len(data) > MAX_HEADER:  # a name or comment that never ends: garbage
                    self.error = "corrupt gzip data (a header longer than 1 MiB)"
                    return
                self._pending = data
                return
            self._inflater = gzip_decompressobj(-15)
            self._crc = self._size = 0
            data = data[length:]

    def state(self) -> dict[str, object]:
        """Describe the stream for a report: ended cleanly, truncated, or corrupt.

        Cost: O(1). Raises nothing.
        """
        return {"at_boundary": self.at_boundary, "error": self.error}


_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 2, 4, 8, 16


def _header_length(data: bytes) -> int | None:
    """The length of the gzip member header (RFC 1952) at the start of ``data``; None while incomplete.

    Cost: O(header). :raises ValueError: when ``data`` does not start with gzip's magic and method.
    """
    if data[:2] != GZIP_MAGIC[:len(data)]:
        raise ValueError("not a gzip header")
    if len(data) < 10:
        return None
    if data[2] != 8:
        raise ValueError("unknown compression method")
    flags = data[3]  # (reserved bits ignored, as Python's gzip, the reference's reader, ignores them)
    position = 10
    if flags & _FEXTRA:
        if len(data) < position + 2:
            return None
        position += 2 + int.from_bytes(data[position:position + 2], "little")
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            end = data.find(b"\0", position)
            if end < 0:
                return None
            position = end + 1
    if flags & _FHCRC:
        position += 2
    return position if len(data) >= position else None


class LineSplitter:
    """Split a byte stream into lines at ``\\n``, ``\\r\\n`` or a lone ``\\r``.

    These are the line ends of Python's universal newlines, which the reference analyzer reads
    with; a JSON text never holds a raw ``\\r``, so normalising it never changes a value.

    Cost: O(bytes); holds at most one partial line.
    """

    __slots__ = ("_parts", "_after_cr")

    def __init__(self) -> None:
        # The partial line, in pieces: a line longer than many feeds is joined once, not once per feed.
        self._parts: list[bytes] = []
        # The last byte fed was a \r, whose line is out: a \n next is its pair, not a line end.
        self._after_cr = False

    def feed(self, data: bytes) -> list[bytes]:
        """Return the lines completed by ``data`` (without their terminators), each as soon as its
        terminator is fed: a ``\\r`` ends its line at once (a ``\\n`` right after it ends nothing).

        Cost: O(len(data)), plus O(the partial line held) when ``data`` ends it; raises nothing.
        """
        if self._after_cr and data:
            self._after_cr = False
            if data[:1] == b"\n":
                data = data[1:]
        parts = self._parts
        if b"\n" not in data and b"\r" not in data:
            if data:
                parts.append(data)
            return []
        if parts:
            parts.append(data)
            data = b"".join(parts)
            parts.clear()
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        carry = lines.pop()
        if carry:
            parts.append(carry)
        return lines

    @property
    def pending(self) -> bytes:
        """The partial line held back (no terminator seen yet).

        Cost: O(the partial line). Raises nothing.
        """
        return b"".join(self._parts)

    def finish(self) -> bytes | None:
        """End of input: the final unterminated line, or None when there is none.

        Cost: O(the partial line held). Raises nothing.
        """
        carry = b"".join(self._parts)
        self._parts = []
        self._after_cr = False
        return carry or None


class InputStats:
    """What reading one input learned: identity, size, sha256, line count and how it ended."""

    __slots__ = (
        "path", "name", "kind", "size", "bytes_read", "uncompressed", "sha256", "compressed",
        "truncated", "lines", "hashed", "line_limit",
    )

    def __init__(self, path: Path, name: str, kind: str, hashed: bool = True) -> None:
        self.path = path
        self.name = name  #: the path as the manifest (or the command line) names it
        self.kind = kind
        #: False for a read after the first (:func:`streamer.batch.fresh_inputs`): ``sha256`` stays empty
        self.hashed = hashed
        self.size = 0
        self.bytes_read = 0
        self.uncompressed = 0
        self.sha256 = ""
        self.compressed = False
        self.truncated: str | None = None
        self.lines = 0
        #: Read no line past this one (``follow``'s reads at exit: a file may have grown since
        #: follow described it); None reads to the end.
        self.line_limit: int | None = None

    def artifact(self, kind: str | None = None) -> dict[str, object]:
        """The ``input_artifacts`` entry: path, kind, bytes on disk, sha256.

        Cost: O(len(name)). Raises nothing.
        """
        return {
            "path": Path(self.name).as_posix(),
            "kind": kind or self.kind,
            "bytes": self.size,
            "sha256": self.sha256,
        }


def open_regular(path: Path) -> IO[bytes]:
    """Open ``path`` for reading in binary, refusing what is not a regular file: a FIFO would block
    the open until a writer came, a device such as /dev/zero would never end.

    Cost: an open and a stat. :raises OSError: as :func:`open` (IsADirectoryError for a directory),
    or with the message "not a regular file".
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # (no wait for a FIFO's writer)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_readable(path: Path, name: str) -> None:
    """Fail early, before any output is written, when ``path`` cannot be opened for reading.

    Cost: one open and close; raises InputError (below).

    :raises InputError: when the file is missing, a directory, not a regular file, or unreadable.
    """
    try:
        with open_regular(path):
            pass
    except OSError as exc:
        raise unreadable(name, exc) from None


def unreadable(name: str, exc: OSError) -> InputError:
    """The one-line error for an input that cannot be read, whichever step found it.

    Cost: O(1). Raises nothing (it returns the error to raise).
    """
    reason = "it is a directory" if isinstance(exc, IsADirectoryError) else exc.strerror or exc
    return InputError(f"cannot read {name}: {reason}")


def _produce(path: Path, stats: InputStats, out: "queue.Queue[object]", stop: threading.Event,
             read_size: int) -> None:
    """Worker: read, hash, decompress and split ``path``; put line batches on ``out``."""
    try:
        digest = hashlib.sha256() if stats.hashed else _NO_DIGEST
        splitter = LineSplitter()
        with open_regular(path) as handle:
            stats.size = os.fstat(handle.fileno()).st_size
            first = handle.read(read_size)
            while 0 < len(first) < 2:  # the magic needs two bytes, whatever the read size
                more = handle.read(read_size)
                if not more:
                    break
                first += more
            # (a file of one byte, gzip's first: a gzip file cut short, reported as truncated)
            stats.compressed = first[:2] == GZIP_MAGIC or first == GZIP_MAGIC[:1]
            members = GzipMembers() if stats.compressed else None
            raw = first
            while raw and not stop.is_set():
                digest.update(raw)
                stats.bytes_read += len(raw)
                pieces = members.pieces(raw) if members is not None else (raw,)
                for piece in pieces:
                    stats.uncompressed += len(piece)
                    lines = splitter.feed(piece)
                    if lines:
                        out.put(lines)
                if members is not None and members.error is not None:
                    # Keep hashing the rest so the manifest names the whole file.
                    for rest in iter(lambda: handle.read(read_size), b""):
                        digest.update(rest)
                        stats.bytes_read += len(rest)
                    break
                raw = handle.read(read_size)
        stats.sha256 = digest.hexdigest()
        if members is not None and members.error is not None:
            stats.truncated = members.error
        elif members is not None and not members.at_boundary:
            stats.truncated = "gzip stream ends without its trailer (file still being written?)"
        last = splitter.finish()
        if last is not None:
            if stats.truncated is None:
                out.put([last])
            elif last.strip():
                stats.truncated += "; its last partial line was not used"
        out.put(None)
    except BaseException as exc:  # surfaced in the consumer's thread
        out.put(exc)


class _NoDigest:
    """A stand-in for sha256 when the caller does not need the hash (a helper's second read)."""

    def update(self, _data: bytes) -> None:
        """Ignore ``_data``. Cost: O(1). Raises nothing."""
        pass

    def hexdigest(self) -> str:
        """The empty string. Cost: O(1). Raises nothing."""
        return ""


_NO_DIGEST = _NoDigest()


def read_batches(path: Path, stats: InputStats, *, read_size: int = READ_SIZE) -> Iterator[list[bytes]]:
    """Yield the complete lines of ``path`` in batches, reading the file exactly once.

    Gzip or plain is decided by the first two bytes. ``stats`` is filled as the file is read
    (``sha256`` and ``truncated`` are final once the generator is exhausted). A truncated or
    corrupt gzip stream ends the lines early and sets ``stats.truncated``; it never raises.
    Errors surface during iteration.

    ``stats.hashed`` False leaves ``stats.sha256`` empty (a read after the first). Cost: O(file
    bytes); memory O(read_size + a few batches) (a bounded queue gives backpressure).

    :raises InputError: when the file cannot be opened or read.
    """
    out: "queue.Queue[object]" = queue.Queue(maxsize=4)
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(path, stats, out, stop, read_size),
                              name=f"read:{stats.name}", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                if isinstance(item, OSError):
                    raise unreadable(stats.name, item) from None
                raise item
            batch: list[bytes] = item  # type: ignore[assignment]
            stats.lines += len(batch)
            yield batch
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


#: Locations listed per (file, reason); the counts are always complete.
PROBLEM_LOCATIONS = 20


#: A websocket row whose ``received_at_utc`` is not a string: its events are skipped, but it is
#: still a websocket message in ``row_counts`` (the reference counts it, SPEC 4).
MISTYPED_RECEIVED_AT = "mistyped_received_at_utc"


class InputProblems:
    """Skipped lines and other input faults, counted by file and reason, with capped locations.

    Cost: O(1) per problem; memory O(files x reasons x :data:`PROBLEM_LOCATIONS`).
    """

    __slots__ = ("counts", "locations", "truncated", "notes")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.locations: dict[tuple[str, str], list[int]] = {}
        self.truncated: list[dict[str, str]] = []
        self.notes: dict[str, int] = {}

    def add(self, file: str, line: int, reason: str) -> None:
        """Record one skipped line (or row) of ``file``.

        Cost: O(1) amortized. Raises nothing.
        """
        key = (file, reason)
        count = self.counts.get(key, 0)
        self.counts[key] = count + 1
        if count < PROBLEM_LOCATIONS:
            self.locations.setdefault(key, []).append(line)

    def merge(self, other: "InputProblems") -> None:
        """Add ``other``'s skipped lines, truncations and notes to these.

        Cost: O(size of ``other``). Raises nothing.
        """
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
            # each side holds its first lines: the first of both are among them
            lines = sorted(self.locations.get(key, []) + other.locations.get(key, []))
            self.locations[key] = lines[:PROBLEM_LOCATIONS]
        self.truncated.extend(other.truncated)
        for name, amount in other.notes.items():
            self.note(name, amount)

    def count(self, reason: str | None = None, files: list[InputStats] | None = None) -> int:
        """Lines recorded under ``reason`` (any when None), in ``files`` (every file when None).

        Cost: O(files x reasons). Raises nothing.
        """
        names = None if files is None else {stats.name for stats in files}
        return sum(count for (file, why), count in self.counts.items()
                   if (reason is None or why == reason) and (names is None or file in names))

    def note(self, name: str, amount: int = 1) -> None:
        """Count something worth reporting that is not a skipped line.

        Cost: O(1) amortized. Raises nothing.
        """
        self.notes[name] = self.notes.get(name, 0) + amount

    def add_truncation(self, stats: InputStats) -> None:
        """Record how ``stats``'s input ended early, if it did. Cost: O(1) amortized. Raises nothing."""
        if stats.truncated:
            self.truncated.append({"file": Path(stats.name).as_posix(), "reason": stats.truncated})

    def as_json(self) -> dict[str, object]:
        """The manifest's ``input_problems`` value.

        Cost: O(k log k + locations + t log t) for k (file, reason) pairs and t truncated inputs.
        Raises nothing.
        """
        return {
            "skipped": [
                {"file": Path(file).as_posix(), "reason": reason, "count": count,
                 "lines": self.locations.get((file, reason), [])}
                for (file, reason), count in sorted(self.counts.items())
            ],
            "skipped_total": sum(self.counts.values()),
            "truncated_inputs": self._truncated_by_file(),
            "notes": dict(sorted(self.notes.items())),
        }

    def _truncated_by_file(self) -> list[dict[str, str]]:
        # by file, as "skipped": the order inputs are read in differs between commands (follow)
        return sorted(self.truncated, key=lambda item: (item["file"], item["reason"]))

    def messages(self) -> list[str]:
        """One stderr line per (file, reason) and per truncated input.

        Cost: O(k log k + locations + truncated inputs) for k (file, reason) pairs. Raises nothing.
        """
        lines = []
        for (file, reason), count in sorted(self.counts.items()):
            where = ", ".join(str(line) for line in self.locations.get((file, reason), []))
            more = f" (first {PROBLEM_LOCATIONS})" if count > PROBLEM_LOCATIONS else ""
            lines.append(f"streamer: skipped {count} line(s) of {file}: {reason}; lines{more} {where}")
        for item in self._truncated_by_file():
            lines.append(f"streamer: {item['file']}: {item['reason']}")
        return lines
