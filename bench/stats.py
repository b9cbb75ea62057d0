"""Percentiles of one run, medians across runs, ratios against a baseline of the same run."""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")


@dataclass(frozen=True)
class Latency:
    """p50 and p99 in milliseconds: each the median of that percentile over ``runs`` runs."""

    p50_ms: float
    p99_ms: float
    runs: int
    calls_per_run: int
    cpu_ms: float | None = None
    """Median over runs of process CPU time per call (all threads); steadier than wall time on a busy machine."""

    def ratio_to(self, baseline: Latency) -> tuple[float, float]:
        return ratio(self.p50_ms, baseline.p50_ms), ratio(self.p99_ms, baseline.p99_ms)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 2) if baseline > 0 else float("nan")


def summarise(runs: Sequence[Sequence[float]], cpu: Sequence[float] = ()) -> Latency:
    """Median over runs of each run's p50 and p99 (samples in seconds, result in ms)."""
    return Latency(
        cpu_ms=round(statistics.median(cpu) * 1000, 3) if cpu else None,
        p50_ms=round(statistics.median(percentile(r, 50) for r in runs) * 1000, 3),
        p99_ms=round(statistics.median(percentile(r, 99) for r in runs) * 1000, 3),
        runs=len(runs),
        calls_per_run=len(runs[0]) if runs else 0,
    )


async def time_calls(
    call: Callable[[], Awaitable[object]], calls: int, warmup: int, cpu: list[float] | None = None
) -> list[float]:
    """Wall time of each of ``calls`` awaited calls, after ``warmup`` untimed ones.

    With ``cpu``, the run's process CPU time per call is appended to it.
    """
    for _ in range(warmup):
        await call()
    samples = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    if cpu is not None:
        cpu.append((time.process_time() - cpu_start) / calls)
    return samples


async def time_interleaved(
    calls_by_name: Mapping[K, Callable[[], Awaitable[object]]], calls: int, warmup: int
) -> dict[K, list[float]]:
    """Wall time of ``calls`` calls of each, taking turns call by call, after ``warmup`` rounds.

    Turns of one call each give both sides of a ratio the same machine: this VM's speed moves
    within seconds, and runs of a few hundred calls each measured it as much as the code.
    """
    for _ in range(warmup):
        for call in calls_by_name.values():
            await call()
    samples: dict[K, list[float]] = {name: [] for name in calls_by_name}
    for _ in range(calls):
        for name, call in calls_by_name.items():
            start = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - start)
    return samples


REFERENCE_LOOP = "sum(range(1000))"
"""A fixed pure-Python workload: how fast this machine runs the interpreter right now."""


def reference_loop_us(repeats: int = 9, number: int = 2000) -> float:
    """Median microseconds of ``REFERENCE_LOOP``; absolute figures of two runs compare only as these do."""
    return round(statistics.median(timeit.repeat(REFERENCE_LOOP, number=number, repeat=repeats)) / number * 1e6, 2)
