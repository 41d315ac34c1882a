"""Following a recorder's rotating files: discovery, file identity, reading files that still grow.

One :class:`Tailer` follows one stream (the websocket files, or the REST files): the files its
glob matches, in name order (a recorder's rotated names sort by time), each read once, front to
back, the newest followed as it grows. It is synchronous and takes its clock as a parameter, so
the rules below are tested with a simulated recorder and a fake clock; :mod:`streamer.follow`
runs it in worker threads.

The rules (the README's "streamer follow" section states them for users):

- **Identity.** A file is its device and inode, checked against a *fingerprint* (the sha256 of
  its first :data:`FINGERPRINT_SIZE` bytes, or of all of them while it is shorter). A known
  identity under a new name is a rename: the file keeps its place and its cursor and is never
  read twice. A known inode whose first bytes changed is a new file (the inode was reused); when
  the known file was still waiting and the inode shows up under another name (or shorter), the
  known file was deleted before follow read it and is counted as vanished when reading reaches it,
  unless a copy of it is found then (see below). A new inode whose first
  :data:`FINGERPRINT_SIZE` bytes equal a known file's is a copy of it (``copytruncate``'s copy)
  and is ignored. A new gzip file whose *content* starts with a known
  file's first :data:`FINGERPRINT_SIZE` bytes is that file compressed after rotation (``gzip
  ws-0001.jsonl``): ignored when the original is being read or was read (an open file is read to
  its end even once unlinked), read in the original's place when the original was still waiting.
  For a file shorter than :data:`FINGERPRINT_SIZE` the name tells (``X.gz`` of a known ``X``) and
  the content confirms what is known of X's first bytes. A waiting file gone when reading reaches
  it is read from a copy of it if one is there: an ignored copy with its first bytes, or ``X.gz``.
  A copy ignored, then deleted, whose inode a new file takes, is told apart by its first bytes.
- **Order.** Files wait in a queue in name order and take their place in the stream (their
  sequence number, the ``file`` of the items) when reading reaches them; a new file whose name
  sorts before the newest known one joins the end of the queue anyway and is counted
  (``out_of_order_files``).
- **Reading.** Gzip or plain is decided by the first two bytes. A growing gzip file is read with
  a streaming decompressor; lines are split as ``streamer run`` splits them (``\\n``, ``\\r\\n``,
  lone ``\\r``); a partial line waits for its terminator. Every byte read is hashed.
- **Finishing.** A file is finished when a newer file exists and, gzip, it is at a member
  boundary (its trailer is written), or, plain (or corrupt, or gzip without a trailer), it has
  not grown for ``rotate_wait`` seconds. Its last unterminated line, if any, is then a line (as
  in ``run``). Bytes written to a file after it was finished are counted (``late_bytes``),
  never read.
- **Truncation.** When a file is shorter than what was read (``copytruncate``), the truncation
  is counted; if its first bytes changed, what was read ends that file and the new content is
  read from 0, next, as a new file of the stream; if they did not, reading waits until the file
  grows past the cursor again.
- **Watermark.** When the reader is at the end of the newest file right after a fresh stat, it
  reports :class:`CaughtUp`: every byte on disk at that time in a file that was not already
  finished has been delivered. Each batch of lines carries the time its bytes were known to be on
  disk (``seen``); :mod:`streamer.follow` compares the two to merge the streams by time.
- **Resume.** :meth:`Tailer.snapshot` saves the file table and the consumer's cursor (file and
  lines consumed); a Tailer built from it re-reads the cursor's file from its start (to rebuild
  the sha256 and, for gzip, the decompressor), skips the lines already consumed, and goes on.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
import stat as stat_module
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any, Callable

from .sources import GZIP_MAGIC, GzipMembers, LineSplitter, unreadable

#: Bytes of a file's start that identify its content.
FINGERPRINT_SIZE = 4096
#: Raw bytes per read call.
READ_SIZE = 1 << 16
#: Bytes (raw, or decompressed when more) one :meth:`Tailer.read` call reads: about that much
#: comes back, plus at most one read's expansion.
READ_BUDGET = 1 << 20
#: Lines per :class:`Lines` item at most.
BATCH_LINES = 1024
#: Bytes of lines per :class:`Lines` item at most (one longer line makes an item of its own).
BATCH_BYTES = 1 << 18
#: Events kept for :attr:`Tailer.events` (older ones are dropped; counters stay complete).
EVENT_LIMIT = 100

TRAILER_MISSING = "gzip stream ends without its trailer (file still being written?)"
PARTIAL_LINE_UNUSED = "; its last partial line was not used"

PENDING = "pending"
OPEN = "open"
FINISHED = "finished"


@dataclass(slots=True)
class Lines:
    """Consecutive complete lines of one file: ``lines[0]`` is physical line ``first``."""

    file: int  #: the file's sequence number in its stream
    first: int
    lines: list[bytes]
    seen: float  #: clock time at which these bytes were known to be on disk
    size: int = 0  #: bytes of the lines


@dataclass(slots=True)
class FileEnd:
    """A file is finished: every line of it has been delivered. Its identity for a manifest."""

    file: int
    name: str
    size: int  #: bytes read (and hashed)
    sha256: str | None  #: None when the file could not be read through (vanished, replaced)
    compressed: bool
    truncated: str | None  #: how the file ended early, as ``run`` reports it; None when clean
    lines: int  #: physical lines read


@dataclass(slots=True)
class CaughtUp:
    """Every byte on disk at clock time ``at`` in the stream's unfinished files has been delivered."""

    at: float


Item = Lines | FileEnd | CaughtUp


class FileEntry:
    """One file: identity, fingerprint, place in the stream and where discovery last saw it."""

    __slots__ = ("seq", "name", "dev", "ino", "fp_len", "fp_sha", "state", "size_seen", "changed_at",
                 "finished_size", "late", "skip")

    def __init__(self, name: str, dev: int, ino: int, size: int, now: float) -> None:
        self.seq: int | None = None  #: place in the stream, given when reading reaches the file
        self.name = name  #: the path as the glob matched it last
        self.dev = dev
        self.ino = ino
        self.fp_len = 0
        self.fp_sha = b""
        self.state = PENDING
        self.size_seen = size
        self.changed_at = now  #: clock time of the last size change seen (or of first sight)
        self.finished_size: int | None = None
        self.late = 0  #: bytes found after the file was finished
        self.skip = 0  #: lines consumed before a restart (skipped when the file is read again)

    def as_json(self) -> dict[str, Any]:
        """The entry as ``status.json`` shows it. Cost: O(1). Raises nothing."""
        return {"file": self.seq, "name": self.name, "state": self.state, "size": self.size_seen}

    def saved(self) -> dict[str, Any]:
        """The entry as :meth:`Tailer.snapshot` saves it. Cost: O(1). Raises nothing."""
        return {"seq": self.seq, "name": self.name, "dev": self.dev, "ino": self.ino, "fp_len": self.fp_len,
                "fp_sha": self.fp_sha, "finished_size": self.finished_size, "late": self.late, "skip": self.skip,
                "size_seen": self.size_seen}


