"""Run the reference analyzer and ``streamer analyze`` on the same inputs and compare them.

Used by the differential tests and the benchmarks. The reference is a specification we run, never
import: it lives in ``../shared/reference/`` and may be absent (callers skip then).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "analyze_polymarket_ws_divergences.py"

#: Keys SPEC section 4 lets differ, and the keys streamer adds.
FREE_KEYS = {"started_at_utc", "ended_at_utc", "analyzer", "input_problems", "streaming"}

ANALYSIS_FILES = {
    "manifest_10c": "manifests/10c.json",
    "manifest_10bc": "manifests/10bc.json",
    "orchestrator_review": "manifests/review.json",
    "comparison_rows": "derived/comparison_rows.jsonl.gz",
}


def reference_available() -> bool:
    return REFERENCE.is_file()


def load_reference_module() -> Any:
    """The reference analyzer as a module (its functions are test oracles), or None when absent."""
    if not reference_available():
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("_reference_analyzer", REFERENCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_jsonl_gz(path: Path, rows: list[Any], *, raw_lines: list[bytes] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        for row in rows:
            out.write(json.dumps(row).encode() + b"\n")
        for line in raw_lines or []:
            out.write(line + b"\n")


CAPTURE_FILES = {
    "manifest_10b": "capture/manifest_10b.json",
    "ws": "capture/ws.jsonl.gz",
    "rest": "capture/rest.jsonl.gz",
}


def write_capture(workdir: Path, ws_lines: list[bytes], rest_lines: list[bytes],
                  markets: list[list[str]] | None = None) -> str:
    """A gzip websocket file and a gzip REST file of raw lines, and a 10B manifest naming them.

    ``markets`` lists token ids per market (the manifest's ``markets``, which the reference
    ignores and ``analyze --workers`` deals into shares). Returns the 10B manifest's path
    (relative to ``workdir``, as are the paths inside it).
    """
    write_jsonl_gz(workdir / CAPTURE_FILES["ws"], [], raw_lines=ws_lines)
    write_jsonl_gz(workdir / CAPTURE_FILES["rest"], [], raw_lines=rest_lines)
    manifest = {
        "gate_status": "WS_RAW_SAMPLE_PASS",
        "output_files": [
            {"path": CAPTURE_FILES["ws"], "kind": "raw_websocket_messages"},
            {"path": CAPTURE_FILES["rest"], "kind": "rest_books_checkpoints"},
        ],
    }
    if markets is not None:
        manifest["markets"] = [{"condition_id": f"0xmarket{number}", "market_slug": f"market-{number}",
                                "tokens": [{"token_id": token, "outcome": "Yes"} for token in tokens]}
                               for number, tokens in enumerate(markets)]
    (workdir / CAPTURE_FILES["manifest_10b"]).write_text(json.dumps(manifest))
    return CAPTURE_FILES["manifest_10b"]


def write_analysis_inputs(workdir: Path, manifest_10b: str, rows: list[dict[str, Any]],
                          extra_comparison_lines: list[bytes] | None = None) -> dict[str, str]:
    """Write comparison rows, a 10C manifest naming them, a 10BC manifest and a review.

    Returns the analyze flags (paths relative to ``workdir``).
    """
    comparison = ANALYSIS_FILES["comparison_rows"]
    write_jsonl_gz(workdir / comparison, rows, raw_lines=extra_comparison_lines)
    manifests = {
        ANALYSIS_FILES["manifest_10c"]: {"gate_status": "BOOK_RECONSTRUCTION_DIVERGENT",
                                         "output_files": [{"path": comparison, "kind": "rest_comparison_rows"}]},
        ANALYSIS_FILES["manifest_10bc"]: {"gate_status": "FULL_FIDELITY_SAMPLE_PASS"},
        ANALYSIS_FILES["orchestrator_review"]: {"review_gate": "ACCEPTED"},
    }
    for name, value in manifests.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(json.dumps(value))
    return {
        "--manifest-10b": manifest_10b,
        "--manifest-10c": ANALYSIS_FILES["manifest_10c"],
        "--manifest-10bc": ANALYSIS_FILES["manifest_10bc"],
        "--orchestrator-review": ANALYSIS_FILES["orchestrator_review"],
    }


#: What a NaN in a manifest loads as, so that equal manifests compare equal (NaN != NaN).
NAN = "\x00NaN"


def load_manifest(path: Path) -> Any:
    """A manifest as JSON, NaN read as :data:`NAN` (Infinity stays a float: it equals itself)."""
    return json.loads(path.read_text(), parse_constant=lambda name: NAN if name == "NaN" else float(name))


def run_both(workdir: Path, flags: dict[str, str], extra: list[str] | None = None, workers: int = 1
             ) -> dict[str, Any]:
    """Run the reference and streamer (``--workers``) with the same flags; return both outcomes."""
    outcome: dict[str, Any] = {}
    for name, command in (("reference", [sys.executable, str(REFERENCE)]),
                          ("streamer", [sys.executable, "-m", "streamer", "analyze", "--no-progress",
                                        "--workers", str(workers)])):
        manifest = f"out-{name}/manifest.json"
        report = f"out-{name}/report.md"
        argv = command + [item for pair in flags.items() for item in pair] + (extra or []) + [
            "--output-manifest", manifest, "--output-report", report]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, env=env, timeout=600)
        outcome[name] = {
            "returncode": done.returncode,
            "stdout": done.stdout.replace(f"out-{name}/", "out/"),
            "stderr": done.stderr,
            "manifest": load_manifest(workdir / manifest) if (workdir / manifest).exists() else None,
            "report": (workdir / report).read_text() if (workdir / report).exists() else None,
        }
    return outcome


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest without the keys that may differ (SPEC section 4)."""
    value = {key: item for key, item in manifest.items() if key not in FREE_KEYS}
    for artifact in value.get("input_artifacts", []):
        artifact.pop("_", None)
    return value


