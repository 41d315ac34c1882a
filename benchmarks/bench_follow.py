"""Memory and state size of ``streamer follow`` over a long simulated recording.

A recorder process replays a synthetic capture (``streamer.synth``: ``--markets`` markets, the
``--lines`` websocket lines and their REST checkpoints) in receive-time order into rotating files
(one every ``--rotate-lines`` websocket lines, gzip and plain alternating; REST files rotate with
them), at ``--rate`` websocket lines per second. ``python -m streamer follow`` follows them from
the start, flushing every ``--flush-interval`` seconds, and exits when idle. Every ``--sample``
seconds the follower's RSS (``/proc/PID/status``) and its published status (lines consumed,
state size) are sampled; the table prints them at each tenth of the capture, then peak RSS, the
state file's size, wall time and throughput.

Not collected by pytest. Example (the README's numbers)::

    python benchmarks/bench_follow.py --lines 1000000 --rate 20000
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamer.synth import CaptureShape, generate_capture  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
_hwm_seen = [0]
_hwm_at_exit = 0


def _time_us(line: bytes) -> int:
    # "received_at_utc":"2026-04-19T17:00:00.123456Z" -> a sortable integer (same day format)
    start = line.index(b'"received_at_utc":"') + 19
    stamp = line[start:start + 26].decode()
    return int(stamp[0:4] + stamp[5:7] + stamp[8:10] + stamp[11:13] + stamp[14:16] + stamp[17:19] + stamp[20:26])


def prepare(lines: int, markets: int, seed: int) -> Path:
    """The synthetic source capture (cached under benchmarks/_work)."""
    source = WORK / f"follow-source-{lines}-{markets}-{seed}"
    if not (source / "manifest_10b.json").exists():
        shutil.rmtree(source, ignore_errors=True)
        shape = CaptureShape(markets=markets, ws_lines=lines, gzip=False)
        generate_capture(source, shape, seed)
    return source


def record(source: Path, target: Path, rotate_lines: int, rate: float) -> None:
    """The recorder: replay ``source`` into rotating files under ``target`` at ``rate`` lines/s."""
    import gzip

    target.mkdir(parents=True, exist_ok=True)
    ws_in = open(source / "ws-000.jsonl", "rb")
    rest_in = open(source / "rest-000.jsonl", "rb")

    def stamped(handle: IO[bytes], kind: int) -> Any:
        for line in handle:
            yield _time_us(line), kind, line

    files: dict[int, Any] = {}
    counts = {0: 0, 1: 0}
    part = {0: -1, 1: -1}

    def open_part(kind: int, number: int) -> None:
        old = files.get(kind)
        if old is not None:
            old.close()
        name = ("ws" if kind == 0 else "rest") + f"-{number:05d}.jsonl" + (".gz" if number % 2 == 0 else "")
        raw = open(target / name, "wb")
        files[kind] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) if name.endswith(".gz") else raw
        if name.endswith(".gz"):
            files[kind].raw_handle = raw  # type: ignore[attr-defined]
        part[kind] = number

    start = time.monotonic()
    written = 0
    for _stamp, kind, line in heapq.merge(stamped(ws_in, 0), stamped(rest_in, 1)):
        number = counts[0] // rotate_lines
        if part[0] != number:
            open_part(0, number)
            open_part(1, number)
        files[kind].write(line)
        counts[kind] += 1
        if kind == 0:
            written += 1
            if written % 2000 == 0:
                for handle in files.values():
                    handle.flush()
                ahead = written / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    for handle in files.values():
        handle.close()
        raw = getattr(handle, "raw_handle", None)
        if raw is not None:
            raw.close()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--markets", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rotate-lines", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=20_000.0, help="websocket lines per second written")
    parser.add_argument("--flush-interval", type=float, default=2.0)
    parser.add_argument("--sample", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the rotated files and outputs")
    parser.add_argument("--recorder", nargs=2, metavar=("SOURCE", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.recorder:
        record(Path(args.recorder[0]), Path(args.recorder[1]), args.rotate_lines, args.rate)
        return 0
    source = prepare(args.lines, args.markets, args.seed)
    run_dir = WORK / f"follow-run-{args.lines}"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "cap").mkdir(parents=True)
    shutil.copy(source / "manifest_10b.json", run_dir / "manifest_10b.json")
    recorder = subprocess.Popen([sys.executable, __file__, "--rotate-lines", str(args.rotate_lines), "--rate",
                                 str(args.rate), "--recorder", str(source), str(run_dir / "cap")])
    started = time.monotonic()
    follow = subprocess.Popen(
        [sys.executable, "-m", "streamer", "follow", "--ws", "cap/ws-*", "--rest", "cap/rest-*",
         "--manifest-10b", "manifest_10b.json", "--out", "out", "--state", "state", "--poll", "0.5",
         "--rotate-wait", "2", "--rest-wait", "2", "--flush-interval", str(args.flush_interval),
         "--exit-when-idle", "5"],
        cwd=run_dir, stdout=subprocess.PIPE, stderr=open(run_dir / "follow.log", "wb"))
    samples: list[tuple[float, int, int, int, int]] = []  # time, lines consumed, rss KiB, state bytes, hwm
    finished_at = None
    while follow.poll() is None:
        time.sleep(args.sample)  # (sampling period)
        try:
            rss, hwm = rss_kib(follow.pid)
            _hwm_seen[0] = max(_hwm_seen[0], hwm)
            status = json.loads((run_dir / "out" / "status.json").read_text())
        except (OSError, ValueError):
            continue
        consumed = status.get("totals", {}).get("websocket_rows", 0)
        if status.get("state") != "following":
            continue  # (the exit: final outputs being written)
        samples.append((time.monotonic() - started, consumed, rss, status.get("state_bytes", 0), hwm))
        if recorder.poll() is not None and finished_at is None:
            finished_at = time.monotonic() - started
    wall = time.monotonic() - started
    recorder.wait()
    follow.communicate()
    global _hwm_at_exit
    _hwm_at_exit = _hwm_seen[0]
    state_size = (run_dir / "state" / "state.pkl").stat().st_size
    print(f"# streamer follow: {args.lines} websocket lines, {args.markets} markets, rotation every "
          f"{args.rotate_lines} lines (gzip/plain), recorder at {args.rate:g} lines/s, flush every "
          f"{args.flush_interval:g} s; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("websocket rows processed | RSS MiB | state.pkl KiB (at the last flush)")
    marks = [args.lines * k // 10 for k in range(1, 11)]
    for mark in marks:
        sample = next((s for s in samples if s[1] >= mark * 0.98), None)
        if sample is not None:
            print(f"{sample[1]:>12,} | {sample[2] / 1024:7.1f} | {sample[3] / 1024:9.1f}")
    peak = max((s[4] for s in samples), default=0)
    sampled = max((s[2] for s in samples), default=0)
    after_warmup = [s[2] for s in samples if s[1] >= args.lines // 5]
    if after_warmup:
        print(f"RSS after the first fifth: min {min(after_warmup) / 1024:.1f}, max {max(after_warmup) / 1024:.1f} MiB "
              f"over {len(after_warmup)} samples")
    print(f"while following: peak RSS (VmHWM) {peak / 1024:.1f} MiB, highest sample {sampled / 1024:.1f} MiB; "
          f"process peak incl. the exit {_hwm_at_exit / 1024:.1f} MiB; final state.pkl {state_size / 1024:.1f} KiB; "
          f"recorder done at {finished_at or 0:.1f} s; follow done at {wall:.1f} s "
          f"({args.lines / wall:,.0f} websocket lines/s overall)")
    print(f"exit code {follow.returncode}")
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return follow.returncode or 0


if __name__ == "__main__":
    raise SystemExit(main())
