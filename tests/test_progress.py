"""Progress on stderr: its line, its pace, and that it goes to a terminal only, never to stdout."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from streamer.batch import Progress
from streamer.synth import CaptureShape, generate_capture
from tests.test_follow_tail import Clock


class Terminal:
    """A stderr that says it is a terminal and keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def _progress(monkeypatch: pytest.MonkeyPatch, total: int = 1000) -> tuple[Progress, Any, Clock, Terminal]:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    clock = Clock()
    stats = SimpleNamespace(bytes_read=0)
    return Progress(True, [stats], total, clock=clock), stats, clock, terminal  # type: ignore[list-item]


def test_the_line_gives_share_counts_elapsed_and_time_left_once_the_pace_means_something(
        monkeypatch: pytest.MonkeyPatch) -> None:
    progress, stats, clock, _terminal = _progress(monkeypatch, total=24_000_000)
    progress.lines = 65_536
    progress.divergences = lambda: 1_822
    stats.bytes_read = 6_000_000
    clock.now += 1.5  # too early for an estimate
    assert progress.line(clock.now) == ("streamer: 6.0/24.0 MB read (25%), 65,536 websocket lines, "
                                        "1,822 divergences, 0:01")
    clock.now += 1.0  # 2.5 s for a quarter: 7.5 s left
    assert progress.line(clock.now).endswith(", 0:02, ~0:07 left")
    stats.bytes_read = 24_000_000
    assert progress.line(clock.now).endswith("divergences, 0:02")  # all read: no estimate
    stats.bytes_read = 30_000_000  # read-ahead past the size seen at the start: never above 100%
    assert progress.line(clock.now).startswith("streamer: 24.0/24.0 MB read (100%)")
    stats.bytes_read = 240_000
    clock.now += 3722.5  # one percent in an hour: 99 hours left
    assert progress.line(clock.now).endswith(", 1:02:05, ~102:26:15 left")


def test_redraws_at_most_twice_a_second_blank_out_a_longer_line_and_end_with_one_newline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    progress, stats, clock, terminal = _progress(monkeypatch)
    progress.lines = 123_456
    progress.update()
    first = terminal.text
    assert first == "\r" + progress.line(clock.now)
    clock.now += 0.3
    stats.bytes_read = 500
    progress.update()
    assert terminal.text == first  # throttled
    clock.now += 0.3
    progress.lines = 7
    progress.update()
    second = terminal.text[len(first):]
    assert second.startswith("\r" + progress.line(clock.now))
    assert len(second) == len(first)  # padded with blanks over the end of the longer first line
    stats.bytes_read = 24_000_000  # read to the end since the last redraw
    progress.lines = 9
    drawn = terminal.text
    progress.done()
    assert terminal.text.endswith("\n") and terminal.text.count("\n") == 1
    last = progress.line(clock.now)
    assert terminal.text[len(drawn):] == "\r" + last.ljust(len(second.rstrip()) - 1) + "\n"  # the totals as they end
    assert "(100%), 9 websocket lines" in last


def test_nothing_is_written_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(True, [SimpleNamespace(bytes_read=5)], 10)  # type: ignore[list-item]
    progress.update()
    progress.done()
    assert not progress.enabled
    assert capsys.readouterr() == ("", "")


def test_nothing_is_written_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = Progress(False, [SimpleNamespace(bytes_read=5)], 10)  # type: ignore[list-item]
    progress.update()
    progress.done()
    assert terminal.text == ""


def _run_with_stderr_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``python -m streamer ARGS`` with stderr on a pseudo-terminal; stdout is a pipe."""
    try:
        leader, follower = os.openpty()
    except OSError as exc:  # a sandbox without pseudo-terminals
        pytest.skip(f"no pseudo-terminal here: {exc}")
    with subprocess.Popen([sys.executable, "-m", "streamer", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=follower, stdin=subprocess.DEVNULL) as process:
        os.close(follower)
        seen = b""
        while True:  # drain the terminal as it fills (its buffer is small)
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the last writer closed it
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = process.communicate(timeout=60)
    os.close(leader)
    return process.returncode, stdout.decode(), seen.decode()


@pytest.mark.parametrize("command", ["run", "analyze"])
def test_on_a_terminal_progress_goes_to_stderr_and_stdout_keeps_its_lines(tmp_path: Path, command: str) -> None:
    capture = generate_capture(tmp_path / "capture", CaptureShape(markets=2, ws_lines=2000, drop_rate=0.01), 7)
    out = tmp_path / "out"
    run_args = ["run", "--manifest-10b", str(capture.manifest_10b), "--output-rows", str(out / "rows.jsonl.gz"),
                "--manifest-10c", str(out / "10c.json"), "--output-manifest", str(out / "10d0.json"),
                "--output-report", str(out / "10d0.md"), "--workers", "1"]
    if command == "run":
        args = run_args
    else:
        subprocess.run([sys.executable, "-m", "streamer", *run_args, "--no-progress"], cwd=tmp_path, check=False,
                       capture_output=True)
        (tmp_path / "10bc.json").write_text(json.dumps({"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}))
        (tmp_path / "review.json").write_text(json.dumps({"review_gate": "ACCEPTED"}))
        args = ["analyze", "--manifest-10b", str(capture.manifest_10b), "--manifest-10c", str(out / "10c.json"),
                "--manifest-10bc", "10bc.json", "--orchestrator-review", "review.json",
                "--output-manifest", str(out / "again.json"), "--output-report", str(out / "again.md"),
                "--workers", "1"]
    code, stdout, terminal = _run_with_stderr_on_a_terminal(args, tmp_path)
    assert code in (0, 1)
    keys = [line.split("=", 1)[0] for line in stdout.splitlines()]
    expected = ["DIVERGENCE_ANALYSIS_MANIFEST", "DIVERGENCE_ANALYSIS_REPORT", "DIVERGENCE_ANALYSIS_GATE"]
    if command == "run":
        expected = ["RECONSTRUCTION_ROWS", "RECONSTRUCTION_MANIFEST", "RECONSTRUCTION_GATE", *expected]
    assert keys == expected
    assert "streamer: " not in stdout
    drawn = [part for part in terminal.replace("\r\n", "\n").split("\r") if part.strip()]
    assert drawn and all(part.startswith("streamer: ") for part in drawn)
    assert "MB read (100%), 2,000 websocket lines" in drawn[-1]  # the last line: the totals
    assert terminal.endswith("\n")
    code, stdout, terminal = _run_with_stderr_on_a_terminal([*args, "--no-progress"], tmp_path)
    assert code in (0, 1) and len(stdout.splitlines()) == len(expected)
    assert terminal == ""


def test_demo_on_a_terminal_says_it_generates_then_shows_runs_progress(tmp_path: Path) -> None:
    """``demo --ws-lines 200000`` was silent for 11 s on a terminal: it says what it generates,
    then run's progress line follows; stdout keeps its seven lines."""
    code, stdout, terminal = _run_with_stderr_on_a_terminal(["demo", "--out", "d", "--ws-lines", "3000"], tmp_path)
    assert code == 0 and len(stdout.splitlines()) == 7
    lines = terminal.replace("\r\n", "\n").split("\n")
    assert lines[0] == "streamer demo: generating 3,000 websocket lines into d/capture"
    assert "MB read (100%), 3,000 websocket lines" in terminal