def report_comparable(text: str) -> list[str]:
    """Report lines without the creation time and the finding paragraph (a deliberate departure)."""
    lines = text.split("\n")
    return [line for line in lines if not line.startswith("Created: ")
            and not line.startswith("The ") and "divergent rows are size-only" not in line
            and "There are no divergent rows" not in line and "of the divergent rows" not in line]


def first_difference(left: Any, right: Any, path: str = "") -> str | None:
    """Where two JSON values first differ (``path: left != right``), or None when they are equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                return f"{path}.{key}: only in {'streamer' if key in right else 'reference'}"
            found = first_difference(left[key], right[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        for index, (a, b) in enumerate(zip(left, right)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        if len(left) != len(right):
            return f"{path}: {len(left)} items in the reference, {len(right)} in streamer"
        return None
    # type-strict: 1, 1.0 and true are three different JSON values (== would call them equal)
    if type(left) is not type(right) or left != right:
        return f"{path}: reference {json.dumps(left)[:300]} != streamer {json.dumps(right)[:300]}"
    return None


def assert_equal_manifests(left: dict[str, Any], right: dict[str, Any]) -> None:
    """Assert two (comparable) manifests are equal, naming the first difference of the first key that differs."""
    for key in sorted(set(left) | set(right)):
        if key not in left or key not in right:
            raise AssertionError(f"manifest key {key} is only in {'the second' if key in right else 'the first'}")
        found = first_difference(left[key], right[key], key)
        if found:
            raise AssertionError(f"manifest key {key} differs: {found}")


def assert_same(outcome: dict[str, Any]) -> None:
    """Assert the reference and streamer agree on stdout, exit code, manifest and report."""
    reference, streamer = outcome["reference"], outcome["streamer"]
    assert reference["returncode"] in (0, 1), reference["stderr"]
    assert streamer["returncode"] == reference["returncode"], streamer["stderr"]
    assert streamer["stdout"] == reference["stdout"]
    assert_equal_manifests(comparable(reference["manifest"]), comparable(streamer["manifest"]))
    assert report_comparable(streamer["report"]) == report_comparable(reference["report"])
