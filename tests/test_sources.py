"""Coverage tests for streamer.sources: gzip members, line splitting, read_batches, input problems."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.decoders import JSON_BACKEND, holds_rounded_integer, loads
from streamer.errors import InputError
from streamer.sources import (
    INFLATE_STEP,
    MAX_HEADER,
    PROBLEM_LOCATIONS,
    GzipMembers,
    InputProblems,
    InputStats,
    LineSplitter,
    check_readable,
    read_batches,
)

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- helpers


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``data`` into pieces of the given sizes (cycled), the last piece taking the rest."""
    pieces = []
    position = 0
    index = 0
    while position < len(data):
        size = sizes[index % len(sizes)] if sizes else len(data)
        pieces.append(data[position:position + size])
        position += size
        index += 1
    return pieces


def feed_all(members: GzipMembers, pieces: list[bytes]) -> bytes:
    return b"".join(b"".join(members.feed(piece)) for piece in pieces)


def universal_lines(data: bytes) -> list[str]:
    """The lines Python's universal-newline reading gives (terminators removed)."""
    wrapper = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None)
    return [line[:-1] if line.endswith("\n") else line for line in wrapper]


def split_all(pieces: list[bytes]) -> tuple[list[bytes], bytes | None]:
    splitter = LineSplitter()
    lines: list[bytes] = []
    for piece in pieces:
        lines.extend(splitter.feed(piece))
    return lines, splitter.finish()


def read_all(path: Path, name: str | None = None, read_size: int = 1 << 20) -> tuple[list[bytes], InputStats]:
    stats = InputStats(path, name or str(path), "raw_websocket_messages")
    lines = [line for batch in read_batches(path, stats, read_size=read_size) for line in batch]
    return lines, stats


def reader_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"read:{name}"]


chunk_sizes = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8)
member_texts = st.lists(st.binary(max_size=300), min_size=1, max_size=5)


# ---------------------------------------------------------------- GzipMembers


@SETTINGS
@given(texts=member_texts, sizes=chunk_sizes, level=st.sampled_from([0, 1, 6, 9]))
def test_gzip_members_multi_member_random_chunks(texts: list[bytes], sizes: list[int], level: int) -> None:
    data = b"".join(gzip.compress(text, compresslevel=level, mtime=0) for text in texts)
    members = GzipMembers()
    out = feed_all(members, chunked(data, sizes))
    assert out == gzip.decompress(data) == b"".join(texts)
    assert members.at_boundary
    assert members.error is None
    assert members.state() == {"at_boundary": True, "error": None}


def test_gzip_members_one_byte_feeds() -> None:
    texts = [b"first line\nsecond", b" half\n", b"", b"x" * 5000 + b"\r\n"]
    data = b"".join(gzip.compress(text) for text in texts)
    members = GzipMembers()
    out = feed_all(members, [data[i:i + 1] for i in range(len(data))])
    assert out == gzip.decompress(data)
    assert members.at_boundary and members.error is None


def test_gzip_members_boundary_flag_between_and_inside_members() -> None:
    first = gzip.compress(b"a\n")
    second = gzip.compress(b"b\n")
    members = GzipMembers()
    assert members.at_boundary  # nothing fed: a clean (empty) stream
    assert members.feed(b"") == []
    assert members.at_boundary
    members.feed(first[:5])
    assert not members.at_boundary
    members.feed(first[5:])
    assert members.at_boundary
    members.feed(second[:-1])
    assert not members.at_boundary
    members.feed(second[-1:])
    assert members.at_boundary


@SETTINGS
@given(texts=member_texts, sizes=chunk_sizes, data=st.data())
def test_gzip_members_truncated_stream_is_not_at_boundary(texts: list[bytes], sizes: list[int],
                                                          data: st.DataObject) -> None:
    stream = b"".join(gzip.compress(text, mtime=0) for text in texts)
    last_start = len(stream) - len(gzip.compress(texts[-1], mtime=0))
    cut = data.draw(st.integers(min_value=last_start + 1, max_value=len(stream) - 1), label="cut")
    members = GzipMembers()
    out = feed_all(members, chunked(stream[:cut], sizes))
    assert not members.at_boundary
    assert members.error is None
    assert b"".join(texts).startswith(out)
    # every earlier member is complete in the output
    assert out.startswith(b"".join(texts[:-1]))


