"""Coverage tests for streamer.writer: the ordered spool, atomic files, gzip rows, json_body."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import stat
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import writer
from streamer.writer import AtomicFile, GzipRowsWriter, OrderedSpool, fsync_directory, json_body, write_atomic

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def record(seq: int, width: int) -> tuple[bytes, ...]:
    # binary, empty and newline-holding fields must all survive a spill
    return tuple([b"seq=%d field=%d\n\x00" % (seq, i) if (seq + i) % 3 else b"" for i in range(width)])


# ---------------------------------------------------------------- OrderedSpool


@SETTINGS
@given(order=st.integers(0, 60).flatmap(lambda n: st.permutations(list(range(n)))),
       limit=st.integers(0, 4), width=st.integers(1, 3), byte_limit=st.sampled_from([0, 30, 100, 1 << 20]))
def test_ordered_spool_outputs_in_order(tmp_path_factory: pytest.TempPathFactory, order: list[int], limit: int,
                                        width: int, byte_limit: int) -> None:
    spill_dir = tmp_path_factory.mktemp("spool")
    out: list[tuple[bytes, ...]] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), width, spill_dir, buffer_limit=limit,
                         byte_limit=byte_limit)
    for seq in order:
        spool.put(seq, record(seq, width))
        spool._check()
    spool.finish(len(order))
    spool._check()
    assert out == [record(seq, width) for seq in range(len(order))]
    assert spool.next_seq == len(order)
    assert leftovers(spill_dir) == []  # run files are removed


def test_ordered_spool_spills_and_writes_the_in_order_prefix_at_once(tmp_path: Path) -> None:
    out: list[tuple[bytes, ...]] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), 2, tmp_path, buffer_limit=2)
    for seq in (5, 4, 3, 2, 1):
        spool.put(seq, record(seq, 2))
    assert out == []
    assert spool.spilled_records > 0
    assert any(name.startswith("run-") for name in leftovers(tmp_path))
    # 5, 4, 3 overflowed the buffer and went to a run file; 2 and 1 are held in memory
    spool.put(0, record(0, 2))
    assert out == [record(0, 2), record(1, 2), record(2, 2)]  # 0 goes straight out, with what it unblocks
    spool.put(6, record(6, 2))
    spool.finish(7)
    assert out == [record(seq, 2) for seq in range(7)]
    assert leftovers(tmp_path) == []


def test_ordered_spool_spills_by_bytes_as_well_as_by_records(tmp_path: Path) -> None:
    """Records of a large --context-limit are hundreds of KB: a count alone would hold gigabytes."""
    out: list[tuple[bytes, ...]] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), 1, tmp_path, buffer_limit=4096, byte_limit=1000)
    for seq in (3, 2):
        spool.put(seq, (b"x" * 400,))
    assert spool.spilled_records == 0
    spool.put(1, (b"x" * 400,))  # 1,200 bytes held: over the byte limit, far under the count
    assert spool.spilled_records == 3 and spool._held == 0
    spool._check()
    spool.put(0, (b"y",))
    spool.finish(4)
    assert out == [(b"y",)] + [(b"x" * 400,)] * 3


def test_ordered_spool_releases_held_records_in_order(tmp_path: Path) -> None:
    out: list[tuple[bytes, ...]] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), 1, tmp_path, buffer_limit=100)
    spool.put(2, (b"2",))
    spool.put(1, (b"1",))
    assert out == []
    spool.put(0, (b"0",))
    assert out == [(b"0",), (b"1",), (b"2",)]
    assert spool.spilled_records == 0
    spool.finish(3)


def test_ordered_spool_missing_sequence_raises(tmp_path: Path) -> None:
    spool = OrderedSpool(lambda _seq, fields: None, 1, tmp_path, buffer_limit=1)
    for seq in (0, 1, 3, 4, 5):
        spool.put(seq, (b"x",))
    with pytest.raises(RuntimeError, match="got 3, expected 2"):
        spool.finish(6)


def test_ordered_spool_incomplete_raises(tmp_path: Path) -> None:
    out: list[Any] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), 1, tmp_path)
    spool.put(0, (b"x",))
    spool.put(1, (b"y",))
    with pytest.raises(RuntimeError, match="2 of 3"):
        spool.finish(3)


def test_ordered_spool_repeated_sequence_raises(tmp_path: Path) -> None:
    spool = OrderedSpool(lambda _seq, fields: None, 1, tmp_path, buffer_limit=0)
    for seq in (1, 1, 0):
        spool.put(seq, (b"x",))
    with pytest.raises(RuntimeError):
        spool.finish(2)


def test_ordered_spool_empty(tmp_path: Path) -> None:
    out: list[Any] = []
    spool = OrderedSpool(lambda _seq, fields: out.append(fields), 3, tmp_path)
    spool.finish(0)
    assert out == []


# ---------------------------------------------------------------- AtomicFile


def test_atomic_file_commit_renames_into_place(tmp_path: Path) -> None:
    target = tmp_path / "out" / "manifest.json"  # the parent is created
    with AtomicFile(target) as out:
        out.handle.write(b"partial")
        assert not target.exists()  # nothing is visible before the commit
        assert out.temp.parent == target.parent and out.temp.exists()
        out.handle.write(b" then complete")
    assert target.read_bytes() == b"partial then complete"
    assert leftovers(target.parent) == ["manifest.json"]


def test_atomic_file_replaces_an_existing_file_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old")
    out = AtomicFile(target, "w")
    out.handle.write("new")
    assert target.read_text() == "old"
    out.commit()
    assert target.read_text() == "new"
    out.commit()  # a second commit is a no-op
    out.abort()  # and so is an abort after it: the destination stays
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == ["report.md"]


def test_atomic_file_abort_leaves_destination_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_bytes(b"previous")
    out = AtomicFile(target)
    out.handle.write(b"half")
    temp = out.temp
    out.abort()
    assert target.read_bytes() == b"previous"
    assert not temp.exists()
    assert leftovers(tmp_path) == ["m.json"]
    out.abort()  # idempotent


def test_atomic_file_exception_inside_with_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    with pytest.raises(ZeroDivisionError):
        with AtomicFile(target) as out:
            out.handle.write(b"x" * 1000)
            1 / 0
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_atomic_file_collected_while_open_warns_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    with pytest.warns(ResourceWarning, match="collected while open"):
        out = AtomicFile(target)
        out.handle.write(b"x")
        del out
        gc.collect()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_file_failed_commit_removes_the_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         failing: str) -> None:
    """A commit that fails (a full disk at fsync, a rename refused) leaves no temporary file behind."""
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def refuse(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    atomic = AtomicFile(target)
    atomic.handle.write(b"new")
    monkeypatch.setattr(os, failing, refuse)
    with pytest.raises(OSError, match="No space") as raised:
        atomic.commit()
    assert raised.value.filename == str(target)  # the output, never its temporary name
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["out.json"]
    atomic.commit()  # (a no-op now: the file was dropped)
    assert target.read_bytes() == b"old"


class _FullDisk:
    """A file handle whose writes fail as on a full disk (no file named, as os.write's errors)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_failed_write_names_the_output_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(OSError, match="No space") as raised:
        with AtomicFile(target) as out:
            out.handle = _FullDisk(out.handle)  # type: ignore[assignment]
            out.handle.write(b"data")
    assert raised.value.filename == str(target)
    with pytest.raises(OSError, match="No space") as raised:
        with GzipRowsWriter(tmp_path / "rows.gz") as writer:
            writer._file.handle = _FullDisk(writer._file.handle)  # type: ignore[assignment]
            for _ in range(2000):  # until the compressor lets bytes out
                writer.write(b'{"row": "%d"}' % _)
            writer.commit()
    assert raised.value.filename == str(tmp_path / "rows.gz")
    assert leftovers(tmp_path) == []


def test_an_error_about_another_file_inside_an_atomic_write_is_left_as_it_is(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        with AtomicFile(tmp_path / "out.json") as out:
            out.handle.write((tmp_path / "missing-spool").read_bytes())
    assert raised.value.filename == str(tmp_path / "missing-spool")
    assert leftovers(tmp_path) == []


def test_write_atomic(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a" / "b.txt", b"data")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"data"
    assert leftovers(tmp_path / "a") == ["b.txt"]


def test_an_output_that_is_a_pipe_or_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    """``--output-report /dev/null`` (or a FIFO): renaming over the node would replace it with a
    plain file (for root, /dev/null itself). Shown on a FIFO, whose reader gets the bytes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # (a reader: the writer's open does not wait)
    try:
        write_atomic(fifo, b"report\n")
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert os.read(reader, 100) == b"report\n"
        with pytest.raises(ValueError):
            with AtomicFile(fifo) as out:
                out.handle.write(b"half")
                raise ValueError("stopped")
        assert stat.S_ISFIFO(fifo.stat().st_mode)  # an abort leaves the node too
    finally:
        os.close(reader)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fifo"]
    with AtomicFile(Path(os.devnull)) as out:  # a character device: written into, never renamed over
        out.handle.write(b"gone")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_an_output_with_a_name_near_name_max_is_written(tmp_path: Path) -> None:
    """Its temporary file's name (".NAME.xxxxxxxx.tmp") must stay within NAME_MAX (255) too."""
    path = tmp_path / ("r" * 250)
    write_atomic(path, b"rows")
    assert path.read_bytes() == b"rows"
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]


def test_fsync_directory_tolerates_missing_paths(tmp_path: Path) -> None:
    fsync_directory(tmp_path)
    fsync_directory(tmp_path / "does-not-exist")


# ---------------------------------------------------------------- GzipRowsWriter

rows_strategy = st.lists(st.binary(max_size=80).filter(lambda row: b"\n" not in row), max_size=40)


@SETTINGS
@given(rows=rows_strategy)
def test_gzip_rows_writer_hash_size_and_rows_equal_the_file(tmp_path_factory: pytest.TempPathFactory,
                                                            rows: list[bytes]) -> None:
    directory = tmp_path_factory.mktemp("rows")
    target = directory / "rows.jsonl.gz"
    with GzipRowsWriter(target) as writer:
        for row in rows:
            writer.write(row)
    data = target.read_bytes()
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    assert writer.size == len(data)
    assert writer.rows == len(rows)
    assert gzip.decompress(data) == b"".join(row + b"\n" for row in rows)
    assert leftovers(directory) == ["rows.jsonl.gz"]


def test_gzip_rows_writer_is_deterministic(tmp_path: Path) -> None:
    rows = [json.dumps({"n": n, "text": "é" * (n % 5)}).encode() for n in range(3000)]
    digests = set()
    for name in ("a.jsonl.gz", "other-name.gz"):
        with GzipRowsWriter(tmp_path / name) as writer:
            for row in rows:
                writer.write(row)
        data = (tmp_path / name).read_bytes()
        assert data[:2] == b"\x1f\x8b"
        assert data[3] == 0  # no file name (or other optional header field)
        assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
        digests.add(hashlib.sha256(data).hexdigest())
        assert writer.sha256 in digests
    assert len(digests) == 1


@SETTINGS
@given(rows=rows_strategy, cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_gzip_rows_writer_bytes_depend_on_the_content_only(tmp_path_factory: pytest.TempPathFactory,
                                                           rows: list[bytes], cuts: list[int]) -> None:
    """The same content gives the same bytes however it reached the compressor.

    A compressor whose output depends on call boundaries or machine state (ISA-L's did, on CI)
    breaks "same rows, same sha256" between commands and machines.
    """
    directory = tmp_path_factory.mktemp("rows")
    with GzipRowsWriter(directory / "rows.jsonl.gz") as writer:
        for row in rows:
            writer.write(row)
    content = b"".join(row + b"\n" for row in rows)
    whole = zlib.compressobj(1, zlib.DEFLATED, 31)
    assert (directory / "rows.jsonl.gz").read_bytes() == whole.compress(content) + whole.flush()
    pieces = zlib.compressobj(1, zlib.DEFLATED, 31)
    bounds = [0, *sorted(cut % (len(content) + 1) for cut in cuts), len(content)]
    split = b"".join(pieces.compress(content[a:b]) for a, b in zip(bounds, bounds[1:])) + pieces.flush()
    assert split == (directory / "rows.jsonl.gz").read_bytes()


def test_gzip_rows_writer_empty_and_error(tmp_path: Path) -> None:
    with GzipRowsWriter(tmp_path / "empty.gz") as writer:
        pass
    assert gzip.decompress((tmp_path / "empty.gz").read_bytes()) == b""
    assert writer.rows == 0
    with pytest.raises(KeyError):
        with GzipRowsWriter(tmp_path / "failed.gz") as writer:
            writer.write(b"{}")
            raise KeyError("boom")
    assert leftovers(tmp_path) == ["empty.gz"]


# ---------------------------------------------------------------- json_body

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_json_body_is_the_members_of_the_object(value: dict[str, Any]) -> None:
    body = json_body(value)
    assert json.loads("{" + body + "}") == value
    assert "{" + ("\n" + body + "\n" if body else "") + "}" == json.dumps(value, indent=2, sort_keys=True)
    assert body.isascii()  # escapes, so a lone surrogate can always be written
    if value:
        # the manifest writer puts it after its own arrays
        assert json.loads('{\n  "divergence_rows": [],\n' + body + "\n}") == {"divergence_rows": [], **value} \
            if "divergence_rows" not in value else True
        assert all(line.startswith("  ") for line in body.split("\n"))


def test_json_body_examples() -> None:
    assert json_body({}) == ""
    assert json_body({"b": 1, "a": "é"}) == '  "a": "\\u00e9",\n  "b": 1'
    assert json_body({"s": "\ud800"}) == '  "s": "\\ud800"'


def test_outputs_get_the_mode_open_would_give_not_mkstemps_0600(tmp_path: Path) -> None:
    """Outputs are read by others (a dashboard reading status.json, a colleague's report)."""
    write_atomic(tmp_path / "status.json", b"{}")
    mode = stat.S_IMODE((tmp_path / "status.json").stat().st_mode)
    assert mode == 0o666 & ~writer._UMASK
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert mode == stat.S_IMODE(plain.stat().st_mode)  # what any program writing it would get
    assert os.access(tmp_path / "status.json", os.R_OK)
