"""The state directory of ``streamer follow``: one atomically replaced state file, append-only spools.

Layout (``--state DIR``)::

    lock            held (flock) while a follower runs: two followers never share a state (and
                    ``OUT/.streamer-follow.lock`` likewise: never an output directory either)
    state.pkl       the commit point: the engines, the cursors and the committed length of every
                    append-only file below; replaced atomically after the outputs are written
    work/           the analysis spools (divergence rows, references, report lines, misses, runs)
    rows.spool.gz   every comparison row so far, one gzip member per flush (for the final file)

A crash (``kill -9``) can leave bytes past the committed lengths, a half-written segment, a
temporary file: :meth:`StateDir.load` is followed by cutting every spool back to its committed
length, and the segments the state does not list are removed, so nothing is written twice.

The state file is a pickle (the engines hold Decimals, SortedDicts, SortedKeyLists, tuples and
dicts): it is trusted, as the process's own memory is; never point ``--state`` at a directory
someone else can write.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

from .errors import UsageError
from .writer import AtomicFile, fsync_directory

STATE_FILE = "state.pkl"
WORK_DIR = "work"
ROWS_SPOOL = "rows.spool.gz"
LOCK_FILE = "lock"
#: The lock a follower holds in its output directory (hidden: the published view is the outputs).
OUT_LOCK_FILE = ".streamer-follow.lock"
FINAL_WORK = "final-work"
#: Version of the state file's layout; a state of another version is refused.
STATE_FORMAT = 1


class StateDir:
    """The state directory of one follower (see the module docstring).

    :param path: the directory (created when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._locks: list[IO[bytes]] = []

    @property
    def work(self) -> Path:
        """The analysis spools' directory, ``work/``. Cost: O(1). Raises nothing."""
        return self.path / WORK_DIR

    @property
    def rows_spool(self) -> Path:
        """The comparison rows spool, ``rows.spool.gz``. Cost: O(1). Raises nothing."""
        return self.path / ROWS_SPOOL

    @property
    def final_work(self) -> Path:
        """The copy of the spools an exit works on, ``final-work/``. Cost: O(1). Raises nothing."""
        return self.path / FINAL_WORK

    def lock(self, out: Path | None = None) -> None:
        """Take the directory's lock for this process, and with ``out`` the output directory's.

        Two followers with other state directories would otherwise publish into one ``out``,
        each removing the other's segments.

        Cost: O(1); raises UsageError (below), or OSError when a lock file cannot be opened.

        :raises UsageError: when another process holds either (then neither is held).
        """
        self._locks.append(_flock(self.path / LOCK_FILE,
                                  f"another streamer follow is using the state directory {self.path}"))
        if out is not None:
            try:
                self._locks.append(_flock(Path(out) / OUT_LOCK_FILE,
                                          f"another streamer follow is publishing to {out}"))
            except BaseException:
                self.unlock()
                raise

    def unlock(self) -> None:
        """Release the locks (close their files); nothing when none is held. Cost: O(1). Raises nothing."""
        for handle in self._locks:
            handle.close()
        self._locks = []

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (a fresh start).

        A temporary state file a kill left beside it (never the commit point) is removed.

        Cost: O(size of the state file); raises UsageError (below) for any read or unpickling failure.

        :raises UsageError: when the state file is unreadable or of another format.
        """
        remove_leftovers(self.path, [STATE_FILE])
        path = self.path / STATE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"cannot read the follow state {path}: {exc.strerror or exc}") from None
        try:
            state = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state"
            raise UsageError(f"{path} is not a streamer follow state ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UsageError(f"{path} is a state of another streamer version; use a new --state directory")
        return state

    def save(self, data: bytes) -> None:
        """Replace the state file atomically (the commit point of a flush). Cost: O(len(data))."""
        with AtomicFile(self.path / STATE_FILE) as out:
            out.handle.write(data)

    def fresh(self) -> None:
        """Start over: drop the spools and anything a previous, uncommitted start left.

        Cost: O(files removed); raises OSError when the rows spool cannot be removed or ``work/`` made.
        """
        for name in (WORK_DIR, FINAL_WORK):
            shutil.rmtree(self.path / name, ignore_errors=True)
        try:
            self.rows_spool.unlink()
        except FileNotFoundError:
            pass
        self.work.mkdir()

    def cut_rows_spool(self, length: int) -> None:
        """Cut the comparison rows spool back to its committed length (creating it when missing).

        Cost: O(1); raises UsageError (below), OSError when the spool cannot be created or cut.

        :raises UsageError: when it is shorter than that (it does not belong to this state).
        """
        path = self.rows_spool
        if not path.exists():
            path.touch()
        size = path.stat().st_size
        if size < length:
            raise UsageError(f"{path} is shorter than the state says ({size} < {length} bytes)")
        os.truncate(path, length)

    def remove_unlisted_runs(self, keep: list[Path]) -> None:
        """Remove the reorder buffer's run files that the state does not name, and ``final-work/``.

        Cost: O(files in ``work/`` and ``final-work/``); raises OSError when a run file cannot be removed.
        """
        wanted = {path.name for path in keep}
        for path in self.work.glob("run-*.bin"):
            if path.name not in wanted:
                path.unlink()
        shutil.rmtree(self.final_work, ignore_errors=True)


def append_durably(path: Path, data: bytes) -> int:
    """Append ``data`` to ``path``, fsync it; returns the new length.

    Cost: O(len(data)) plus an fsync; raises OSError when ``path`` cannot be opened, written or synced.
    """
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def fsync_paths(paths: list[Path]) -> None:
    """fsync each existing file of ``paths`` (data written by other handles included).

    Cost: one fsync per file; raises OSError when an existing file cannot be opened or synced.
    """
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_directory(temp: Path, final: Path) -> None:
    """Rename a complete directory into place and make the rename durable.

    Cost: a rename and a directory fsync; raises OSError when the rename fails (a failed fsync is ignored).
    """
    os.replace(temp, final)
    fsync_directory(final.parent)


def _flock(path: Path, busy: str) -> IO[bytes]:
    """Open ``path`` and take its exclusive lock; raise UsageError(``busy``) when another holds it. Cost: O(1)."""
    handle = open(path, "a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(busy) from None
    return handle


def remove_leftovers(directory: Path, names: list[str]) -> None:
    """Remove the temporary files :class:`~streamer.writer.AtomicFile` left for ``names`` (a kill mid-write).

    Call it holding the lock: no other writer is then at work. Cost: O(entries of ``directory``);
    raises nothing (a file that cannot be removed stays).
    """
    for name in names:
        for leftover in directory.glob(f".{glob_escape(name)}.*.tmp"):
            try:
                leftover.unlink()
            except OSError:
                pass