def test_gzip_members_trailer_missing_keeps_all_data() -> None:
    text = b"".join(b'{"n": %d}\n' % n for n in range(200))
    stream = gzip.compress(text)
    members = GzipMembers()
    out = feed_all(members, [stream[:-8]])  # CRC and size missing
    assert out == text
    assert not members.at_boundary and members.error is None


def test_gzip_members_corrupt_second_member_keeps_first() -> None:
    first_text = b"good line 1\ngood line 2\n"
    body = bytearray(gzip.compress(bytes(range(256)) * 40, mtime=0))
    for position in range(12, 60):
        body[position] ^= 0x5A
    stream = gzip.compress(first_text) + bytes(body)
    members = GzipMembers()
    pieces = chunked(stream, [7])
    out = b""
    for piece in pieces:
        out += b"".join(members.feed(piece))
    assert members.error is not None and members.error.startswith("corrupt gzip data")
    assert out.startswith(first_text)
    assert not members.at_boundary
    # later input is ignored once an error is set
    assert members.feed(gzip.compress(b"more\n")) == []
    assert members.state()["error"] == members.error


@pytest.mark.parametrize("garbage", [b"this is not gzip at all, just trailing text\n", b"\x1f\x8b" + b"x" * 30])
def test_gzip_members_trailing_garbage_sets_error(garbage: bytes) -> None:
    text = b"complete\n"
    members = GzipMembers()
    out = feed_all(members, [gzip.compress(text), garbage])
    assert out == text
    assert members.error is not None
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(gzip.compress(text) + garbage)


def test_gzip_members_short_trailing_garbage_is_never_a_clean_end() -> None:
    """A few garbage bytes after the last member: the stream must not look complete."""
    members = GzipMembers()
    out = feed_all(members, [gzip.compress(b"x\n"), b"junk"])
    assert out == b"x\n"
    assert members.error is not None or not members.at_boundary


def test_gzip_members_bounded_output_pieces() -> None:
    text = b"\x00" * (3 * INFLATE_STEP + 12345)
    stream = gzip.compress(text, compresslevel=9)
    members = GzipMembers()
    pieces = members.feed(stream)
    assert b"".join(pieces) == text
    assert all(len(piece) <= INFLATE_STEP for piece in pieces)
    assert len(pieces) >= 4
    assert members.at_boundary


def _member(text: bytes, flags: int = 0, extra: bytes = b"", name: bytes = b"", comment: bytes = b"",
            crc: int | None = None, size: int | None = None) -> bytes:
    """One gzip member with the optional header fields of RFC 1952 (gzip.compress sets none)."""
    header = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    if flags & 4:
        header += len(extra).to_bytes(2, "little") + extra
    if flags & 8:
        header += name + b"\0"
    if flags & 16:
        header += comment + b"\0"
    if flags & 2:
        header += (zlib.crc32(header) & 0xFFFF).to_bytes(2, "little")
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflater.compress(text) + deflater.flush()
    crc = zlib.crc32(text) if crc is None else crc
    size = len(text) if size is None else size
    return header + body + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


@SETTINGS
@given(texts=member_texts, sizes=chunk_sizes, flags=st.lists(st.sets(st.sampled_from([1, 2, 4, 8, 16])), min_size=5,
                                                              max_size=5),
       fields=st.lists(st.binary(max_size=30).map(lambda raw: raw.replace(b"\0", b"")), min_size=3, max_size=3))
def test_gzip_members_read_every_optional_header_field(texts: list[bytes], sizes: list[int], flags: list[set[int]],
                                                      fields: list[bytes]) -> None:
    stream = b"".join(_member(text, sum(flags[index]), *fields) for index, text in enumerate(texts))
    assert zlib.decompressobj(31).decompress(stream[:len(_member(texts[0], sum(flags[0]), *fields))]) == texts[0]
    members = GzipMembers()
    assert feed_all(members, chunked(stream, sizes)) == b"".join(texts)
    assert members.at_boundary and members.error is None


@pytest.mark.parametrize("check", ["crc", "size"])
def test_gzip_members_failed_check_keeps_the_members_text(check: str) -> None:
    """A damaged trailer costs nothing the member inflated (before: the last 16 KiB slice's text
    was lost, here every line); later members are not read."""
    text = b"".join(b'{"row": %d}\n' % n for n in range(200))
    bad = _member(text, crc=zlib.crc32(text) ^ 1) if check == "crc" else _member(text, size=len(text) + 1)
    members = GzipMembers()
    out = feed_all(members, [_member(b"first\n") + bad + _member(b"after\n")])
    assert out == b"first\n" + text
    assert members.error == (f"corrupt gzip data ({'CRC' if check == 'crc' else 'length'} check failed: "
                             "the member's text was used, the rest not)")
    assert not members.at_boundary
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bad)


