"""``streamer demo``: a small synthetic capture and the whole pipeline run on it, in seconds."""

from __future__ import annotations

from pathlib import Path

from . import batch
from .synth import CaptureShape, generate_capture


def run_demo(out: Path, *, seed: int = 2026, ws_lines: int = 6000) -> tuple[batch.RunConfig, batch.Outcome]:
    """Generate a capture under ``out/capture`` and run ``streamer run`` on it into ``out``.

    The shape has several markets (YES and NO tokens), recorder drops and REST lag, so that
    matches, lag-explained and unexplained divergences all appear. Cost: O(ws_lines).
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
    config = batch.RunConfig(manifest_10b=capture.manifest_10b, **outputs)
    return config, batch.run(config)
