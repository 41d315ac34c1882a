"""The package root's ``__all__`` and the command line's documentation stay honest."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import streamer
from streamer import batch, cli
from streamer.errors import InputError
from streamer.synth import CaptureShape, generate_capture

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_a_sorted_tuple_of_defined_names() -> None:
    assert isinstance(streamer.__all__, tuple)
    assert list(streamer.__all__) == sorted(streamer.__all__)
    for name in streamer.__all__:
        assert hasattr(streamer, name), name


def test_every_public_callable_of_the_root_is_in_all() -> None:
    public = {name for name, value in vars(streamer).items()
              if not name.startswith("_") and callable(value) and getattr(value, "__module__", "").startswith("streamer")}
    assert public <= set(streamer.__all__)


def _commands() -> list[str]:
    parser = cli._build_parser()
    actions = [action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction"]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example_and_is_in_the_readme(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Example" in text
    assert re.search(rf"streamer {command}\b", text)
    assert f"`streamer {command}`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", _commands())
def test_every_help_example_is_accepted_by_its_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    example = text.split("Example:\n", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    words = shlex.split(example)
    assert words[:2] == ["streamer", command]
    parsed = cli._build_parser().parse_args(words[1:])  # an unknown flag exits 2 here
    assert parsed.command == command


def test_reconstruct_takes_the_10c_flag_of_run_as_well(tmp_path: Path) -> None:
    parser = cli._build_parser()
    spelled = [parser.parse_args(["reconstruct", flag, str(tmp_path / "10c.json")]).manifest_10c
               for flag in ("--output-manifest", "--manifest-10c")]
    assert spelled == [tmp_path / "10c.json"] * 2


def test_python_dash_m_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "streamer", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"streamer {streamer.__version__}"


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = cli.main(["demo", "--out", str(blocker / "demo"), "--ws-lines", "300"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith("streamer demo: error: cannot write")
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("closed", [False, True], ids=["pipe-closed", "stdout-closed"])
@pytest.mark.parametrize("command", ["demo", "reconstruct"])
def test_a_reader_of_stdout_gone_is_no_error(tmp_path: Path, command: str, closed: bool) -> None:
    """``streamer ... | head -1``: the outputs are written, so the exit code stays the command's
    and nothing is said (no "Broken pipe", no traceback at exit). Nor with no stdout at all
    (``>&-``, as some daemons run it)."""
    if command == "demo":
        argv = ["demo", "--out", str(tmp_path / "d"), "--ws-lines", "300"]
    else:
        capture = generate_capture(tmp_path / "capture", CaptureShape(markets=1, ws_lines=300), 2)
        argv = ["reconstruct", "--manifest-10b", str(capture.manifest_10b), "--output-rows", str(tmp_path / "r.gz"),
                "--output-manifest", str(tmp_path / "c.json")]
    if closed:
        process = subprocess.Popen([sys.executable, "-m", "streamer", *argv], cwd=tmp_path, stderr=subprocess.PIPE,
                                   text=True, preexec_fn=lambda: os.close(1))
    else:
        process = subprocess.Popen([sys.executable, "-m", "streamer", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        process.stdout.close()  # before the command prints: its first line meets a closed pipe
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 0
    # nothing but the feed faults the capture holds (the demo's is made to have some)
    assert all(line.startswith(f"streamer {command}: warning: ") for line in stderr.splitlines()), stderr
    assert (tmp_path / ("d/derived" if command == "demo" else "c.json")).exists()


def test_no_command_lists_the_commands_and_where_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main([])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    for command in ("analyze", "reconstruct", "run", "follow", "demo"):
        assert f"\n    {command} " in captured.err or f"\n    {command}\n" in captured.err
    assert "streamer demo --out" in captured.err


@pytest.mark.parametrize("argv", [["run", "--workers", "0"], ["analyze", "--workers", "abc"],
                                  ["analyze", "--price-evidence-seconds", "0.5"], ["follow", "--poll", "abc"],
                                  ["bogus"], ["run", "--no-such-flag"]])
def test_a_bad_flag_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    captured = capsys.readouterr()
    assert stopped.value.code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "error: " in captured.err and "--help" in captured.err
    assert "usage:" not in captured.err
    if argv[0] != "bogus":  # the hint names the help of the command whose flags were wrong
        assert captured.err.startswith(f"streamer {argv[0]}: error: ") and f"(see streamer {argv[0]} --help)" in captured.err


@pytest.mark.parametrize("setting", ["STREAMER_JSON=bogus", "STREAMER_GZIP=gz"])
def test_a_bad_decoder_setting_is_one_line_and_exit_2_not_a_traceback(setting: str) -> None:
    name, value = setting.split("=")
    done = subprocess.run([sys.executable, "-m", "streamer", "--help"], capture_output=True, text=True,
                          env={**os.environ, name: value})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"streamer: error: {name}={value!r}: expected one of " \
                          f"{'orjson, json' if name == 'STREAMER_JSON' else 'isal, zlib'}\n"


@pytest.fixture(scope="module")
def demo_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    capture = generate_capture(root / "capture", CaptureShape(markets=2, ws_lines=400), 3)
    prior = root / "prior"
    prior.mkdir()
    (prior / "10bc.json").write_text('{"gate_status": "FULL_FIDELITY_SAMPLE_PASS"}')
    (prior / "review.json").write_text('{"review_gate": "ACCEPTED"}')
    assert cli.main(["reconstruct", "--manifest-10b", str(capture.manifest_10b), "--output-rows",
                     str(root / "rows.jsonl.gz"), "--output-manifest", str(root / "10c.json")]) == 0
    return root


def _flags(root: Path, command: str, **outputs: str) -> list[str]:
    manifest = str(root / "capture" / "manifest_10b.json")
    defaults = {"analyze": {"--output-manifest": "o/m.json", "--output-report": "o/r.md"},
                "reconstruct": {"--output-rows": "o/rows.gz", "--output-manifest": "o/c.json"},
                "run": {"--output-rows": "o/rows.gz", "--manifest-10c": "o/c.json", "--output-manifest": "o/m.json",
                        "--output-report": "o/r.md"}}[command]
    chosen = {**defaults, **{"--" + flag.replace("_", "-"): path for flag, path in outputs.items()}}
    inputs = {"analyze": ["--manifest-10c", str(root / "10c.json"), "--manifest-10bc", str(root / "prior/10bc.json"),
                          "--orchestrator-review", str(root / "prior/review.json")]}.get(command, [])
    return [command, "--manifest-10b", manifest, *inputs, *[item for pair in chosen.items() for item in pair]]


@pytest.mark.parametrize("command, outputs, message", [
    ("run", {"output_rows": "capture/ws-000.jsonl.gz"}, "is an input of this command"),
    ("reconstruct", {"output_manifest": "capture/manifest_10b.json"}, "is an input of this command"),
    ("analyze", {"output_report": "10c.json"}, "is an input of this command"),
    ("analyze", {"output_report": "rows.jsonl.gz"}, "is an input of this command"),
    ("run", {"manifest_10c": "o/same.json", "output_manifest": "o/same.json"}, "name the same file"),
    ("run", {"output_report": "a-directory"}, "is a directory"),
    ("reconstruct", {"output_rows": "a-file/rows.gz"}, "is not a directory"),
    # a directory where no file can be made although os.access says yes to root: the probe finds it
    pytest.param("run", {"output_report": "/proc/streamer-test/r.md"},
                 "cannot write --output-report /proc/streamer-test/r.md: no file can be made in /proc (",
                 marks=pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc here")),
    pytest.param("analyze", {"output_manifest": "/proc/m.json"},
                 "cannot write --output-manifest /proc/m.json: no file can be made in /proc (",
                 marks=pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc here")),
])
def test_outputs_that_would_destroy_an_input_or_cannot_be_written_are_refused_before_any_work(
        demo_capture: Path, command: str, outputs: dict[str, str], message: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo_capture)
    (demo_capture / "a-directory").mkdir(exist_ok=True)
    (demo_capture / "a-file").write_text("")
    before = {path: path.read_bytes() for path in demo_capture.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert cli.main(_flags(demo_capture, command, **outputs)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith(f"streamer {command}: error: ")
    assert {path: path.read_bytes() for path in demo_capture.rglob("*") if path.is_file()} == before
    assert not (demo_capture / "o").exists()


def test_an_input_reached_through_a_symlink_is_still_an_input(demo_capture: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(demo_capture)
    link = demo_capture / "link.gz"
    if not link.exists():
        link.symlink_to(demo_capture / "capture" / "ws-000.jsonl.gz")
    assert cli.main(_flags(demo_capture, "run", output_rows="link.gz")) == 2
    assert "is an input" in capsys.readouterr().err


def test_a_failed_run_leaves_no_directory_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Directories made for the outputs go again when the run fails; those that were there stay."""
    capture = generate_capture(tmp_path / "capture", CaptureShape(markets=1, ws_lines=300), 2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    made: list[bool] = []

    def fail(*_args: Any) -> None:
        made.append((tmp_path / "new" / "derived").is_dir() and (tmp_path / "kept" / "m").is_dir())
        raise InputError("cannot read capture/ws-000.jsonl.gz: gone")

    monkeypatch.setattr(batch, "reconstruction_pass", fail)
    code = cli.main(["run", "--workers", "1", "--manifest-10b", str(capture.manifest_10b),
                     "--output-rows", "new/derived/rows.gz", "--manifest-10c", "new/manifests/10c.json",
                     "--output-manifest", "kept/m/10d0.json", "--output-report", "other/r.md"])
    assert code == 2 and "gone" in capsys.readouterr().err
    assert made == [True]  # the failure came after the directories were made
    assert sorted(path.name for path in tmp_path.iterdir()) == ["capture", "kept"]
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("argv", [["demo", "--out", ""], ["reconstruct", "--output-rows", ""],
                                  ["analyze", "--manifest-10b", ""], ["run", "--output-report", ""],
                                  ["follow", "--ws", "w*", "--rest", "r*", "--out", ""]])
def test_an_empty_path_is_refused_not_taken_as_the_working_directory(
        argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out "$DIR"`` with DIR unset: Path("") is ".", so demo wrote its capture into the working directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a path, got an empty one" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_an_error_keeps_its_exit_code_when_stderr_cannot_take_the_line(tmp_path: Path) -> None:
    """stderr on a full disk (/dev/full): the line is lost, the exit code still says "unusable
    input" (2), not 1, which scripts read as "gate not passed"."""
    with open("/dev/full", "w") as full:
        process = subprocess.run([sys.executable, "-m", "streamer", "reconstruct", "--manifest-10b", "nope.json"],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=full, timeout=60)
    assert process.returncode == 2 and process.stdout == b""


def test_a_write_error_that_names_no_file_names_where_the_command_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk under a work file (spools, spill runs) raises an OSError without a file name:
    the line still says where (the outputs' directories, where the work files are)."""
    import errno

    from streamer import batch

    def full(_config: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "run", full)
    code = cli.main(["run", "--manifest-10b", "m.json", "--output-rows", "out/rows.gz", "--manifest-10c", "out/10c.json",
                     "--output-manifest", "report/m.json", "--output-report", "report/r.md"])
    assert code == 2
    assert capsys.readouterr().err == "streamer run: error: cannot write in out, report: No space left on device\n"


def test_a_line_break_in_a_file_name_keeps_the_error_on_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("m.json").write_text(json.dumps({"output_files": [{"path": "capture/ws\njsonl", "kind": "raw_websocket_messages"}]}))
    assert cli.main(["reconstruct", "--manifest-10b", "m.json", "--output-rows", "o/r.gz", "--output-manifest", "o/c.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamer reconstruct: error: cannot read capture/ws\\njsonl: "), err


def test_an_output_at_a_symlink_loop_is_no_traceback(demo_capture: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The outputs' check compared paths after symlinks: a loop raised RuntimeError (Python 3.11).
    Such a path names no file: the output is published there, as at any new path."""
    monkeypatch.chdir(demo_capture)
    loop = demo_capture / "loop.gz"
    if not loop.is_symlink():
        loop.symlink_to("loop.gz")
    assert cli.main(_flags(demo_capture, "reconstruct", output_rows="loop.gz", output_manifest="loop-10c.json")) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert loop.is_file() and not loop.is_symlink()
    loop.unlink()