def test_gzip_members_ignore_reserved_header_flags_as_python_gzip_does() -> None:
    """zlib refuses a header with reserved FLG bits; Python's gzip (the reference's reader) reads it."""
    member = bytearray(_member(b"a\n", 8, name=b"n"))
    member[3] |= 0xE0
    members = GzipMembers()
    assert feed_all(members, [bytes(member)]) == gzip.decompress(bytes(member)) == b"a\n"
    assert members.at_boundary and members.error is None


def test_gzip_members_skip_zeros_padding_members_as_python_gzip_does() -> None:
    stream = _member(b"a\n") + b"\0" * 700 + _member(b"b\n") + b"\0" * 3
    members = GzipMembers()
    assert feed_all(members, chunked(stream, [5, 300])) == gzip.decompress(stream) == b"a\nb\n"
    assert members.at_boundary and members.error is None


@pytest.mark.parametrize("stream, reason", [
    (b"\x1f\x8b\x07\0" + b"\0" * 6 + b"x", "unknown compression method"),
    (b"\x1f\x8b\x08\x08" + b"\0" * 6 + b"n" * (MAX_HEADER + 1), "a header longer than 1 MiB"),
], ids=["method", "endless-name"])
def test_gzip_members_bad_header(stream: bytes, reason: str) -> None:
    members = GzipMembers()
    assert feed_all(members, [_member(b"ok\n"), stream]) == b"ok\n"
    assert members.error == f"corrupt gzip data ({reason})"


# ---------------------------------------------------------------- LineSplitter

line_text = st.lists(
    st.sampled_from(["a", "b", "{}", " ", "\t", "é", "\u2028", "\n", "\r", "\r\n", "\n\r", "\r\r"]), max_size=60
).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=line_text, sizes=chunk_sizes)
def test_line_splitter_matches_universal_newlines(text: str, sizes: list[int]) -> None:
    data = text.encode("utf-8")
    lines, last = split_all(chunked(data, sizes))
    got = [line.decode("utf-8") for line in lines] + ([] if last is None else [last.decode("utf-8")])
    assert got == universal_lines(data)
    # finish: None exactly when the input ended with a terminator (or was empty)
    assert (last is None) == (data == b"" or data.endswith((b"\n", b"\r")))


@settings(max_examples=200, deadline=None)
@given(text=line_text)
def test_line_splitter_one_byte_at_a_time(text: str) -> None:
    data = text.encode("utf-8")
    lines, last = split_all([data[i:i + 1] for i in range(len(data))])
    got = [line.decode("utf-8") for line in lines] + ([] if last is None else [last.decode("utf-8")])
    assert got == universal_lines(data)


@settings(max_examples=300)
@given(text=line_text, sizes=chunk_sizes)
def test_line_splitter_hands_on_each_line_as_soon_as_it_is_complete(text: str, sizes: list[int]) -> None:
    """After every feed, exactly the lines ended so far are out (a tailer must not sit on one), a
    trailing ``\r`` included: the ``\n`` that may follow it is its pair, not a second line end
    (before, such a line waited for the next byte, and a followed file ending in one lost it)."""
    data = text.encode("utf-8")
    splitter = LineSplitter()
    out: list[bytes] = []
    seen = b""
    for piece in chunked(data, sizes):
        out += splitter.feed(piece)
        seen += piece
        *ended, partial = seen.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        assert out == ended
        assert splitter.pending == partial


def test_line_splitter_cr_then_lf_in_next_chunk_is_one_terminator() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"abc\r") == [b"abc"]
    assert splitter.pending == b""
    assert splitter.feed(b"") == []  # (nothing fed: the \r still waits for its possible \n)
    assert splitter.feed(b"\ndef") == []
    assert splitter.pending == b"def"
    assert splitter.feed(b"\r") == [b"def"]
    assert splitter.feed(b"g\n") == [b"g"]
    assert splitter.finish() is None


