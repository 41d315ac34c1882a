"""Shared fixtures: a working directory, an in-process CLI runner, and a skip for the reference analyzer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, settings

from streamer import cli
from tests import refcompare

# Tests must not depend on timing: no per-example deadline and no "too slow" health check, so a
# slower or busier machine (CI) runs the same examples to the same verdicts.
settings.register_profile("streamer", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamer")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_reference: runs the reference analyzer (skipped when ../shared/reference is absent)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if refcompare.reference_available():
        return
    skip = pytest.mark.skip(reason=f"reference analyzer not found at {refcompare.REFERENCE}")
    for item in items:
        if item.get_closest_marker("requires_reference") is not None:
            item.add_marker(skip)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory that is the current directory for the test (manifest paths are relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@dataclass
class CliRun:
    """What one in-process ``streamer`` invocation returned and printed."""

    code: int
    stdout: list[str]
    stderr: list[str]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Call ``streamer.cli.main(argv)`` in-process; returns its exit code and output lines."""

    def run(*argv: str) -> CliRun:
        capsys.readouterr()
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return CliRun(code, captured.out.splitlines(), captured.err.splitlines())

    return run
