"""``streamer demo``: a synthetic capture and the whole pipeline, with every kind of outcome on show."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from streamer import cli
from tests import oracle
from tests.refcompare import assert_equal_manifests, comparable


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``streamer demo --out demo`` once (in-process) from a fresh working directory."""
    root = tmp_path_factory.mktemp("demo")
    old = os.getcwd()
    os.chdir(root)
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["demo", "--out", "demo"])
        rows = oracle.reconstruct(Path("demo/capture/manifest_10b.json"))
    finally:
        os.chdir(old)
    return {"root": root, "code": code, "stdout": out.getvalue().splitlines(), "stderr": err.getvalue(),
            "oracle_rows": rows}


OUTPUTS = {
    "RECONSTRUCTION_ROWS": "demo/derived/rest_comparison_rows.jsonl.gz",
    "RECONSTRUCTION_MANIFEST": "demo/manifests/checkpoint_010c_book_reconstruction_sample.json",
    "DIVERGENCE_ANALYSIS_MANIFEST": "demo/manifests/checkpoint_010d0_ws_divergence_analysis.json",
    "DIVERGENCE_ANALYSIS_REPORT": "demo/reports/checkpoint_010d0_ws_divergence_analysis.md",
}


def test_demo_exits_and_prints_six_lines_and_where_to_look(demo: dict[str, Any]) -> None:
    assert demo["code"] in (0, 1), demo["stderr"]
    lines = demo["stdout"]
    assert len(lines) == 7, lines
    keys = [line.split("=", 1)[0] for line in lines[:6]]
    assert keys == ["RECONSTRUCTION_ROWS", "RECONSTRUCTION_MANIFEST", "RECONSTRUCTION_GATE",
                    "DIVERGENCE_ANALYSIS_MANIFEST", "DIVERGENCE_ANALYSIS_REPORT", "DIVERGENCE_ANALYSIS_GATE"]
    values = dict(line.split("=", 1) for line in lines[:6])
    for key, path in OUTPUTS.items():
        assert values[key] == path
    assert values["RECONSTRUCTION_GATE"].startswith("BOOK_RECONSTRUCTION_")
    assert values["DIVERGENCE_ANALYSIS_GATE"] in ("WS_DIVERGENCE_ANALYSIS_PASS", "BLOCKED_WS_DIVERGENCE_UNEXPLAINED",
                                                  "WS_RECONSTRUCTION_NEEDS_SCHEMA_FIX")
    assert "demo" in lines[6] and OUTPUTS["DIVERGENCE_ANALYSIS_REPORT"] in lines[6]


def test_demo_writes_the_four_outputs(demo: dict[str, Any]) -> None:
    root = demo["root"]
    for path in OUTPUTS.values():
        assert (root / path).is_file() and (root / path).stat().st_size > 0, path
    manifest_10c = json.loads((root / OUTPUTS["RECONSTRUCTION_MANIFEST"]).read_text())
    [entry] = manifest_10c["output_files"]
    data = (root / OUTPUTS["RECONSTRUCTION_ROWS"]).read_bytes()
    assert entry["path"] == OUTPUTS["RECONSTRUCTION_ROWS"]
    assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    rows = [json.loads(line) for line in gzip.decompress(data).splitlines()]
    assert rows == demo["oracle_rows"]  # the demo's reconstruction is right, too
    report = (root / OUTPUTS["DIVERGENCE_ANALYSIS_REPORT"]).read_text()
    assert report.startswith("#")
    assert (root / "demo/capture/manifest_10b.json").is_file()


def test_demo_shows_every_kind_of_outcome(demo: dict[str, Any]) -> None:
    manifest = json.loads((demo["root"] / OUTPUTS["DIVERGENCE_ANALYSIS_MANIFEST"]).read_text())
    categories = manifest["divergence_category_counts"]
    assert categories.get("timing_or_feed_lag_likely", 0) > 0, categories
    assert categories.get("best_quote_or_price_membership_mismatch", 0) > 0, categories
    assert manifest["comparison_status_counts"].get("match", 0) > 0, manifest["comparison_status_counts"]
    assert manifest["comparison_status_counts"].get("divergent", 0) == len(manifest["divergence_rows"])
    gate = manifest["gate_status"]
    assert demo["stdout"][5] == f"DIVERGENCE_ANALYSIS_GATE={gate}"


def test_demo_is_reproducible(workdir: Path, run_cli: Callable[..., Any], demo: dict[str, Any]) -> None:
    result = run_cli("demo", "--out", "demo")
    assert result.code == demo["code"]
    assert result.stdout == demo["stdout"]
    for key in ("RECONSTRUCTION_ROWS", "RECONSTRUCTION_MANIFEST"):
        assert (workdir / OUTPUTS[key]).read_bytes() == (demo["root"] / OUTPUTS[key]).read_bytes()


def test_demo_stopped_while_generating_leaves_no_earlier_output_beside_the_new_capture(
        workdir: Path, run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli("demo", "--out", "demo", "--ws-lines", "800").code in (0, 1)
    from streamer import synth

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synth._Generator, "_finish_rest", interrupted)
    result = run_cli("demo", "--out", "demo", "--ws-lines", "900", "--seed", "7")
    assert result.code == 130, result.stderr
    for path in OUTPUTS.values():  # they described the earlier capture
        assert not (workdir / path).exists(), path
    assert not (workdir / "demo/capture/manifest_10b.json").exists()
    assert sorted(path.name for path in (workdir / "demo/capture").iterdir()) == ["rest-000.jsonl.gz", "ws-000.jsonl.gz"]


def test_analyze_runs_on_the_demo_and_agrees_with_it(demo: dict[str, Any], run_cli: Callable[..., Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo["root"])
    manifests = "demo/manifests/checkpoint_010"
    result = run_cli("analyze", "--manifest-10b", "demo/capture/manifest_10b.json",
                     "--manifest-10c", manifests + "c_book_reconstruction_sample.json",
                     "--manifest-10bc", manifests + "bc_full_fidelity_sample_and_reconstruction.json",
                     "--orchestrator-review", manifests + "bc_orchestrator_review.json",
                     "--output-manifest", "analyzed/manifest.json", "--output-report", "analyzed/report.md")
    assert result.stdout[2] == demo["stdout"][5]  # the same gate (demo exits 0 whatever its gate)
    assert result.code == (0 if result.stdout[2].endswith("_PASS") else 1), result.stderr
    analyzed = json.loads(Path("analyzed/manifest.json").read_text())
    ran = json.loads(Path(OUTPUTS["DIVERGENCE_ANALYSIS_MANIFEST"]).read_text())
    assert analyzed["accepted_prior_gates"]["10bc"] == "SYNTHETIC_DEMO_NOT_REVIEWED"
    assert analyzed["accepted_prior_gates"]["orchestrator_review"] == "SYNTHETIC_DEMO_NOT_REVIEWED"
    assert_equal_manifests(comparable(analyzed), comparable(ran))