def test_line_splitter_finish_semantics() -> None:
    splitter = LineSplitter()
    assert splitter.finish() is None  # nothing at all
    assert splitter.feed(b"tail") == []
    assert splitter.finish() == b"tail"
    assert splitter.pending == b""
    assert splitter.finish() is None  # finish empties the carry
    assert splitter.feed(b"x\r") == [b"x"]  # a lone \r at the end ends the line
    assert splitter.finish() is None
    assert splitter.feed(b"x\n\r") == [b"x", b""]  # ... and a lone \r after a line is an empty line
    assert splitter.finish() is None
    splitter.feed(b"x\n")
    assert splitter.finish() is None


def test_line_splitter_blank_lines_are_lines() -> None:
    lines, last = split_all([b"\n\n  \n\r\n\ra\n"])
    assert lines == [b"", b"", b"  ", b"", b"", b"a"]
    assert last is None


# ---------------------------------------------------------------- read_batches


@SETTINGS
@given(text=line_text, read_size=st.integers(min_value=2, max_value=64), compressed=st.booleans(),
       members=st.integers(min_value=1, max_value=3))
def test_read_batches_lines_hash_and_sizes(tmp_path_factory: pytest.TempPathFactory, text: str, read_size: int,
                                           compressed: bool, members: int) -> None:
    plain = text.encode("utf-8")
    if compressed:
        step = max(1, len(plain) // members)
        raw = b"".join(gzip.compress(plain[i:i + step], mtime=0) for i in range(0, len(plain), step)) \
            or gzip.compress(b"")
    else:
        raw = plain
    # the name says the opposite of the content: content decides
    path = tmp_path_factory.mktemp("rb") / ("capture.jsonl" if compressed else "capture.jsonl.gz")
    path.write_bytes(raw)
    lines, stats = read_all(path, read_size=read_size)
    assert [line.decode("utf-8") for line in lines] == universal_lines(plain)
    assert stats.compressed is compressed
    assert stats.sha256 == hashlib.sha256(raw).hexdigest()
    assert stats.size == stats.bytes_read == len(raw)
    assert stats.uncompressed == len(plain)
    assert stats.lines == len(lines)
    assert stats.truncated is None
    assert stats.artifact() == {"path": path.as_posix(), "kind": "raw_websocket_messages", "bytes": len(raw),
                                "sha256": hashlib.sha256(raw).hexdigest()}
    assert stats.artifact("other")["kind"] == "other"


def test_read_batches_read_size_one_still_detects_gzip(tmp_path: Path) -> None:
    path = tmp_path / "tiny-reads.gz"
    path.write_bytes(gzip.compress(b"a\nb\n"))
    lines, stats = read_all(path, read_size=1)
    assert stats.compressed
    assert lines == [b"a", b"b"]


def test_read_batches_plain_named_gz_and_gzip_named_plain(tmp_path: Path) -> None:
    (tmp_path / "plain.gz").write_bytes(b'{"a": 1}\n{"b": 2}')
    (tmp_path / "packed.jsonl").write_bytes(gzip.compress(b'{"a": 1}\r\n{"b": 2}\n'))
    lines, stats = read_all(tmp_path / "plain.gz")
    assert lines == [b'{"a": 1}', b'{"b": 2}'] and not stats.compressed
    lines, stats = read_all(tmp_path / "packed.jsonl")
    assert lines == [b'{"a": 1}', b'{"b": 2}'] and stats.compressed


def test_read_batches_line_spanning_members(tmp_path: Path) -> None:
    path = tmp_path / "split.gz"
    path.write_bytes(gzip.compress(b'{"x": 1}\n{"y"') + gzip.compress(b': 2}\r') + gzip.compress(b'\n{"z": 3}\n'))
    lines, stats = read_all(path, read_size=3)
    assert lines == [b'{"x": 1}', b'{"y": 2}', b'{"z": 3}']
    assert stats.truncated is None


@pytest.mark.parametrize("drop", [8, 20])
def test_read_batches_truncated_gzip_yields_complete_lines_only(tmp_path: Path, drop: int) -> None:
    text = b"".join(b'{"line": %d, "pad": "%s"}\n' % (n, b"p" * (n % 7)) for n in range(400)) + b'{"partial": tr'
    full = gzip.compress(text, mtime=0)
    path = tmp_path / "growing.jsonl.gz"
    path.write_bytes(full[:-drop])
    lines, stats = read_all(path, read_size=97)
    expected = text.split(b"\n")[:-1]  # the complete lines of the whole text
    assert lines == expected[:len(lines)]
    assert b'{"partial": tr' not in lines
    if drop == 8:  # only the trailer is missing: every complete line is there
        assert lines == expected
    assert stats.truncated is not None and "trailer" in stats.truncated
    assert stats.sha256 == hashlib.sha256(full[:-drop]).hexdigest()
    assert stats.lines == len(lines)


def test_read_batches_truncated_gzip_last_partial_line_is_reported(tmp_path: Path) -> None:
    text = b"one\ntwo\nthr"
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(text)[:-8])
    lines, stats = read_all(path)
    assert lines == [b"one", b"two"]
    assert stats.truncated is not None and "last partial line was not used" in stats.truncated


