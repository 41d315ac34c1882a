"""Incremental output: ordered row streams with a spilling reorder buffer, atomic publication.

The divergence manifest holds two long arrays (``divergence_rows`` and
``raw_and_rest_row_references``) in comparison-line order, while results finish a little out of
order. :class:`OrderedSpool` takes records tagged with their sequence number in any order, writes
the in-order prefix straight to its output files, keeps a bounded buffer for the rest and spills
that buffer to sorted run files when it grows; :meth:`OrderedSpool.finish` merges the runs.
:class:`DivergenceManifestWriter` assembles the manifest from those streams and the aggregates,
written last, and publishes it atomically.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import stat
import struct
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import stops_held


_HEADER = struct.Struct("<QBIII")  # seq, skip flag, up to three field lengths
#: Compression level of the rows files (fast; the rows compress well anyway).
GZIP_LEVEL = 1


def gzip_compressor() -> Any:
    """A gzip stream compressor (no name, mtime 0) whose bytes depend only on the data.

    Always the standard zlib, never ISA-L: ISA-L gave different bytes for the same rows on
    another machine (CI), and outputs promise one sha256 per content. The cost is small beside a
    run (``benchmarks/README.md``, "output compression").

    Cost: O(1). Raises nothing.
    """
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)


def fsync_directory(path: Path) -> None:
    """Flush a directory entry (after a rename) where the platform allows it.

    Cost: one open and one fsync; raises nothing (an OSError from the open or fsync is ignored).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """This process's umask (read by setting it back at once: there is no other way). Cost: O(1)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once, at import (before any thread): what an output's mode is masked with.
_UMASK = _umask()


class AtomicFile:
    """A file written under a temporary name beside ``path`` and renamed over it on commit.

    Use as a context manager: on a clean exit the data is flushed, fsynced and renamed into place;
    on an exception the temporary file is removed and ``path`` is untouched. A ``path`` that is
    a device or a pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written straight into: renaming
    over it would replace the node with a plain file.

    Cost: one extra rename and two fsyncs per file.
    """

    def __init__(self, path: Path, mode: str = "wb") -> None:
        self.path = Path(path)
        self.temp = self.path  # (until the temporary exists: what a failure names)
        self._direct = _is_special(self.path)
        if self._direct:
            try:
                self.handle = open(self.path, mode)
            except OSError as exc:
                raise self.named(exc) from None
            self._closed = False
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._closed = True  # (nothing to drop yet)
        try:
            with stops_held():  # made and kept in one step: a stop is raised after, and dropped below
                fd, name = tempfile.mkstemp(prefix=f".{_shortened(self.path.name)}.", suffix=".tmp",
                                            dir=self.path.parent)
                self.temp = Path(name)
                self.handle: IO[Any] = os.fdopen(fd, mode)
                self._closed = False
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise self.named(exc) from None
            raise
        try:  # mkstemp makes it 0600; the output gets the mode open() would give it (0666 less the umask)
            os.fchmod(fd, 0o666 & ~_UMASK)
        except OSError:
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
            if isinstance(exc, OSError):
                raise self.named(exc) from None

    def named(self, exc: OSError) -> OSError:
        """``exc`` as the user should read it: naming the output, not its temporary file (a failed
        write names no file at all). An error about another file is left as it is. Cost: O(1)."""
        if exc.filename is not None and exc.filename not in (str(self.temp), str(self.path)):
            return exc
        return OSError(exc.errno, exc.strerror or str(exc), str(self.path))

    def commit(self) -> None:
        """Flush, fsync and rename into place.

        Cost: a flush, two fsyncs and a rename; raises OSError (naming ``path``) when one fails,
        after removing the temporary file (``path`` is then as it was). A second call is a no-op.
        """
        if self._closed:
            return
        if self._direct:
            self._closed = True
            try:
                self.handle.close()
            except OSError as exc:
                raise self.named(exc) from None
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.temp, self.path)
        except BaseException as exc:
            self.abort()  # (a full disk must not leave the temporary file beside the output)
            if isinstance(exc, OSError):
                raise self.named(exc) from None
            raise
        self._closed = True
        fsync_directory(self.path.parent)

    def abort(self) -> None:
        """Drop the temporary file; the destination is left as it was.

        Cost: O(1); raises nothing (a close that cannot flush loses only the temporary's data).
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.handle.close()
        except OSError:
            pass
        if self._direct:  # (the node stays: what was written to it is gone with the stream)
            return
        try:
            self.temp.unlink()
        except OSError:  # (already gone, or a directory that refuses: nothing more to do)
            pass

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(f"AtomicFile {self.path} collected while open; dropping it", ResourceWarning,
                          stacklevel=1)
            self.abort()


def _is_special(path: Path) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a directory (a device, a FIFO). Cost: one stat."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


#: Bytes of an output's name kept in its temporary file's name (NAME_MAX is 255 on common file systems).
_TEMP_NAME_BYTES = 200


def _shortened(name: str) -> str:
    """``name``, cut so that its temporary file's name stays within NAME_MAX. Cost: O(len(name))."""
    while len(os.fsencode(name)) > _TEMP_NAME_BYTES:
        name = name[:-1]
    return name


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Cost: O(len(data)) plus two fsyncs; raises OSError when the file cannot be made, written or renamed.
    """
    with AtomicFile(path) as out:
        out.handle.write(data)


def write_record(handle: IO[bytes], seq: int, fields: tuple[bytes, ...]) -> None:
    """Append one ``(seq, fields)`` record (at most 3 fields; none is a skip) to a binary file.

    Cost: O(field bytes); raises OSError from the write, struct.error for > 3 fields or one >= 4 GiB.
    """
    handle.write(_HEADER.pack(seq, 0 if fields else 1, *(len(f) for f in fields), *([0] * (3 - len(fields)))))
    for data in fields:
        handle.write(data)


def read_records(path: Path, width: int) -> Iterator[tuple[int, tuple[bytes, ...]]]:
    """The records :func:`write_record` appended to ``path``, in file order. Cost: O(file)."""
    with open(path, "rb") as handle:
        while True:
            header = handle.read(_HEADER.size)
            if not header:
                return
            seq, skip, *lengths = _HEADER.unpack(header)
            yield seq, () if skip else tuple(handle.read(n) for n in lengths[:width])


class OrderedSpool:
    """Records ``(seq, fields...)`` in, streams out in ``seq`` order (0, 1, 2, ... no gaps).

    Each record has ``width`` byte fields; ``sink(seq, fields)`` receives the records in order (a
    skip is never handed on). Records that arrive early wait in a heap of at most ``buffer_limit``
    records and ``byte_limit`` bytes of fields (a record of a large ``--context-limit`` is
    hundreds of KB); beyond either the heap is written to a sorted run file in ``spill_dir``.

    Cost: O(log b) per record in memory; spilled records are written and read once more.
    Memory: O(min(buffer_limit records, byte_limit + one record)), whatever the number of records.
    """

    #: bytes of fields held in the heap (a class default: a spool pickled before it existed holds 0)
    _held = 0
    _byte_limit = 16 << 20

    def __init__(self, sink: Any, width: int, spill_dir: Path, buffer_limit: int = 4096,
                 byte_limit: int = 16 << 20) -> None:
        self._sink = sink
        self._width = width
        self._spill_dir = spill_dir
        self._limit = buffer_limit
        self._byte_limit = byte_limit
        self._held = 0
        self._heap: list[tuple[int, tuple[bytes, ...]]] = []
        self._runs: list[Path] = []
        self.next_seq = 0
        self.spilled_records = 0

    @property
    def runs(self) -> list[Path]:
        """The spilled run files held now (each written whole, then never changed).

        Cost: O(runs). Raises nothing.
        """
        return list(self._runs)

    def relocate(self, spill_dir: Path) -> None:
        """Point at a copy of the spill directory (the run files keep their names). Cost: O(runs)."""
        self._spill_dir = Path(spill_dir)
        self._runs = [self._spill_dir / run.name for run in self._runs]

    def put(self, seq: int, fields: tuple[bytes, ...]) -> None:
        """Accept one record; write it (and any records it unblocks) when it is next in order.

        ``fields`` empty is a *skip*: the sequence number is taken, nothing is written.

        Cost: O(log b) amortized, plus the records it unblocks; raises what ``sink`` raises, OSError (spill).
        """
        if seq == self.next_seq:
            if fields:
                self._sink(seq, fields)
            self.next_seq += 1
            heap = self._heap
            while heap and heap[0][0] == self.next_seq:
                held = heapq.heappop(heap)[1]
                self._held -= sum(map(len, held))
                if held:
                    self._sink(self.next_seq, held)
                self.next_seq += 1
            return
        heapq.heappush(self._heap, (seq, fields))
        self._held += sum(map(len, fields))
        if len(self._heap) > self._limit or self._held > self._byte_limit:
            self._spill()

    def _spill(self) -> None:
        fd, name = tempfile.mkstemp(prefix="run-", suffix=".bin", dir=self._spill_dir)
        with os.fdopen(fd, "wb") as out:
            heap = self._heap
            while heap:
                write_record(out, *heapq.heappop(heap))
                self.spilled_records += 1
        self._held = 0
        self._runs.append(Path(name))

    def _check(self) -> None:
        """Assert the invariants (tests call it after each put): the heap is a heap of records
        after ``next_seq``, within both limits, and ``_held`` counts its bytes. Cost: O(heap)."""
        heap = self._heap
        assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap)))
        assert all(seq > self.next_seq for seq, _fields in heap)
        assert self._held == sum(len(field) for _seq, fields in heap for field in fields)
        assert len(heap) <= self._limit and self._held <= self._byte_limit

    def _read_run(self, path: Path) -> Iterator[tuple[int, tuple[bytes, ...]]]:
        return read_records(path, self._width)

    def finish(self, expected: int) -> None:
        """Merge everything held and write it in order; checks that ``expected`` records came.

        Cost: O(held records x log runs), each run read once; raises RuntimeError (below), OSError.

        :raises RuntimeError: when a sequence number is missing or repeated (a bug, never input).
        """
        sources: list[Any] = [self._read_run(run) for run in self._runs]
        sources.append(iter(sorted(self._heap)))
        self._heap = []
        self._held = 0
        for seq, fields in heapq.merge(*sources, key=lambda record: record[0]):
            if seq != self.next_seq:
                raise RuntimeError(f"output sequence broken: got {seq}, expected {self.next_seq}")
            if fields:
                self._sink(seq, fields)
            self.next_seq += 1
        for run in self._runs:
            run.unlink()
        self._runs = []
        if self.next_seq != expected:
            raise RuntimeError(f"output incomplete: {self.next_seq} of {expected} records")


def json_body(value: dict[str, Any]) -> str:
    """The members of a JSON object as ``indent=2`` text without the outer braces.

    Cost: O(size of ``value``); raises TypeError for a value json cannot serialize, ValueError for a cycle.
    """
    text = json.dumps(value, indent=2, sort_keys=True)  # ASCII: lone surrogates stay escaped
    return text[1:-1].strip("\n")


class GzipRowsWriter:
    """JSON rows to a gzip JSONL file, atomically, hashed and counted as they are written.

    The stream is deterministic (no name, mtime 0, a fixed level), so the same rows always give
    the same bytes and the same sha256, whichever command wrote them. Use as a context manager;
    :attr:`sha256`, :attr:`size` and :attr:`rows` are final after a clean exit.

    Cost: O(bytes written); memory O(the compressor's window).
    """

    def __init__(self, path: Path) -> None:
        self._file = AtomicFile(path)
        self._compressor = gzip_compressor()
        self._digest = hashlib.sha256()
        self.size = 0
        self.rows = 0
        self.sha256 = ""

    def __enter__(self) -> "GzipRowsWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._file.abort()
            if isinstance(exc, OSError):
                raise self._file.named(exc) from None

    def _emit(self, data: bytes) -> None:
        if data:
            self._file.handle.write(data)
            self._digest.update(data)
            self.size += len(data)

    def write(self, row: bytes) -> None:
        """Append one serialized row (without its newline).

        Cost: O(len(row)); raises OSError when the compressed bytes cannot be written.
        """
        self.rows += 1
        self._emit(self._compressor.compress(row + b"\n"))

    def commit(self) -> None:
        """Finish the gzip stream and publish the file.

        Cost: the compressor's tail plus :meth:`AtomicFile.commit`; raises OSError when either fails.
        """
        self._emit(self._compressor.flush())
        self.sha256 = self._digest.hexdigest()
        self._file.commit()


class OrderedRows:
    """Comparison rows in REST file order, some of them filled in later.

    A checkpoint that arrives after the websocket stream has passed its time (REST rows out of
    time order) reserves its rows' places (:meth:`reserve`); they are computed by a replay at the
    end and put in place (:meth:`write_at`). Rows after a reservation wait in an
    :class:`OrderedSpool` (bounded memory, spilled to ``spill_dir``). :attr:`rows` counts the
    places taken, so it is the comparison line of the row just written.

    Cost: O(1) per row in order; memory O(the spool's buffer).
    """

    def __init__(self, writer: "GzipRowsWriter", spill_dir: Path) -> None:
        self.writer = writer
        self._spool = OrderedSpool(lambda _seq, fields: writer.write(fields[0]), 1, spill_dir, buffer_limit=1024)
        self.rows = 0

    def write(self, row: bytes) -> None:
        """Append one row at the next place.

        Cost: O(log b) amortized, plus the rows it unblocks; raises OSError when a write or spill fails.
        """
        self._spool.put(self.rows, (row,))
        self.rows += 1

    def reserve(self, count: int) -> int:
        """Take ``count`` places for rows written later; returns the first (0-based).

        Cost: O(1). Raises nothing.
        """
        start = self.rows
        self.rows += count
        return start

    def write_at(self, place: int, row: bytes) -> None:
        """Fill a reserved place (not checked here: a wrong place fails :meth:`finish`).

        Cost: O(log b) amortized, plus the rows it unblocks; raises OSError when a write or spill fails.
        """
        self._spool.put(place, (row,))

    def finish(self) -> None:
        """Every place filled: hand the rest to the writer in order.

        Cost: O(held rows x log runs), each run read once; raises RuntimeError (below), OSError.

        :raises RuntimeError: when a reserved place was never filled (a bug, never input).
        """
        self._spool.finish(self.rows)