class _Reader:
    """The open file being read: handle, hash, decompressor, line splitter and cursor."""

    __slots__ = ("entry", "handle", "raw_pos", "digest", "members", "compressed", "splitter", "lines",
                 "skip", "known_size", "known_at", "prefix", "shrunk")

    def __init__(self, entry: FileEntry, handle: IO[bytes], now: float) -> None:
        self.entry = entry
        self.handle = handle
        self.raw_pos = 0
        self.digest = hashlib.sha256()
        self.members: GzipMembers | None = None
        self.compressed: bool | None = None
        self.splitter = LineSplitter()
        self.lines = 0  #: physical lines split so far (delivered or skipped)
        self.skip = entry.skip  #: lines already consumed before a restart
        self.known_size = 0
        self.known_at = now
        self.prefix = b""  #: the first FINGERPRINT_SIZE bytes read
        self.shrunk = False  #: a truncation is being waited out

    def truncation(self) -> str | None:
        """How the file would end now: gzip error, :data:`TRAILER_MISSING`, or None (plain or clean).

        Cost: O(1). Raises nothing.
        """
        members = self.members
        if members is None:
            return None
        if members.error is not None:
            return members.error
        if not members.at_boundary:
            return TRAILER_MISSING
        return None


def _fingerprint(path: str, length: int = FINGERPRINT_SIZE, identity: tuple[int, int] | None = None) -> bytes | None:
    """A file's first ``length`` bytes (fewer when shorter); None when it cannot be read, or when
    ``identity`` (device, inode) is given and the name holds another file by now."""
    try:
        with open(path, "rb") as handle:
            if identity is not None:
                st = os.fstat(handle.fileno())
                if (st.st_dev, st.st_ino) != identity:
                    return None
            return handle.read(length)
    except OSError:
        return None


def _has_head(head: bytes | None, length: int, sha: bytes) -> bool:
    """Whether ``head`` (a file's first bytes, or None) is the ``length`` bytes whose sha256 is ``sha``."""
    return head is not None and len(head) == length and hashlib.sha256(head).digest() == sha


def _is_fingerprint(entry: FileEntry, head: bytes | None) -> bool:
    """Whether ``head`` (a file's first bytes, or None) is ``entry``'s fingerprint."""
    return _has_head(head, entry.fp_len, entry.fp_sha)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _identity(path: str) -> tuple[int, int] | None:
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _content_head(path: str, length: int = FINGERPRINT_SIZE, exact: bool = True) -> bytes | None:
    """The first ``length`` bytes of a gzip file's content, across members (fewer when it holds
    fewer and not ``exact``); None when it is not gzip, its start is corrupt, or (``exact``) it
    holds fewer yet."""
    out = b""
    try:
        with open(path, "rb") as handle:
            data = handle.read(READ_SIZE)
            if data[:2] != GZIP_MAGIC:
                return None
            inflater = zlib.decompressobj(31)
            while data and len(out) < length:
                out += inflater.decompress(data, length - len(out))
                if inflater.eof:  # the next member
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(31)
                elif inflater.unconsumed_tail:
                    data = inflater.unconsumed_tail
                else:
                    data = handle.read(READ_SIZE)
    except (OSError, zlib.error):
        return None
    return out if len(out) == length or not exact else None