def test_read_batches_corrupt_gzip_keeps_earlier_lines_and_hashes_whole_file(tmp_path: Path) -> None:
    body = bytearray(gzip.compress(bytes(range(256)) * 400, mtime=0))
    for position in range(12, 80):
        body[position] ^= 0xA5
    raw = gzip.compress(b"kept 1\nkept 2\n") + bytes(body) + b"x" * 5000
    path = tmp_path / "corrupt.gz"
    path.write_bytes(raw)
    lines, stats = read_all(path, read_size=64)
    assert lines[:2] == [b"kept 1", b"kept 2"]
    assert stats.truncated is not None and stats.truncated.startswith("corrupt gzip data")
    assert stats.sha256 == hashlib.sha256(raw).hexdigest()
    assert stats.bytes_read == stats.size == len(raw)


def test_read_batches_gzip_with_zero_padding_keeps_every_line(tmp_path: Path) -> None:
    """Zero padding after the last member (tape-style blocks): gzip.decompress ignores it; no line is lost."""
    text = b"".join(b'{"n": %d}\n' % n for n in range(100))
    raw = gzip.compress(text) + b"\x00" * 512
    assert gzip.decompress(raw) == text
    (tmp_path / "padded.gz").write_bytes(raw)
    lines, stats = read_all(tmp_path / "padded.gz", read_size=50)
    assert lines == text.split(b"\n")[:-1]
    assert stats.sha256 == hashlib.sha256(raw).hexdigest()


def test_read_batches_plain_without_final_newline_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x\n\ny")
    lines, stats = read_all(tmp_path / "a")
    assert lines == [b"x", b"", b"y"] and stats.truncated is None and stats.lines == 3
    (tmp_path / "empty").write_bytes(b"")
    lines, stats = read_all(tmp_path / "empty")
    assert lines == [] and stats.sha256 == hashlib.sha256(b"").hexdigest() and not stats.compressed
    (tmp_path / "one").write_bytes(b"x")
    lines, stats = read_all(tmp_path / "one")
    assert lines == [b"x"] and not stats.compressed and stats.truncated is None


def test_read_batches_one_byte_of_gzip_magic_is_a_cut_gzip(tmp_path: Path) -> None:
    """Before: read as a plain line "\\x1f", which strips to blank: a comparison file cut after one
    byte gave no row and no word, and the gate passed."""
    (tmp_path / "one").write_bytes(b"\x1f")
    lines, stats = read_all(tmp_path / "one")
    assert lines == [] and stats.compressed and stats.truncated is not None


def test_read_batches_gzip_magic_only_is_truncated(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"\x1f\x8b")
    lines, stats = read_all(tmp_path / "m")
    assert lines == [] and stats.compressed and stats.truncated is not None


def test_read_batches_uncompressed_counts_decompressed_bytes(tmp_path: Path) -> None:
    text = b"abc\n" * 10000
    (tmp_path / "z").write_bytes(gzip.compress(text))
    lines, stats = read_all(tmp_path / "z", read_size=100)
    assert len(lines) == 10000 and stats.uncompressed == len(text)
    assert stats.size == len(gzip.compress(text))


def test_read_batches_missing_file_raises_input_error(tmp_path: Path) -> None:
    stats = InputStats(tmp_path / "nope.jsonl.gz", "data/nope.jsonl.gz", "raw_websocket_messages")
    batches = read_batches(tmp_path / "nope.jsonl.gz", stats)
    with pytest.raises(InputError, match=r"^cannot read data/nope\.jsonl\.gz: "):
        next(batches)
    assert not reader_threads("data/nope.jsonl.gz")


def test_read_batches_directory_raises_input_error(tmp_path: Path) -> None:
    stats = InputStats(tmp_path, "somedir", "raw_websocket_messages")
    with pytest.raises(InputError, match="somedir"):
        list(read_batches(tmp_path, stats))


