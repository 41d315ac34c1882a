"""``streamer analyze`` replays the reference analyzer's committed outputs (``tests/fixtures/golden/``).

Each case folder holds its inputs and what the reference printed, returned and wrote when run once
on them (``make_golden.py`` regenerates them; it is the only place that needs the reference). Here
streamer runs in-process in a copy of the folder, and must print the same lines, return the same
code and write the same manifest (SPEC section 4) and report (but for the finding paragraph).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from tests import refcompare
from tests.conftest import CliRun

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "case.json").is_file())


def test_cases_present() -> None:
    assert CASES == ["hand-built-edges", "real-polypy-hash9", "synth-drops", "synth-out-of-order"]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of one case's inputs as the working directory, and its expectations."""
    source = GOLDEN / request.param
    shutil.copytree(source, workdir, ignore=shutil.ignore_patterns("expected"), dirs_exist_ok=True)
    expected = source / "expected"
    return workdir, {
        "argv": json.loads((source / "case.json").read_text())["argv"],
        "stdout": (expected / "stdout.txt").read_text().splitlines(),
        "returncode": int((expected / "returncode").read_text()),
        "manifest": json.loads((expected / "manifest.json").read_text()),
        "report": (expected / "report.md").read_text(),
    }


def test_golden_case(case: tuple[Path, dict[str, Any]], run_cli: Callable[..., CliRun]) -> None:
    root, expected = case
    assert expected["manifest"]["analyzer"]["name"] == "polymarket_ws_divergence_analyzer"  # the reference wrote it
    run = run_cli("analyze", "--no-progress", *expected["argv"], "--output-manifest", "out/manifest.json",
                  "--output-report", "out/report.md")
    assert run.stderr == []
    assert run.code == expected["returncode"]
    assert run.stdout == expected["stdout"]
    manifest = json.loads((root / "out/manifest.json").read_text())
    refcompare.assert_equal_manifests(refcompare.comparable(expected["manifest"]), refcompare.comparable(manifest))
    report = (root / "out/report.md").read_text()
    assert refcompare.report_comparable(report) == refcompare.report_comparable(expected["report"])