class Tailer:
    """The files of one stream, discovered by glob and read in order as they grow.

    Call :meth:`scan` now and then (discovery) and :meth:`read` to get what is new. Both are
    safe to call from different threads. See the module docstring for the rules.

    Cost: a scan is O(matching files) stats plus one small read per new or renamed file; a read
    is O(bytes read); memory O(files) for the table plus one open file's buffers.

    :param pattern: glob of the stream's files (relative patterns give relative names).
    :param rotate_wait: seconds without growth after which a plain file with a newer file beside
        it is finished.
    :param clock: monotonic time in seconds.
    :param state: a :meth:`snapshot` to resume from.
    """

    def __init__(self, pattern: str, *, rotate_wait: float, clock: Callable[[], float] = time.monotonic,
                 read_size: int = READ_SIZE, read_budget: int = READ_BUDGET,
                 state: dict[str, Any] | None = None) -> None:
        self.pattern = pattern
        self.rotate_wait = rotate_wait
        self.clock = clock
        self.read_size = read_size
        self.read_budget = read_budget
        #: the files reading has reached, by sequence number
        self.entries: list[FileEntry] = []
        #: the files waiting to be read, in order
        self.queue: list[FileEntry] = []
        self._by_id: dict[tuple[int, int], FileEntry] = {}
        self._by_fingerprint: dict[bytes, FileEntry] = {}
        #: first-4-KiB fingerprints of waiting files found rewritten, by the file (see :meth:`_still`)
        self._rewritten: dict[bytes, FileEntry] = {}
        #: files never to read (copies of known files), by identity: (name, size, head length, head sha256)
        #: as last seen, so that a new file that takes a deleted copy's inode is told apart
        self._copies: dict[tuple[int, int], tuple[str, int, int, bytes]] = {}
        #: a file read while a gzip copy of it was ignored, by its place in the stream (seq) -> (the
        #: copy's name, the file's device and inode): read from the copy once the file is gone (after
        #: a restart inside it, and at exit). By place, not by name: a recorder reuses its live name.
        self.compressed_copies: dict[int, tuple[str, int, int]] = {}
        self._reader: _Reader | None = None
        self.counters: Counter[str] = Counter()
        self.events: list[str] = []
        self.last_scan: float | None = None
        self._last_caught_up: float | None = None
        self._lock = threading.Lock()
        if state is not None:
            self._restore(state)

    # -- discovery --------------------------------------------------------------------------------

    def scan(self) -> None:
        """Glob the pattern, follow renames, admit new files, notice late bytes. Thread-safe.

        Cost: O(files matched) stats and a sort, a 4 KiB read per new or renamed file. Raises nothing.
        """
        with self._lock:
            start = self.clock()
            new: list[tuple[str, os.stat_result]] = []
            for name in sorted(glob.glob(self.pattern)):
                try:
                    st = os.stat(name)
                except OSError:
                    continue
                if not stat_module.S_ISREG(st.st_mode):
                    continue
                key = (st.st_dev, st.st_ino)
                entry = self._by_id.get(key)
                if entry is not None and not self._still(entry, name, st):
                    gone = " (deleted before follow read it)" if entry.state == PENDING else ""
                    self._note(f"{entry.name}{gone}: inode reused by {name}; it is a new file")
                    del self._by_id[key]
                    entry = None
                if entry is None:
                    if not self._ignored(key, name, st):
                        new.append((name, st))
                    continue
                if entry.name != name:
                    self.counters["renames"] += 1
                    self._note(f"{entry.name} renamed to {name}")
                    entry.name = name
                if st.st_size != entry.size_seen:
                    entry.size_seen = st.st_size
                    entry.changed_at = start
                if entry.fp_len < min(st.st_size, FINGERPRINT_SIZE) and entry.state != FINISHED:
                    head = _fingerprint(name)  # (so that a copy of it is known as one, and a reused inode)
                    if head and len(head) > entry.fp_len and (
                            not entry.fp_len or _is_fingerprint(entry, head[:entry.fp_len])):
                        self._set_fingerprint(entry, head)
                if entry.state == FINISHED and entry.finished_size is not None \
                        and st.st_size > entry.finished_size + entry.late:
                    grown = st.st_size - entry.finished_size - entry.late
                    if not entry.late:
                        self.counters["late_files"] += 1
                    entry.late += grown
                    self.counters["late_bytes"] += grown
                    self._note(f"{name}: {grown} bytes written after it was finished (not read)")
            for name, st in new:
                if not self._compression_under_way(name):
                    self._admit(name, st, start)
            self.last_scan = start

    def _still(self, entry: FileEntry, name: str, st: os.stat_result) -> bool:
        """Whether a known inode still holds the known file (checked when its name or size changed).

        A finished file loses its identity here when its first bytes changed, or, finished empty,
        when its inode shows up under another name (reused by a new file). So does a file not
        opened yet that shows up under another name with other first bytes: it was deleted and
        the next file took its inode (ext4 reuses them); it is counted as vanished when reading
        reaches it (unless a copy of it is found then). A file not opened
        yet whose first bytes changed under its own name is still the same place in the stream:
        it is read as it is now (its fingerprint is dropped), unless part of it was consumed
        before a restart (then opening it tells); the file being read is watched by the reader
        itself.
        """
        if entry.state == OPEN:
            return True
        if name == entry.name and st.st_size >= entry.size_seen:
            return True
        renamed_waiting = name != entry.name and entry.state == PENDING
        if not entry.fp_len:  # (seen empty: nothing known of its bytes)
            if entry.state == FINISHED:  # (nothing was read of it: a new file is never a duplicate)
                return name == entry.name
            # Waiting, under another name: taken for a rename (a recorder renaming its live file
            # after a restart that saw it empty), which a deleted file whose inode the next file
            # took cannot be told from (README, "Known limits").
            return True
        same = _is_fingerprint(entry, _fingerprint(name, entry.fp_len))
        if same or entry.state == FINISHED or renamed_waiting:
            return same
        if not entry.skip:
            # Rewritten before any of it was read (copytruncate of a file still waiting, or its
            # name given to a new file in its inode): a copy of its old content, ignored so far or
            # appearing later, is read before it, in its place.
            if not self._read_ignored_copy_first(entry):
                self._rewritten[entry.fp_sha] = entry
            self._drop_fingerprint(entry)
        return True

    def _read_ignored_copy_first(self, entry: FileEntry) -> bool:
        """Whether an ignored copy with ``entry``'s (old) first 4 KiB was queued just before it."""
        found = self._ignored_copy_of(entry) if entry.fp_len == FINGERPRINT_SIZE else None
        if found is None:
            return False
        name, st = found
        del self._copies[(st.st_dev, st.st_ino)]
        copy = FileEntry(name, st.st_dev, st.st_ino, st.st_size, self.clock())
        copy.fp_len, copy.fp_sha = entry.fp_len, entry.fp_sha
        self._by_fingerprint[entry.fp_sha] = copy
        self.queue.insert(self.queue.index(entry), copy)
        self._by_id[(st.st_dev, st.st_ino)] = copy
        self.counters["copies_read_first"] += 1
        self._note(f"{name}: the earlier content of {entry.name} (rewritten before follow read it); read before it")
        return True

    def _ignored_copy_of(self, entry: FileEntry) -> tuple[str, os.stat_result] | None:
        """An ignored copy whose recorded first bytes are ``entry``'s fingerprint, still under its
        name: (name, stat). Cost: O(copies ignored), a stat per candidate. Raises nothing."""
        if not entry.fp_len:
            return None
        for key, (name, _size, head_len, head_sha) in self._copies.items():
            if (head_len, head_sha) == (entry.fp_len, entry.fp_sha):
                st = _stat(name)
                if st is not None and (st.st_dev, st.st_ino) == key:
                    return name, st
        return None

    def _forget(self, entry: FileEntry) -> None:
        """Drop ``entry``'s identity from the table, unless a new file in its inode holds it now."""
        if self._by_id.get((entry.dev, entry.ino)) is entry:
            del self._by_id[(entry.dev, entry.ino)]

    def _drop_fingerprint(self, entry: FileEntry) -> None:
        if self._by_fingerprint.get(entry.fp_sha) is entry:
            del self._by_fingerprint[entry.fp_sha]
        entry.fp_len = 0
        entry.fp_sha = b""

    def _newest_name(self) -> str | None:
        if self.queue:
            return self.queue[-1].name
        return self.entries[-1].name if self.entries else None

    def _compression_under_way(self, name: str) -> bool:
        """Whether ``name`` is ``X.gz`` for a known file (or ignored copy) ``X`` that still exists
        while the gzip content is shorter than X's first 4 KiB: ``gzip X`` still writing. Admitted
        at a later scan, once its content tells whether it is X compressed (then read in X's
        place, or ignored), not now as a new file after the queue. Cost: O(files known) for the
        name, a stat and a 4 KiB inflate, only for such names."""
        if not name.endswith(".gz"):
            return False
        stem = name[:-3]
        original = self._known_by_name(stem)
        if original is None and not any(ignored[0] == stem for ignored in self._copies.values()):
            return False  # (neither a known file's nor an ignored copy's compressed copy)
        reader = self._reader
        if reader is not None and reader.entry is original and not reader.prefix:
            try:  # (what it reads next tells whether the .gz is its copy)
                if os.fstat(reader.handle.fileno()).st_size > reader.raw_pos:
                    return True
            except OSError:
                pass
        st = _stat(stem)
        return st is not None and _content_head(name, min(st.st_size, FINGERPRINT_SIZE)) is None

    def _known_by_name(self, name: str) -> FileEntry | None:
        for entry in itertools.chain(reversed(self.queue), reversed(self.entries)):
            if entry.name == name:
                return entry
        return None

    def _known_head(self, entry: FileEntry) -> tuple[int, bytes]:
        """What is known of ``entry``'s first bytes: (length, sha256); the reader's when it knows more."""
        reader = self._reader
        if reader is not None and reader.entry is entry and len(reader.prefix) > entry.fp_len:
            return len(reader.prefix), hashlib.sha256(reader.prefix).digest()
        return entry.fp_len, entry.fp_sha

    def _named_original(self, name: str) -> FileEntry | None:
        """The known file ``X`` that a gzip file ``X.gz`` is the compressed copy of, when no full
        fingerprint told (X shorter than 4 KiB, or grown past it since the last scan): its content
        starts with what is known of X's first bytes. Cost: O(files known) for the name, an
        inflate of at most 4 KiB."""
        if not name.endswith(".gz"):
            return None
        original = self._known_by_name(name[:-3])
        if original is None or (original.state == FINISHED and original.finished_size is None):
            return None  # (unknown, or vanished: nothing of it was read)
        head_len, head_sha = self._known_head(original)
        if not head_len:
            # Nothing known of its bytes (seen or read empty): only a file read empty, gone since,
            # whose .gz holds just the late bytes it had when last seen. Otherwise the .gz is read
            # as a new file: nothing of X was read, so that repeats nothing (a waiting X seen
            # empty may have been renamed, and X.gz be the next live file: not its copy).
            if original.state != FINISHED or os.path.exists(original.name):
                return None
            content = _content_head(name, original.size_seen + 1, exact=False)
            return original if content is not None and len(content) == original.size_seen else None
        return original if _has_head(_content_head(name, head_len), head_len, head_sha) else None

    def _admit(self, name: str, st: os.stat_result, now: float) -> None:
        key = (st.st_dev, st.st_ino)
        head = _fingerprint(name) if st.st_size >= FINGERPRINT_SIZE else None
        if head is not None and len(head) < FINGERPRINT_SIZE:
            head = None  # (shrunk since its stat: no fingerprint yet)
        place = len(self.queue)  # (the end: read after every file known)
        if head is not None:
            sha = hashlib.sha256(head).digest()
            original = self._by_fingerprint.get(sha)
            place = self._place_of_earlier_content(sha, name, "copies_read_first", "")
            if place == len(self.queue) and original is not None:
                self._ignore(key, name)
                self.counters["copies_ignored"] += 1
                self._note(f"{name}: a copy of {original.name} (same first {FINGERPRINT_SIZE} bytes); ignored")
                return
        content = _content_head(name) if place == len(self.queue) else None
        original = None
        if content is not None:  # a gzip file: is it a known file, compressed after rotation?
            content_sha = hashlib.sha256(content).digest()
            original = self._by_fingerprint.get(content_sha)
            place = self._place_of_earlier_content(content_sha, name, "compressed_copies_read_instead",
                                                   " (compressed)")
            if place < len(self.queue):
                original = None
        if original is None and place == len(self.queue):
            original = self._named_original(name) or self._content_original(name)
        if original is not None and original in self.queue:
            # Compressed before follow opened it: the copy takes its place (and its skip).
            place = self.queue.index(original)
            self.queue.remove(original)
            if self._holds(original):  # (while the original stays, it is ignored)
                self._copies[(original.dev, original.ino)] = (
                    original.name, original.size_seen, original.fp_len, original.fp_sha)
            self._forget(original)
            self._drop_fingerprint(original)
            self.counters["compressed_copies_read_instead"] += 1
            self._note(f"{name}: {original.name} compressed before follow read it; read in its place")
        elif original is not None and self._ignore_compressed_copy(name, key, original):
            return
        newest = self._newest_name()
        if place == len(self.queue) and newest is not None and name < newest:
            self.counters["out_of_order_files"] += 1
            self._note(f"{name}: new file sorts before {newest}; read after it")
        entry = FileEntry(name, st.st_dev, st.st_ino, st.st_size, now)
        if original is not None:
            entry.skip = original.skip  # (lines consumed before a restart, when it was the cursor's file)
        if head is None and st.st_size:
            head = _fingerprint(name, min(st.st_size, FINGERPRINT_SIZE))  # (what there is: tells a reused inode)
        if head:
            self._set_fingerprint(entry, head)
        self.queue.insert(place, entry)
        self._by_id[key] = entry

    def _holds(self, entry: FileEntry) -> bool:
        """Whether ``entry``'s name still holds its file: its identity, its known first bytes."""
        if not entry.fp_len or _identity(entry.name) != (entry.dev, entry.ino):
            return False
        return _is_fingerprint(entry, _fingerprint(entry.name, entry.fp_len))

    def _place_of_earlier_content(self, sha: bytes, name: str, counter: str, how: str) -> int:
        """Where a new file holding the earlier content of a waiting file found rewritten (its
        fingerprint ``sha``: see :meth:`_still`) is read: just before it; else at the end."""
        rewritten = self._rewritten.pop(sha, None)
        if rewritten is None or rewritten not in self.queue:
            return len(self.queue)
        self.counters[counter] += 1
        self._note(f"{name}: the earlier content of {rewritten.name}{how} (rewritten before follow read it); "
                   "read before it")
        return self.queue.index(rewritten)

    def _ignore(self, key: tuple[int, int], name: str) -> None:
        """Record the file ``name`` (identity ``key``) as a copy never to read, with its first bytes."""
        head = _fingerprint(name) or b""
        try:
            size = os.stat(name).st_size
        except OSError:
            size = len(head)
        self._copies[key] = (name, size, len(head), hashlib.sha256(head).digest())

    def _ignored(self, key: tuple[int, int], name: str, st: os.stat_result) -> bool:
        """Whether ``name`` is a copy recorded by :meth:`_ignore`. A changed name or size is checked
        against the copy's first bytes: other bytes mean the copy was deleted and a new file took
        its inode (ext4 reuses them), read as new. Cost: O(1); a 4 KiB read when it changed."""
        ignored = self._copies.get(key)
        if ignored is None:
            return False
        known_name, size, head_len, head_sha = ignored
        if (name == known_name and st.st_size == size) or size < 0:  # (< 0: recorded by an older version)
            return True
        head = _fingerprint(name, head_len) if head_len else None  # (recorded empty: any change is another file)
        if _has_head(head, head_len, head_sha):
            self._copies[key] = (name, st.st_size, head_len, head_sha)
            return True
        del self._copies[key]
        self._note(f"{name}: a new file in the inode of {known_name}, a copy never read")
        return False

    def _content_original(self, name: str) -> FileEntry | None:
        """The one known file whose known first bytes (a complete line or more, fewer than 4 KiB) a
        gzip file's content starts with, whatever its name (renamed, then compressed, before a
        scan saw the rename). Cost: O(files known) and an inflate of at most 4 KiB."""
        content = _content_head(name, FINGERPRINT_SIZE, exact=False)
        if not content or b"\n" not in content:
            return None
        matches = []
        for entry in itertools.chain(self.queue, self.entries):
            if entry.state == FINISHED and entry.finished_size is None:
                continue  # (vanished: nothing of it was read)
            head_len, head_sha = self._known_head(entry)
            if 0 < head_len < FINGERPRINT_SIZE and b"\n" in content[:head_len] \
                    and _has_head(content[:head_len], head_len, head_sha):
                matches.append(entry)
        return matches[0] if len(matches) == 1 else None

    def _compressed_original(self, name: str) -> FileEntry | None:
        """The known file whose content a gzip file ``name`` starts with, or None."""
        content = _content_head(name)
        original = self._by_fingerprint.get(hashlib.sha256(content).digest()) if content else None
        return original or self._named_original(name) or self._content_original(name)

    def _ignore_compressed_copy(self, name: str, key: tuple[int, int], original: FileEntry) -> bool:
        """Whether ``name``, a gzip copy of ``original``, is to be ignored: ``original`` is being read
        or was read. Then it is recorded as a copy, never read."""
        if not (original.state == OPEN or original.finished_size is not None):
            return False
        self._ignore(key, name)
        assert original.seq is not None, "a file being read or read has its place"
        self.compressed_copies[original.seq] = (name, original.dev, original.ino)
        self.counters["compressed_copies_ignored"] += 1
        self._note(f"{name}: {original.name} compressed (same content); ignored, never read twice")
        return True

    def _set_fingerprint(self, entry: FileEntry, head: bytes) -> None:
        if entry.fp_len == FINGERPRINT_SIZE:
            return
        entry.fp_len = len(head)
        entry.fp_sha = hashlib.sha256(head).digest()
        if entry.fp_len == FINGERPRINT_SIZE:
            self._by_fingerprint.setdefault(entry.fp_sha, entry)

    def _note(self, message: str) -> None:
        self.events.append(message)
        if len(self.events) > EVENT_LIMIT:
            del self.events[0]

    def drain_events(self) -> list[str]:
        """The events noted since the last call (renames, truncations, late bytes, ...).

        Cost: O(1) (at most :data:`EVENT_LIMIT` events are kept). Raises nothing.
        """
        with self._lock:
            events, self.events = self.events, []
            return events

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> list[Item]:
        """Read what is new, about :data:`READ_BUDGET` raw bytes at most; return it as items.

        Items come in stream order: :class:`Lines` of the current file, :class:`FileEnd` when it
        is finished (then the next file's lines), :class:`CaughtUp` when at the end of the newest.
        An empty list means nothing is new. Thread-safe.

        Cost: O(bytes read), about :data:`READ_BUDGET`; raises OSError only if an open file fails a read.
        """
        if self.last_scan is None:
            self.scan()  # (a file compressed while follow was stopped: its copy is known before opening it)
        with self._lock:
            items: list[Item] = []
            budget = self.read_budget
            while budget > 0 or not items:  # (never return empty-handed while bytes are waiting)
                reader = self._reader
                if reader is None:
                    if not self.queue:
                        self._caught_up(items, None)
                        break
                    entry = self.queue.pop(0)
                    original = self._compressed_original(entry.name) if not entry.skip else None
                    if original is not None and original is not entry and self._ignore_compressed_copy(
                            entry.name, (entry.dev, entry.ino), original):
                        # (found now: when admitted, gzip had not yet written 4 KiB of its content)
                        self._forget(entry)
                        self._drop_fingerprint(entry)
                        continue
                    entry.seq = len(self.entries)
                    self.entries.append(entry)
                    reader = self._open(entry, items)
                    if reader is None:
                        continue
                if reader.raw_pos >= reader.known_size:
                    self._restat(reader, items)
                    if self._reader is not reader:
                        continue  # truncated and rewritten: the new content is the next file
                if reader.raw_pos < reader.known_size and not reader.shrunk:
                    budget -= self._read_chunk(reader, items)
                    continue
                if self._finishable(reader):
                    self._close(reader, items, reader.truncation(), use_partial=True)
                    continue
                if not self.queue:
                    self._caught_up(items, reader.known_at)
                break
            return items

    def _caught_up(self, items: list[Item], known_at: float | None) -> None:
        if self.last_scan is None:
            return
        at = self.last_scan if known_at is None else min(self.last_scan, known_at)
        if self._last_caught_up is None or at > self._last_caught_up:
            self._last_caught_up = at
            items.append(CaughtUp(at))

    def _open(self, entry: FileEntry, items: list[Item]) -> _Reader | None:
        handle = self._open_under_name(entry)
        if handle is None and self._renamed_since_scan(entry):
            handle = self._open_under_name(entry)
        if handle is None and self._take_a_copy(entry):
            handle = self._open_under_name(entry)
        if handle is None:
            if entry.skip:  # (a restart's cursor file: its first lines were used before the stop)
                return self._vanished(entry, items, f"file vanished after follow had used {entry.skip} lines "
                                                    "of it (before a restart); any later lines were lost")
            return self._vanished(entry, items, "file vanished before follow read it")
        if entry.fp_len:
            if not _is_fingerprint(entry, os.pread(handle.fileno(), entry.fp_len, 0)):
                if not entry.skip:
                    self._drop_fingerprint(entry)  # rewritten before any of it was consumed: read it as it is
                else:
                    st = os.fstat(handle.fileno())
                    handle.close()
                    name = entry.name
                    # copytruncate while follow was stopped: a copy holds the file's content; the
                    # rest is read from it, then the new content as the next file
                    handle = self._open_under_name(entry) if self._take_a_copy(entry) else None
                    if handle is None:
                        self.counters["replaced_files"] += 1
                        self._note(f"{name}: its content was replaced while follow was not reading it")
                        self._vanished(entry, items, "content replaced before follow read it to its end")
                    self._requeue_new_content(name, st)
                    if handle is None:
                        return None
        entry.state = OPEN
        reader = _Reader(entry, handle, self.clock())
        entry.skip = 0
        self._reader = reader
        return reader

    def _open_under_name(self, entry: FileEntry) -> IO[bytes] | None:
        """``entry``'s file, opened by its name: None when the name holds nothing, or another file
        that is not a copy of it (first bytes other than its fingerprint). A copy there (``cp X
        X.tmp; mv X.tmp X`` before follow opened X) is read in its place.

        :raises InputError: when the name holds a file this process may not read (it would be
            found again at every scan, never read, and follow never idle).
        """
        try:
            handle = open(entry.name, "rb")
        except PermissionError as exc:
            raise unreadable(entry.name, exc) from None
        except OSError:
            return None
        st = os.fstat(handle.fileno())
        key = (st.st_dev, st.st_ino)
        if key == (entry.dev, entry.ino):
            return handle
        if entry.fp_len == FINGERPRINT_SIZE and _is_fingerprint(entry, os.pread(handle.fileno(), entry.fp_len, 0)):
            self._adopt(entry, entry.name, st, "copies_read_instead",
                        f"{entry.name}: replaced by a copy of itself before follow read it; read from the copy")
            return handle
        handle.close()
        return None

    def _renamed_since_scan(self, entry: FileEntry) -> bool:
        """Whether ``entry``'s file, gone from its name, is under another name the glob matches
        (renamed after the last scan, before reading reached it): it then takes that name. Its
        inode there must hold its first bytes (else the file was deleted and the inode reused).

        Cost: O(files matched) stats, a read of at most :data:`FINGERPRINT_SIZE` bytes. Raises nothing.
        """
        key = (entry.dev, entry.ino)
        if self._by_id.get(key) is not entry:
            return False  # (its inode is another file's now)
        for name in sorted(glob.glob(self.pattern)):
            st = _stat(name)
            if name == entry.name or st is None or (st.st_dev, st.st_ino) != key:
                continue
            if entry.fp_len and not _is_fingerprint(entry, _fingerprint(name, entry.fp_len, key)):
                return False
            self.counters["renames"] += 1
            self._note(f"{entry.name} renamed to {name}")
            entry.name = name
            return True
        return False

    def _take_a_copy(self, entry: FileEntry) -> bool:
        """Whether ``entry``, gone before follow opened it, now reads from a copy of it: a copy
        ignored so far whose first bytes are its fingerprint (the live file copied to a rotated
        name, then replaced); else the gzip copy ignored while it was read (a restart inside it);
        else ``NAME.gz``, or a file the glob matches that follow does not know yet, when its
        content (a gzip file's, inflated) starts with what follow knew of the file's first bytes:
        gzip deleted the file before a scan saw the copy; renamed, then compressed; copied, then
        replaced, between two scans.

        Cost: O(copies ignored + files matched) stats, an inflate of at most
        :data:`FINGERPRINT_SIZE` bytes per gzip file not known yet. Raises nothing."""
        found = self._ignored_copy_of(entry)
        if found is not None:
            name, st = found
            self._adopt(entry, name, st, "copies_read_instead",
                        f"{name}: a copy of {entry.name}, which was gone before follow read it; read in its place")
            return True
        if not entry.fp_len:
            return False  # (seen empty: nothing tells its copy from a new file, see _named_original)
        # The gzip copy ignored while the file was read (a restart inside it) may be read; other
        # ignored copies are copies of other files.
        recorded = self.compressed_copies[entry.seq][0] if entry.seq in self.compressed_copies else None
        told = {entry.name + ".gz", recorded} - {None}  # (named as its copies: any fingerprint length will do)
        for copy in dict.fromkeys([*sorted(told), *sorted(glob.glob(self.pattern))]):  # type: ignore[type-var]
            st = _stat(copy)
            if st is None or (st.st_dev, st.st_ino) in self._by_id \
                    or ((st.st_dev, st.st_ino) in self._copies and copy != recorded):
                continue
            head = _content_head(copy, entry.fp_len)
            compressed = head is not None
            if not compressed and copy not in told:  # a plain copy: copied, then replaced; moved across file systems
                head = _fingerprint(copy, entry.fp_len)
            # Under another name, a short fingerprint must hold a whole line to tell the file.
            if not _is_fingerprint(entry, head) or (
                    copy not in told and entry.fp_len < FINGERPRINT_SIZE and b"\n" not in head):  # type: ignore[operator]
                continue
            if compressed:
                self._drop_fingerprint(entry)  # (the fingerprint is of a file's bytes: the copy's come with reading)
                self._adopt(entry, copy, st, "compressed_copies_read_instead",
                            f"{copy}: {entry.name} compressed before follow read it; read in its place")
            else:
                self._adopt(entry, copy, st, "copies_read_instead",
                            f"{copy}: a copy of {entry.name}, which was gone before follow read it; read in its place")
            return True
        return False

    def _adopt(self, entry: FileEntry, name: str, st: os.stat_result, counter: str, message: str) -> None:
        """``entry`` is read from the file ``name`` (as ``st`` found it), a copy of it; its size is
        the copy's (a copy is written once: no growth to wait out)."""
        key = (st.st_dev, st.st_ino)
        self._copies.pop(key, None)
        self._forget(entry)
        entry.name, (entry.dev, entry.ino), entry.size_seen = name, key, st.st_size
        self._by_id[key] = entry
        self.counters[counter] += 1
        self._note(message)

    def _vanished(self, entry: FileEntry, items: list[Item], reason: str) -> None:
        self.counters["vanished_files"] += 1
        self._note(f"{entry.name}: {reason}")
        entry.state = FINISHED
        entry.finished_size = None
        self._forget(entry)
        assert entry.seq is not None
        items.append(FileEnd(entry.seq, entry.name, 0, None, False, reason, 0))
        return None

    def _requeue_new_content(self, name: str, st: os.stat_result) -> None:
        """New content under a known identity (``name``, as ``st`` found it): a new file, read next."""
        fresh = FileEntry(name, st.st_dev, st.st_ino, st.st_size, self.clock())
        self.queue.insert(0, fresh)
        self._by_id[(st.st_dev, st.st_ino)] = fresh

    def _restat(self, reader: _Reader, items: list[Item]) -> None:
        """Learn the file's size now; notice growth, and truncation (its first bytes are checked)."""
        fd = reader.handle.fileno()
        st = os.fstat(fd)
        now = self.clock()
        entry = reader.entry
        if st.st_size != entry.size_seen:
            entry.size_seen = st.st_size
            entry.changed_at = now
        prefix = reader.prefix
        if prefix:
            head = os.pread(fd, len(prefix), 0)
            if head != prefix[:len(head)]:
                self._truncated(reader, items, st)
                return
        if st.st_size < reader.raw_pos:
            if not reader.shrunk:
                reader.shrunk = True
                self.counters["truncations"] += 1
                self._note(f"{entry.name}: truncated to {st.st_size} bytes after {reader.raw_pos} were read; "
                           "its first bytes are unchanged, waiting for it to grow past the cursor")
            reader.known_at = now
            return
        reader.shrunk = False
        reader.known_size = st.st_size
        reader.known_at = now

    def _truncated(self, reader: _Reader, items: list[Item], st: os.stat_result) -> None:
        entry = reader.entry
        if not reader.shrunk:
            self.counters["truncations"] += 1
        self.counters["restarted_files"] += 1
        self._note(f"{entry.name}: truncated and rewritten after {reader.raw_pos} bytes were read "
                   "(copytruncate?); its new content is read from its start as a new file")
        reason = (f"truncated after {reader.raw_pos} bytes were read (copytruncate?); "
                  "lines written after the last read and before the truncation, if any, were lost")
        self._close(reader, items, reason, use_partial=False)
        self._requeue_new_content(entry.name, st)

    def _read_chunk(self, reader: _Reader, items: list[Item]) -> int:
        want = min(self.read_size, reader.known_size - reader.raw_pos)
        data = reader.handle.read(want)
        if not data:
            reader.known_size = reader.raw_pos  # shrank under us; the next restat tells
            return self.read_budget
        before = reader.raw_pos
        if before < FINGERPRINT_SIZE:
            reader.prefix += data[:FINGERPRINT_SIZE - before]
            if len(reader.prefix) == FINGERPRINT_SIZE:
                self._set_fingerprint(reader.entry, reader.prefix)
        reader.raw_pos += len(data)
        reader.digest.update(data)
        if reader.compressed is None:
            if len(reader.prefix) < 2:
                return len(data)  # gzip or plain is decided by two bytes: wait for the second
            reader.compressed = reader.prefix[:2] == GZIP_MAGIC
            if reader.compressed:
                reader.members = GzipMembers()
            if before:
                data = reader.prefix[:before] + data
        pieces = reader.members.pieces(data) if reader.members is not None else (data,)
        seen = reader.known_at
        produced = 0
        for piece in pieces:
            produced += len(piece)
            self._lines(reader, reader.splitter.feed(piece), seen, items)
        return max(len(data), produced)

    def _lines(self, reader: _Reader, lines: list[bytes], seen: float, items: list[Item]) -> None:
        if not lines:
            return
        first = reader.lines + 1
        reader.lines += len(lines)
        if reader.skip:
            if reader.lines <= reader.skip:
                return
            drop = reader.skip - first + 1
            if drop > 0:
                lines = lines[drop:]
                first += drop
            reader.skip = 0
        seq = reader.entry.seq
        assert seq is not None
        last = items[-1] if items else None
        if not (type(last) is Lines and last.file == seq and last.first + len(last.lines) == first):
            last = None
        for line in lines:
            if last is None or len(last.lines) >= BATCH_LINES or last.size >= BATCH_BYTES:
                last = Lines(seq, first, [], seen)
                items.append(last)
            last.lines.append(line)
            last.size += len(line)
            if seen > last.seen:
                last.seen = seen
            first += 1

    def _finishable(self, reader: _Reader) -> bool:
        if not self.queue:
            return False  # no newer file: keep following
        members = reader.members
        if members is not None and members.error is None and members.at_boundary and reader.raw_pos:
            return True  # gzip at its trailer
        return self.clock() - reader.entry.changed_at >= self.rotate_wait

    def _close(self, reader: _Reader, items: list[Item], truncated: str | None, *, use_partial: bool) -> None:
        entry = reader.entry
        if reader.compressed is None and reader.raw_pos:
            # A file of a single byte: gzip's first, a gzip file cut short (as run reads it); else plain.
            if reader.prefix == GZIP_MAGIC[:1]:
                reader.compressed = True
                truncated = truncated or TRAILER_MISSING
            else:
                reader.compressed = False
                self._lines(reader, reader.splitter.feed(reader.prefix), reader.known_at, items)
        last = reader.splitter.finish()
        if last is not None:
            if truncated is None and use_partial:
                self._lines(reader, [last], reader.known_at, items)
            elif last.strip() and truncated is not None:
                truncated += PARTIAL_LINE_UNUSED
        if reader.prefix and entry.fp_len < FINGERPRINT_SIZE:
            self._set_fingerprint(entry, reader.prefix)
        reader.handle.close()
        entry.state = FINISHED
        entry.finished_size = reader.raw_pos
        entry.late = max(0, entry.size_seen - reader.raw_pos) if use_partial else 0
        assert entry.seq is not None
        items.append(FileEnd(entry.seq, entry.name, reader.raw_pos, reader.digest.hexdigest(),
                             bool(reader.compressed), truncated, reader.lines))
        self._reader = None

    def close(self) -> None:
        """Close the file being read (a later :meth:`read` reads it again from its start).

        Cost: O(files waiting) (the file goes back to the front of the queue). Raises nothing.
        """
        with self._lock:
            reader = self._reader
            if reader is not None:
                reader.handle.close()
                entry = reader.entry
                entry.state = PENDING
                entry.skip = max(reader.skip, reader.lines)
                self.entries.pop()
                entry.seq = None
                self.queue.insert(0, entry)
                self._reader = None

    # -- state ------------------------------------------------------------------------------------

    def open_file_end(self) -> FileEnd | None:
        """The file being read, described as if the stream ended here (for ``follow``'s exit).

        As ``run`` would describe the file as it is now: a gzip stream without its trailer is
        truncated (and a partial last line is not used); a plain file's partial last line is
        not used either (follow cannot know it is complete). Nothing is changed.

        Cost: O(1) (a copy of the running sha256). Raises nothing.
        """
        with self._lock:
            reader = self._reader
            if reader is None:
                return None
            truncated = reader.truncation()
            if truncated is not None and reader.splitter.pending.strip():
                truncated += PARTIAL_LINE_UNUSED
            assert reader.entry.seq is not None
            return FileEnd(reader.entry.seq, reader.entry.name, reader.raw_pos, reader.digest.copy().hexdigest(),
                           bool(reader.compressed), truncated, reader.lines)

    def caught_up(self) -> bool:
        """Whether reading has passed every line a resumed state had consumed.

        Until then the state holds rows from lines this tailer has not reached again (its
        :meth:`open_file_end` does not cover them yet). Cost: O(files waiting).
        Raises nothing.
        """
        with self._lock:
            reader = self._reader
            if reader is not None and reader.lines < reader.skip:
                return False
            return not any(entry.skip for entry in self.queue)

    def names(self) -> list[str]:
        """The current name of every file reading has reached, by sequence number, then of the files waiting.

        A waiting file takes the next sequence number when reading reaches it, so the list also
        names, by the numbers they will take again, the files a restart queued: what was saved
        before the restart names them before reading reaches them again.

        Cost: O(files read + files waiting). Raises nothing.
        """
        with self._lock:
            return [entry.name for entry in self.entries] + [entry.name for entry in self.queue]

    def status(self) -> dict[str, Any]:
        """The file being read with its cursor, the files waiting, and the counters.

        Cost: O(files waiting + counters). Raises nothing.
        """
        with self._lock:
            reader = self._reader
            reading = None
            if reader is not None:
                reading = reader.entry.as_json()
                reading.update({"bytes_read": reader.raw_pos, "lines_read": reader.lines,
                                "compressed": reader.compressed})
            return {"pattern": self.pattern, "files_read": len(self.entries), "reading": reading,
                    "waiting": [entry.name for entry in self.queue],
                    "counters": dict(sorted(self.counters.items()))}

    def snapshot(self, cursor: tuple[int, int]) -> dict[str, Any]:
        """The file table to resume from, given the consumer's ``cursor`` (file, lines consumed).

        Files before the cursor's file are finished; the cursor's file and every later one are
        queued again (the cursor's with its consumed lines to skip). Cost: O(files).
        """
        file, consumed = cursor
        with self._lock:
            reader = self._reader
            finished = []
            queued = []
            for entry in self.entries:
                saved = entry.saved()
                if reader is not None and reader.entry is entry and len(reader.prefix) > entry.fp_len:
                    # What was read identifies the cursor's file on resume, however short.
                    saved["fp_len"] = len(reader.prefix)
                    saved["fp_sha"] = hashlib.sha256(reader.prefix).digest()
                assert entry.seq is not None
                if entry.seq < file:
                    finished.append(saved)
                else:
                    saved.update({"seq": None, "finished_size": None, "late": 0,
                                  "skip": consumed if entry.seq == file else 0})
                    queued.append(saved)
            queued.extend(entry.saved() for entry in self.queue)
            return {"pattern": self.pattern, "finished": finished, "queued": queued,
                    "copies": dict(self._copies), "compressed_copies_by_place": dict(self.compressed_copies),
                    "counters": dict(self.counters)}

    def _restore(self, state: dict[str, Any]) -> None:
        now = self.clock()
        for saved in state["finished"]:
            entry = self._entry(saved, now)
            entry.state = FINISHED
            entry.seq = saved["seq"]
            entry.finished_size = saved["finished_size"]
            entry.late = saved["late"]
            entry.size_seen = (saved["finished_size"] or 0) + saved["late"]
            assert entry.seq == len(self.entries), "finished files are saved in stream order"
            self.entries.append(entry)
            if entry.finished_size is not None:
                self._by_id[(entry.dev, entry.ino)] = entry  # (the later of two in one inode holds it, as live)
        for saved in state["queued"]:
            entry = self._entry(saved, now)
            entry.skip = saved["skip"]
            entry.size_seen = saved.get("size_seen", 0)  # (a file shorter now was rewritten: see _still)
            self.queue.append(entry)
            self._by_id[(entry.dev, entry.ino)] = entry
        self._copies = {key: value if isinstance(value, tuple) else (value, -1, 0, b"")  # (older states: names only)
                        for key, value in state.get("copies", {}).items()}
        self.compressed_copies = dict(state.get("compressed_copies_by_place", {}))
        for original, copy in state.get("compressed_copies", {}).items():  # (older states: by name)
            places = [(entry.seq, entry) for entry in self.entries if entry.name == original]
            if self.queue and self.queue[0].name == original:  # (the cursor's file: read next, in its place)
                places.append((len(self.entries), self.queue[0]))
            if places and places[-1][0] is not None:
                place, entry = places[-1]
                self.compressed_copies[place] = (copy, entry.dev, entry.ino)
        self.counters.update(state.get("counters", {}))

    def _entry(self, saved: dict[str, Any], now: float) -> FileEntry:
        entry = FileEntry(saved["name"], saved["dev"], saved["ino"], 0, now)
        entry.fp_len = saved["fp_len"]
        entry.fp_sha = saved["fp_sha"]
        if entry.fp_len == FINGERPRINT_SIZE:
            self._by_fingerprint.setdefault(entry.fp_sha, entry)
        return entry