def test_read_batches_closed_early_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"0123456789abcdef\n" * 20000)
    name = "big-early-close"
    stats = InputStats(path, name, "raw_websocket_messages")
    batches = read_batches(path, stats, read_size=64)  # thousands of batches, queue holds 4
    first = next(batches)
    assert first[0] == b"0123456789abcdef"
    closer = threading.Thread(target=batches.close, daemon=True)
    closer.start()
    closer.join(60)  # a hang guard, not a timing assertion
    assert not closer.is_alive(), "closing the generator early hung"
    assert not reader_threads(name)
    assert stats.lines < 20000


def test_read_batches_abandoned_mid_file_then_reread(tmp_path: Path) -> None:
    path = tmp_path / "again.gz"
    text = b"".join(b"%d\n" % n for n in range(5000))
    path.write_bytes(gzip.compress(text))
    stats = InputStats(path, "again", "k")
    for batch in read_batches(path, stats, read_size=16):
        break
    lines, stats = read_all(path, "again", read_size=16)
    assert lines == text.split(b"\n")[:-1]
    assert stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- check_readable


def test_check_readable(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"x")
    assert check_readable(tmp_path / "ok", "ok") is None
    with pytest.raises(InputError, match=r"^cannot read data/missing\.gz: ") as missing:
        check_readable(tmp_path / "missing.gz", "data/missing.gz")
    assert "\n" not in str(missing.value)
    with pytest.raises(InputError, match=r"^cannot read the-dir: it is a directory$"):
        check_readable(tmp_path, "the-dir")


# ---------------------------------------------------------------- InputProblems


def test_input_problems_counts_complete_locations_capped() -> None:
    problems = InputProblems()
    for line in range(1, 26):
        problems.add("b/ws.jsonl", line, "not_json")
    problems.add("b/ws.jsonl", 99, "not_an_object")
    problems.add("a/rest.jsonl", 7, "not_json")
    problems.note("unparseable_received_at_utc")
    problems.note("unparseable_received_at_utc", 2)
    problems.note("anomaly")
    body = problems.as_json()
    assert body["skipped"] == [
        {"file": "a/rest.jsonl", "reason": "not_json", "count": 1, "lines": [7]},
        {"file": "b/ws.jsonl", "reason": "not_an_object", "count": 1, "lines": [99]},
        {"file": "b/ws.jsonl", "reason": "not_json", "count": 25, "lines": list(range(1, PROBLEM_LOCATIONS + 1))},
    ]
    assert body["skipped_total"] == 27
    assert body["notes"] == {"anomaly": 1, "unparseable_received_at_utc": 3}
    assert list(body["notes"]) == ["anomaly", "unparseable_received_at_utc"]
    assert body["truncated_inputs"] == []
    messages = problems.messages()
    assert messages == [
        "streamer: skipped 1 line(s) of a/rest.jsonl: not_json; lines 7",
        "streamer: skipped 1 line(s) of b/ws.jsonl: not_an_object; lines 99",
        "streamer: skipped 25 line(s) of b/ws.jsonl: not_json; lines (first 20) "
        + ", ".join(str(n) for n in range(1, 21)),
    ]


def test_input_problems_exactly_cap_has_no_first_note() -> None:
    problems = InputProblems()
    for line in range(PROBLEM_LOCATIONS):
        problems.add("f", line, "r")
    assert "(first" not in problems.messages()[0]
    problems.add("f", 1000, "r")
    assert "(first 20)" in problems.messages()[0]
    assert problems.as_json()["skipped"][0]["lines"] == list(range(PROBLEM_LOCATIONS))


def test_input_problems_truncation() -> None:
    problems = InputProblems()
    clean = InputStats(Path("x"), "data/clean.gz", "k")
    problems.add_truncation(clean)
    assert problems.as_json()["truncated_inputs"] == []
    cut = InputStats(Path("y"), "data/cut.gz", "k")
    cut.truncated = "gzip stream ends without its trailer (file still being written?)"
    problems.add_truncation(cut)
    assert problems.as_json()["truncated_inputs"] == [{"file": "data/cut.gz", "reason": cut.truncated}]
    assert problems.as_json()["skipped_total"] == 0
    assert problems.messages() == [f"streamer: data/cut.gz: {cut.truncated}"]
    # Listed by file whatever the order they were read in (follow finishes files in another order
    # than run: the 10C manifests differed, found by an outside check)
    early = InputStats(Path("z"), "data/a-rest.gz", "k")
    early.truncated = "gzip stream ends early"
    problems.add_truncation(early)
    assert [item["file"] for item in problems.as_json()["truncated_inputs"]] == ["data/a-rest.gz", "data/cut.gz"]
    assert problems.messages() == [f"streamer: data/a-rest.gz: {early.truncated}",
                                   f"streamer: data/cut.gz: {cut.truncated}"]


