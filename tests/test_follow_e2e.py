"""End to end: ``python -m streamer follow`` beside a simulated recorder, with real signals and kill -9.

The recorder replays a synthetic capture (:mod:`streamer.synth`) in receive-time order into
rotating files: gzip closed then a new file created, plain with lines written after the new file
exists (create-then-close), an active ``ws.jsonl`` renamed to its dated name (rename rotation),
and REST files rotating beside them. The follower's final outputs must equal ``streamer run``'s
on the same files (SPEC section 4 rules); the segments it published must hold every comparison
row once.
"""

from __future__ import annotations

import gzip
import heapq
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

import pytest

from streamer import cli
from streamer.payloads import parse_time_us
from streamer.synth import CaptureShape, generate_capture

WS_GLOB = "cap/ws*.jsonl*"
REST_GLOB = "cap/rest*.jsonl*"
OUTPUTS = ("rest_comparison_rows.jsonl.gz", "checkpoint_010c_book_reconstruction_sample.json",
           "checkpoint_010d0_ws_divergence_analysis.json", "checkpoint_010d0_ws_divergence_analysis.md")
#: Generous: these bound waits on events, never a measured duration.
TIMEOUT = 90.0

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``condition`` until it is truthy (an event we cannot be notified of); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def read_status(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return None


# -- the simulated recorder ----------------------------------------------------------------------

class Capture:
    """A synthetic capture as the recorder will write it: lines in receive-time order."""

    def __init__(self, root: Path, seed: int, ws_lines: int) -> None:
        source = root / "source"
        shape = CaptureShape(markets=2, ws_lines=ws_lines, gzip=False, drop_rate=0.01, rest_interval_seconds=2.0,
                             rest_lag_ms=(-300, 900), legacy_price_change_fraction=0.1, duplicate_rate=0.005,
                             rest_error_rate=0.05, pong_rate=0.01)
        made = generate_capture(source, shape, seed)
        self.ws = made.ws_files[0].read_bytes().splitlines(keepends=True)
        self.rest = made.rest_files[0].read_bytes().splitlines(keepends=True)
        self.markets = json.loads(made.manifest_10b.read_text())["markets"]

        def stamped(kind: int, lines: list[bytes]) -> list[tuple[int, int, int, bytes]]:
            return [(parse_time_us(json.loads(line)["received_at_utc"]) or 0, kind, index, line)
                    for index, line in enumerate(lines)]

        # Receive-time order; on a tie the websocket row first (it was received first).
        self.events = list(heapq.merge(stamped(0, self.ws), stamped(1, self.rest)))


class Recorder:
    """Writes a :class:`Capture` into rotating files under ``cap/``, as a recorder would.

    Websocket files: ``ws-0001.jsonl.gz`` (gzip; closed, then the next created),
    ``ws-0002.jsonl`` (plain; the next file is created before its last lines are written),
    ``ws.jsonl`` (plain; renamed to ``ws-0003.jsonl`` when the next is created),
    ``ws-0004.jsonl.gz`` (gzip, the last). REST: ``rest-0001.jsonl`` (plain), then
    ``rest-0002.jsonl.gz`` (gzip). Every batch of lines is flushed to disk.
    """

    WS_FILES = ("ws-0001.jsonl.gz", "ws-0002.jsonl", "ws-0003.jsonl", "ws-0004.jsonl.gz")
    REST_FILES = ("rest-0001.jsonl", "rest-0002.jsonl.gz")
    LATE_LINES = 7

    def __init__(self, root: Path, capture: Capture, *, batch: int = 40, pause: float = 0.0) -> None:
        self.dir = root / "cap"
        self.dir.mkdir()
        self.capture = capture
        self.batch = batch
        self.pause = pause
        ws_total = len(capture.ws)
        self.ws_cuts = [ws_total * k // 4 for k in (1, 2, 3)]
        self.rest_cut = len(capture.rest) // 2
        self.ws_part = 0
        self.rest_part = 0
        self.ws_out = self._open("ws-0001.jsonl.gz")
        self.rest_out = self._open("rest-0001.jsonl")
        self.old_ws: tuple[IO[bytes], IO[bytes]] | None = None  # create-then-close: the previous file
        self.written = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._gate = threading.Semaphore(0)
        self._gated = False

    def _open(self, name: str) -> tuple[IO[bytes], IO[bytes]]:
        raw = open(self.dir / name, "wb")
        out: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if name.endswith(".gz") else raw  # type: ignore[assignment]
        return raw, out

    @staticmethod
    def _close(pair: tuple[IO[bytes], IO[bytes]]) -> None:
        raw, out = pair
        if out is not raw:
            out.close()
        raw.close()

    @staticmethod
    def _flush(pair: tuple[IO[bytes], IO[bytes]]) -> None:
        raw, out = pair
        out.flush()
        raw.flush()

    def manifest(self) -> Path:
        """The 10B manifest naming the files as they will be at the end (what ``run`` reads)."""
        files = [{"path": f"cap/{name}", "kind": "raw_websocket_messages"} for name in self.WS_FILES]
        files += [{"path": f"cap/{name}", "kind": "rest_books_checkpoints"} for name in self.REST_FILES]
        path = self.dir / "manifest_10b.json"
        path.write_text(json.dumps({"gate_status": "WS_RAW_SAMPLE_PASS", "markets": self.capture.markets,
                                    "output_files": files}, indent=2))
        return path

    def _ws_line(self, index: int, line: bytes) -> None:
        cuts = self.ws_cuts
        if self.ws_part == 0 and index == cuts[0]:
            self._close(self.ws_out)  # close, then create
            self.ws_out = self._open("ws-0002.jsonl")
            self.ws_part = 1
        elif self.ws_part == 1 and index == cuts[1] - self.LATE_LINES:
            self.old_ws = self.ws_out  # create, then (after a few more lines) close
            self.ws_out = self._open("ws.jsonl")
            self.ws_part = 2
        elif self.ws_part == 2 and index == cuts[1]:
            assert self.old_ws is not None
            self._close(self.old_ws)
            self.old_ws = None
        elif self.ws_part == 2 and index == cuts[2]:
            self._close(self.ws_out)  # rename to the dated name, then create the next
            os.rename(self.dir / "ws.jsonl", self.dir / "ws-0003.jsonl")
            self.ws_out = self._open("ws-0004.jsonl.gz")
            self.ws_part = 3
        target = self.old_ws if self.old_ws is not None else self.ws_out
        target[1].write(line)

    def _rest_line(self, index: int, line: bytes) -> None:
        if self.rest_part == 0 and index == self.rest_cut:
            self._close(self.rest_out)
            self.rest_out = self._open("rest-0002.jsonl.gz")
            self.rest_part = 1
        self.rest_out[1].write(line)

    def write(self, count: int) -> None:
        """Write the next ``count`` lines (both streams, receive-time order) and flush them."""
        events = self.capture.events
        end = min(len(events), self.written + count)
        for _time, kind, index, line in events[self.written:end]:
            if kind == 0:
                self._ws_line(index, line)
            else:
                self._rest_line(index, line)
        self.written = end
        for pair in (self.old_ws, self.ws_out, self.rest_out):
            if pair is not None:
                self._flush(pair)

    def finish(self) -> None:
        """Write the rest and close every file (the recorder stops cleanly)."""
        self.write(len(self.capture.events))
        for pair in (self.old_ws, self.ws_out, self.rest_out):
            if pair is not None:
                self._close(pair)
        self.old_ws = None

    def run(self) -> None:
        """Thread body: write the capture in paced batches."""
        try:
            while self.written < len(self.capture.events):
                self.write(self.batch)
                if self.pause:
                    time.sleep(self.pause)  # the recorder's own pace (not a test wait)
            self.finish()
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()


# -- follow and run ------------------------------------------------------------------------------

def follow_command(extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "streamer", "follow", "--ws", WS_GLOB, "--rest", REST_GLOB,
            "--manifest-10b", "cap/manifest_10b.json", "--out", "out", "--state", "state",
            "--poll", "0.05", "--rotate-wait", "0.5", "--rest-wait", "0.5", "--flush-interval", "0.2",
            *(extra or [])]


def start_follow(root: Path, extra: list[str] | None = None, command: list[str] | None = None
                 ) -> subprocess.Popen[bytes]:
    with open(root / "follow.log", "ab") as log:
        return subprocess.Popen(command or follow_command(extra), cwd=root, stdout=subprocess.PIPE, stderr=log)


def finish(proc: subprocess.Popen[bytes], root: Path) -> tuple[int, str]:
    try:
        stdout, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("follow did not finish; its log:\n" + (root / "follow.log").read_text())
    return proc.returncode, stdout.decode()


def run_reference(root: Path) -> Path:
    """``streamer run`` on the recorder's final files, in a copy of the tree (same relative names)."""
    batch_root = root / "batch"
    batch_root.mkdir()
    shutil.copytree(root / "cap", batch_root / "cap")
    cwd = os.getcwd()
    os.chdir(batch_root)
    try:
        code = cli.main(["run", "--manifest-10b", "cap/manifest_10b.json",
                         "--output-rows", f"out/{OUTPUTS[0]}", "--manifest-10c", f"out/{OUTPUTS[1]}",
                         "--output-manifest", f"out/{OUTPUTS[2]}", "--output-report", f"out/{OUTPUTS[3]}"])
    finally:
        os.chdir(cwd)
    assert code in (0, 1)
    return batch_root / "out"


def assert_same_as_run(out: Path, expected: Path) -> None:
    """SPEC section 4: rows and 10C manifest identical; divergence manifest equal but for
    started/ended/analyzer and the keys streamer adds; the report equal but for its date."""
    assert (out / OUTPUTS[0]).read_bytes() == (expected / OUTPUTS[0]).read_bytes(), "comparison rows differ"
    assert (out / OUTPUTS[1]).read_bytes() == (expected / OUTPUTS[1]).read_bytes(), "10C manifest differs"
    mine = json.loads((out / OUTPUTS[2]).read_text())
    theirs = json.loads((expected / OUTPUTS[2]).read_text())
    for key in ("started_at_utc", "ended_at_utc", "analyzer", "streaming", "follow"):
        mine.pop(key, None)
        theirs.pop(key, None)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key] == theirs[key], f"divergence manifest differs at {key}"
    report = [line for line in (out / OUTPUTS[3]).read_text().splitlines() if not line.startswith("Created:")]
    reference = [line for line in (expected / OUTPUTS[3]).read_text().splitlines() if not line.startswith("Created:")]
    assert report == reference


def assert_segments_complete(out: Path) -> None:
    """Every comparison row is in exactly one published segment, in order; divergence rows are a prefix.

    A segment names files as they were named when it was published: the active ``ws.jsonl``
    became ``ws-0003.jsonl`` later (the final outputs use the names at exit).
    """
    def renamed(data: bytes) -> bytes:
        return data.replace(b'"cap/ws.jsonl"', b'"cap/ws-0003.jsonl"')

    index = [json.loads(line) for line in (out / "segments" / "index.jsonl").read_text().splitlines()]
    assert [entry["segment"] for entry in index] == list(range(1, len(index) + 1))
    rows = b"".join(renamed(gzip.open(out / entry["path"] / OUTPUTS[0]).read()) for entry in index)
    assert rows == gzip.open(out / OUTPUTS[0]).read(), "segments do not hold every comparison row once"
    divergences = [json.loads(renamed(line)) for entry in index
                   for line in gzip.open(out / entry["path"] / "divergence_rows.jsonl.gz")]
    final = json.loads((out / OUTPUTS[2]).read_text())["divergence_rows"]
    assert divergences == final[:len(divergences)]


@pytest.fixture
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    return Capture(tmp_path_factory.mktemp("capture"), seed=20261124, ws_lines=4000)


# -- the tests -----------------------------------------------------------------------------------

def test_kill_9_in_the_middle_then_restart_equals_run(tmp_path: Path, capture: Capture) -> None:
    """A recorder rotating in every form; follow killed with SIGKILL mid-run and restarted: nothing lost or doubled."""
    recorder = Recorder(tmp_path, capture, batch=60, pause=0.05)
    recorder.manifest()
    writer = threading.Thread(target=recorder.run, name="recorder")
    writer.start()
    try:
        out = tmp_path / "out"
        first = start_follow(tmp_path)
        # Kill it once it has published a few segments and the recorder has rotated at least once.
        wait_for(lambda: (status := read_status(out)) and status["segments"]["count"] >= 3
                 and recorder.ws_part >= 1, "a few segments")
        first.kill()
        first.communicate(timeout=TIMEOUT)
        assert first.returncode == -signal.SIGKILL
        second = start_follow(tmp_path, ["--exit-when-idle", "2"])
        writer.join(TIMEOUT)
        assert recorder.error is None
        code, stdout = finish(second, tmp_path)
    finally:
        writer.join(TIMEOUT)
    assert code == 0, (tmp_path / "follow.log").read_text()
    assert "RECONSTRUCTION_ROWS=out/rest_comparison_rows.jsonl.gz" in stdout
    log = (tmp_path / "follow.log").read_text()
    assert "resuming from state" in log
    assert "renamed to cap/ws-0003.jsonl" in log
    assert_same_as_run(out, run_reference(tmp_path))
    assert_segments_complete(out)
    status = read_status(out)
    assert status is not None and status["state"] == "stopped" and status["stop_reason"] == "idle"


def _follow_a_finished_capture(tmp_path: Path, capture: Capture) -> subprocess.Popen[bytes]:
    """A follow over a capture already written whole, once it has processed every websocket row."""
    recorder = Recorder(tmp_path, capture)
    recorder.manifest()
    recorder.finish()
    proc = start_follow(tmp_path)
    ws_rows = sum(1 for line in capture.ws if line.strip())
    wait_for(lambda: (status := read_status(tmp_path / "out")) and status["totals"]["websocket_rows"] == ws_rows,
             "every websocket row processed")
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_and_publishes(tmp_path: Path, capture: Capture, signum: int) -> None:
    """SIGTERM or SIGINT: the batch in hand is finished, the four outputs published, exit 0."""
    out = tmp_path / "out"
    proc = _follow_a_finished_capture(tmp_path, capture)
    proc.send_signal(signum)
    code, _stdout = finish(proc, tmp_path)
    assert code == 0, (tmp_path / "follow.log").read_text()
    assert f"{signal.Signals(signum).name}: finishing the batch in hand" in (tmp_path / "follow.log").read_text()
    assert_same_as_run(out, run_reference(tmp_path))
    assert_segments_complete(out)
    status = read_status(out)
    assert status is not None and status["stop_reason"] == signal.Signals(signum).name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_while_winding_down_are_ignored(tmp_path: Path, capture: Capture, signum: int) -> None:
    """After the first signal, more of them (every few milliseconds until the process ends) change
    nothing: exit 0 with the outputs. (A second one in the last tenth of a second used to kill it.)"""
    out = tmp_path / "out"
    proc = _follow_a_finished_capture(tmp_path, capture)
    proc.send_signal(signum)
    while proc.poll() is None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:  # (ended between the poll and the signal)
            break
        time.sleep(0.003)
    code, _stdout = finish(proc, tmp_path)
    log = (tmp_path / "follow.log").read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert_same_as_run(out, run_reference(tmp_path))


def test_comparison_visible_within_flush_interval_and_poll(tmp_path: Path, capture: Capture) -> None:
    """Once the websocket passes a checkpoint, its comparison rows reach a published segment promptly."""
    recorder = Recorder(tmp_path, capture)
    recorder.manifest()
    events = capture.events
    # Stop just after the third REST row: everything up to it is on disk, nothing received after it.
    rest_positions = [position for position, event in enumerate(events) if event[1] == 1]
    checkpoint = rest_positions[2]
    recorder.write(checkpoint + 1)
    checkpoint_time = json.loads(events[checkpoint][3])["received_at_utc"]
    out = tmp_path / "out"
    flush, poll = 1.0, 0.1
    command = follow_command()
    command[command.index("--flush-interval") + 1] = str(flush)
    command[command.index("--poll") + 1] = str(poll)
    proc = start_follow(tmp_path, command=command)
    try:
        ws_before = sum(1 for event in events[:checkpoint] if event[1] == 0)
        wait_for(lambda: (status := read_status(out)) and status["totals"]["websocket_rows"] == ws_before,
                 "the rows before the checkpoint")

        def published() -> bool:
            index = out / "segments" / "index.jsonl"
            if not index.exists():
                return False
            for line in index.read_text().splitlines():
                entry = json.loads(line)
                rows = gzip.open(out / entry["path"] / OUTPUTS[0]).read().splitlines()
                if any(json.loads(row)["rest_checkpoint_received_at_utc"] == checkpoint_time for row in rows):
                    return True
            return False

        assert not published(), "compared before the websocket stream passed the checkpoint"
        passed = time.monotonic()
        recorder.write(1)  # the first websocket row received after the checkpoint
        assert events[checkpoint + 1][1] == 0
        wait_for(published, "the checkpoint's comparison rows in a segment")
        latency = time.monotonic() - passed
        # Bound: flush interval + poll, plus generous slack for a loaded CI machine.
        assert latency < flush + poll + 15.0, latency
    finally:
        proc.send_signal(signal.SIGTERM)
        code, _ = finish(proc, tmp_path)
        recorder.finish()
    assert code == 0


def test_restart_with_other_flags_is_refused(tmp_path: Path, capture: Capture,
                                             run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A state made with one --top-n cannot be continued with another: one clear line, exit 2."""
    recorder = Recorder(tmp_path, capture)
    recorder.manifest()
    recorder.write(200)
    monkeypatch.chdir(tmp_path)
    args = follow_command()[3:]
    first = run_cli(*args, "--exit-when-idle", "0.5")
    assert first.code == 0, first.stderr
    second = run_cli(*args, "--exit-when-idle", "0.5", "--top-n", "5")
    assert second.code == 2
    assert second.stderr[-1].startswith("streamer follow: error: the state in state was made with other flags: "
                                        "--top-n 10 (now 5); use the same flags")
    recorder.finish()
