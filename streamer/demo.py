"""``streamer demo``: a small synthetic capture and the whole pipeline run on it, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from . import batch
from .synth import CaptureShape, generate_capture
from .writer import write_atomic


def run_demo(out: Path, *, seed: int = 2026, ws_lines: int = 6000,
             progress: bool = False) -> tuple[batch.RunConfig, batch.Outcome]:
    """Generate a capture under ``out/capture`` and run ``streamer run`` on it into ``out``.

    Beside the capture it writes a 10BC manifest and an orchestrator review whose gate says no
    review took place (``streamer analyze`` requires both), and passes them to ``run``.

    The shape has several markets (YES and NO tokens), recorder drops and REST lag, so that
    matches, lag-explained and unexplained divergences all appear. ``progress`` shows ``run``'s
    progress line (on a terminal). Cost: O(ws_lines).
    """
    out = Path(out)
    shape = CaptureShape(markets=4, ws_lines=ws_lines, drop_rate=0.004, rest_lag_ms=(-400, 1200),
                         legacy_price_change_fraction=0.05, pong_rate=0.01, duplicate_rate=0.002)
    outputs = {
        "output_rows": out / "derived" / "rest_comparison_rows.jsonl.gz",
        "manifest_10c": out / "manifests" / "checkpoint_010c_book_reconstruction_sample.json",
        "output_manifest": out / "manifests" / "checkpoint_010d0_ws_divergence_analysis.json",
        "output_report": out / "reports" / "checkpoint_010d0_ws_divergence_analysis.md",
    }
    # A demo run again into the same directory first removes the earlier one's outputs: stopped
    # half-way, it must not leave them beside a new capture they do not describe.
    for path in outputs.values():
        path.unlink(missing_ok=True)
    capture = generate_capture(out / "capture", shape, seed)
    prior = {"manifest_10bc": out / "manifests" / "checkpoint_010bc_full_fidelity_sample_and_reconstruction.json",
             "orchestrator_review": out / "manifests" / "checkpoint_010bc_orchestrator_review.json"}
    for path in prior.values():  # so that `streamer analyze`, which requires them, runs on the demo too
        write_atomic(path, json.dumps({"gate_status": DEMO_PRIOR_GATE, "note": "written by streamer demo: a "
                                       "synthetic capture has no earlier checkpoint"}, indent=2).encode() + b"\n")
    config = batch.RunConfig(manifest_10b=capture.manifest_10b, **outputs, **prior, progress=progress)
    return config, batch.run(config)


#: The gate of the 10BC manifest and the orchestrator review the demo writes (no review took place).
DEMO_PRIOR_GATE = "SYNTHETIC_DEMO_NOT_REVIEWED"