def test_zlib_oracle_agrees_on_truncated_member() -> None:
    """The oracle used above: zlib on a cut stream gives a prefix of the text (sanity)."""
    text = b"line\n" * 1000
    cut = gzip.compress(text)[:-30]
    out = zlib.decompressobj(31).decompress(cut)
    members = GzipMembers()
    got = feed_all(members, [cut])
    assert text.startswith(got) and text.startswith(out)


# -- holds_rounded_integer: when a row is read again with the standard parser ------------------------------

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3),
                        st.floats(allow_nan=False, allow_infinity=False))
json_trees = st.recursive(json_leaves, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=2), children, max_size=3)), max_leaves=12)


def _has_big_integer(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_big_integer(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_big_integer(item) for item in value)
    return type(value) is int and not -(2 ** 63) <= value < 2 ** 64


@settings(max_examples=300, deadline=None)
@given(value=json_trees)
def test_holds_rounded_integer_flags_every_integer_the_fast_parser_rounds(value: object) -> None:
    text = json.dumps(value).encode()
    fast = loads(text)
    flagged = holds_rounded_integer(fast)
    if _has_big_integer(value) and JSON_BACKEND == "orjson":
        assert flagged  # orjson rounded it: the row must be read again
    if not flagged:
        assert fast == json.loads(text)  # nothing rounded: the fast reading is the exact one


def test_holds_rounded_integer_looks_into_deep_rows() -> None:
    deep: object = [2.0 ** 70]
    for _ in range(5_000):  # iterative: no RecursionError
        deep = {"a": deep}
    assert holds_rounded_integer(deep)
    assert not holds_rounded_integer({"a": [1.5, 2.0 ** 62, "9" * 80, 2 ** 80]})


def test_input_problems_merge_sums_counts_and_caps_locations() -> None:
    mine, theirs = InputProblems(), InputProblems()
    for line in range(1, 16):
        mine.add("rows.gz", line, "reason")
    for line in range(100, 110):
        theirs.add("rows.gz", line, "reason")
    theirs.add("other.gz", 7, "why")
    theirs.note("something", 2)
    mine.note("something")
    cut = InputStats(Path("y"), "cut.gz", "k")
    cut.truncated = "gzip stream ends without its trailer (file still being written?)"
    theirs.add_truncation(cut)
    mine.merge(theirs)
    assert mine.counts == {("rows.gz", "reason"): 25, ("other.gz", "why"): 1}
    assert mine.locations[("rows.gz", "reason")] == [*range(1, 16), *range(100, 105)]  # 20 kept
    assert mine.locations[("other.gz", "why")] == [7]
    assert mine.notes == {"something": 3}
    assert mine.truncated == [{"file": "cut.gz", "reason": cut.truncated}]


def _finishes(call: Any) -> BaseException | None:
    """What ``call()`` raised, asserting it returned within 10 s (a FIFO with no writer blocked
    open() for ever before)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, "blocked"
    return outcome[0]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_inputs_that_are_not_regular_files_are_one_clear_error(tmp_path: Path, kind: str) -> None:
    from streamer.manifests import read_manifest
    if kind == "fifo":
        path = tmp_path / "ws.jsonl.gz"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")  # (never ends)
    error = _finishes(lambda: check_readable(path, "ws.jsonl.gz"))
    assert isinstance(error, InputError) and str(error) == "cannot read ws.jsonl.gz: not a regular file"
    error = _finishes(lambda: read_manifest(path, ("gate_status",)))
    assert isinstance(error, InputError) and str(error) == f"cannot read manifest {path}: not a regular file"
    stats = InputStats(path, "ws.jsonl.gz", "raw_websocket_messages")
    error = _finishes(lambda: list(read_batches(path, stats)))
    assert isinstance(error, InputError) and str(error) == "cannot read ws.jsonl.gz: not a regular file"
