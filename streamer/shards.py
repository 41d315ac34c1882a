"""Parallel work: the markets dealt into shares, helper processes, their results merged.

Markets are independent (DESIGN section 6): a divergent row's context and evidence are events of
its own token. ``analyze --workers N`` deals the 10B manifest's markets into N shares. The driver
(this process) keeps share 0 and does everything it does alone, except indexing the events of
the other shares' tokens; each helper process reads the same inputs (from the page cache; only
the driver hashes them and counts their problems), indexes only its share's events, answers only
its share's rows, and writes its results, tagged with their comparison ordinal, to a file that
the driver merges in order at the end.

Every process still parses every websocket line: scanning a line's bytes for the tokens it names
costs as much as parsing it with orjson (benchmarks/README.md), so what is shared is the work
after the parse (the per-token indexes, the join, the results), not the parse.

The outputs are the same whatever the number of workers (tests compare them). A share holds only
tokens the manifest lists; anything else (unlisted tokens, the ``None`` token of events without
an ``asset_id``, rows whose token is settled at the end) stays with the driver.

``run --workers 2`` uses the same :class:`Helpers` for one helper that runs the whole analysis
beside the reconstruction (:func:`streamer.batch.relayed_analysis`).

Helpers are started with ``fork`` when this process has no other thread (nothing to import),
else with ``spawn``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import HelperError, InputError, stop_once, stops_held

#: The driver's weight when markets are dealt: it also parses and hashes every line.
DRIVER_WEIGHT = 0.8
#: A helper's exit code when its driver went away first.
EXIT_DRIVER_GONE = 70
#: Token ids a share never holds: what ``str()`` makes of an event without an ``asset_id``.
UNSHARED_TOKENS = frozenset({"None"})


def default_workers(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Worker processes ``--workers auto`` means: the CPUs this process may use, at most 2.

    The CPUs are those of its affinity mask, fewer when a cgroup v2 quota (``cpu.max``, as
    containers set it) allows less. More than 2 gain little: every process parses every line
    (benchmarks/README.md). Cost: O(1).
    """
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no cgroup v2 quota: the mask decides
    return max(1, min(2, int(cpus)))


def market_tokens(markets: Any) -> list[tuple[Any, list[str]]]:
    """``(market id, token ids)`` per entry of a 10B ``markets`` list; malformed entries are left out.

    The market id is the ``condition_id`` (the entry's position when it has none). Cost: O(tokens).
    """
    if not isinstance(markets, list):
        return []
    groups = []
    for position, market in enumerate(markets):
        if not isinstance(market, dict) or not isinstance(market.get("tokens"), list):
            continue
        tokens = [str(token["token_id"]) for token in market["tokens"]
                  if isinstance(token, dict) and token.get("token_id") is not None]
        condition = market.get("condition_id")
        groups.append((condition if isinstance(condition, str) else position, tokens))
    return groups


def plan_shares(markets: Sequence[tuple[Any, list[str]]], workers: int) -> list[frozenset[str]]:
    """Deal markets, in manifest order, into ``workers`` shares; return the helpers' token sets.

    ``markets`` is ``(market id, token ids)`` per market; entries with the same market id are one
    market. Share 0 (the driver's) gets :data:`DRIVER_WEIGHT` of a helper's count. Returns ``[]``
    (no helpers) when there is one worker or fewer than two markets with tokens.
    Cost: O(markets x workers).
    """
    grouped: dict[Any, list[str]] = {}
    for market, tokens in markets:
        grouped.setdefault(market, []).extend(token for token in tokens if token not in UNSHARED_TOKENS)
    groups = [tokens for tokens in grouped.values() if tokens]
    if workers <= 1 or len(groups) < 2:
        return []
    workers = min(workers, len(groups) + 1)  # (a share per market at most, and the driver's)
    shares: list[set[str]] = [set() for _ in range(workers)]
    counts = [0] * workers
    weights = [DRIVER_WEIGHT] + [1.0] * (workers - 1)
    dealt: set[str] = set()
    for tokens in groups:
        share = min(range(workers), key=lambda i: ((counts[i] + 1) / weights[i], i))
        counts[share] += 1
        shares[share].update(token for token in tokens if token not in dealt)  # a token listed twice: first deal
        dealt.update(tokens)
    return [frozenset(tokens) for tokens in shares[1:] if tokens]


class Helpers:
    """Helper processes, one per job, each running ``target(*job, out_dir)``.

    Use as a context manager: entering starts them, leaving stops those still running and
    removes their files. :meth:`results` waits for all and returns what each target returned.

    Cost: one process per job; results travel by file (a pickle), not by pipe.
    """

    def __init__(self, target: Callable[..., Any], jobs: list[tuple[Any, ...]], near: Path) -> None:
        self._target = target
        self.jobs = jobs
        self._near = near
        self.dir: Path | None = None
        self._processes: list[Any] = []

    def __enter__(self) -> "Helpers":
        if not self.jobs:
            return self
        self._near.mkdir(parents=True, exist_ok=True)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() \
            and threading.active_count() == 1 else "spawn"
        context = multiprocessing.get_context(method)
        try:
            with stops_held():  # (named at once, so that a stop now cannot leave it behind)
                self.dir = Path(tempfile.mkdtemp(prefix=".streamer-shares-", dir=self._near))
            for number, job in enumerate(self.jobs, start=1):
                out_dir = self.dir / f"share-{number}"
                out_dir.mkdir()
                process = context.Process(target=_helper_main, name=f"streamer-share-{number}", daemon=True,
                                          args=(self._target, (*job, out_dir), out_dir / "result.pickle"))
                self._processes.append((process, out_dir))
                # SIGINT and SIGTERM wait while the helper is made: a stop then would leave a
                # helper this process does not know yet (they unblock in the helper once its
                # handlers are set)
                blocked = _block(_STOPS)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)  # fork with no other thread
                        process.start()
                finally:
                    if blocked:
                        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
        except BaseException:  # (a SIGTERM as well): stop what started, remove the directory
            self.__exit__(None, None, None)
            raise
        return self

    def results(self) -> list[Any]:
        """Wait for every helper; return their results.

        Cost: blocks until every helper has ended, then O(result bytes); raises as below.

        :raises InputError: when a helper could not read an input (the same one-line error).
        :raises OSError: when a helper could not write (its work files: a full disk, say).
        :raises HelperError: when a helper failed otherwise or died.
        """
        results = []
        for process, out_dir in self._processes:
            process.join()
            path = out_dir / "result.pickle"
            if not path.exists():
                raise HelperError(f"analysis helper {process.name} died (exit code {process.exitcode})")
            with open(path, "rb") as handle:
                status, value = pickle.load(handle)
            if status == "input_error":
                raise InputError(value)
            if status == "os_error":
                raise OSError(*value)
            if status != "ok":
                raise HelperError(f"analysis helper {process.name} failed: {value}")
            results.append(value)
        return results

    def __exit__(self, *exc_info: Any) -> None:
        for process, _out_dir in self._processes:
            if process.pid is None:  # never started
                continue
            if process.is_alive():
                process.terminate()
            process.join()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


#: The signals that stop a command (the terminal's Ctrl-C, a service manager's stop).
_STOPS = {signal.SIGINT, signal.SIGTERM}


def _block(signums: set[signal.Signals]) -> bool:
    """Block ``signums`` in this thread where the platform can; whether it did. Cost: O(1)."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    return True


def _helper_main(target: Callable[..., Any], args: tuple[Any, ...], result_path: Path) -> None:
    """A helper's body: run ``target`` and leave ``(status, value)`` in ``result_path``."""
    _exit_with_driver()
    # Stopped by its driver only (SIGTERM: clean up as it unwinds, once). Ctrl-C reaches the whole
    # process group; the driver, interrupted too, stops its helpers as it unwinds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_once)
    try:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)  # (blocked while it was made)
        outcome: tuple[str, Any] = ("ok", target(*args))
    except InputError as exc:
        outcome = ("input_error", str(exc))
    except OSError as exc:  # (a full disk under its work files: the driver reports it as its own)
        outcome = ("os_error", (exc.errno, exc.strerror or str(exc), exc.filename))
    except BaseException as exc:  # reported by the driver; a helper prints no traceback
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    temp = result_path.with_suffix(".tmp")
    with open(temp, "wb") as handle:
        pickle.dump(outcome, handle)
    os.replace(temp, result_path)


def _exit_with_driver() -> None:
    """End this helper as soon as its driver is gone (killed, say): nobody would read its work."""
    driver = multiprocessing.parent_process()
    if driver is None:
        return

    def watch() -> None:
        driver.join()
        os._exit(EXIT_DRIVER_GONE)

    threading.Thread(target=watch, name="streamer-driver-watch", daemon=True).start()
