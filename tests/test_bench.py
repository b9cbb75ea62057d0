"""The benchmark harness runs end to end in its quick mode and reports every section it ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.report import targets

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench
def test_quick_benchmark_prints_tables_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--sections", "overhead,scale,http", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert [r["name"] for r in results["overhead"]] == [
        "in-process client, trivial tool",
        "stdio client, trivial tool",
    ]
    assert all(r["governed"]["p50_ms"] > 0 and r["ratio_p50"] > 0 for r in results["overhead"])
    assert results["pipeline"]["pipeline_call"]["runs"] == 2
    assert [r["generated"] for r in results["scale"]] == [10, 100]
    assert [r["sessions"] for r in results["http"]] == [1, 2]
    assert all(r["calls_per_s"] > 0 for r in results["http"])
    assert "### 1. Overhead of a trivial tool" in done.stdout
    pace = results["machine"]["reference_loop_us"]
    assert pace["start"] > 0 and pace["end"] > 0
    assert f"took {pace['start']:g} µs at the start of the run" in done.stdout
    assert "### Targets (measured, not asserted)" in done.stdout


def _latency(p50: float, p99: float, cpu: float | None = None) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu, "runs": 7}


@pytest.mark.parametrize(("governed", "execute_step", "verdict"), [(0.42, 0.13, "met"), (0.45, 0.13, "**not met**")])
def test_the_overhead_target_is_judged_on_what_governance_adds(
    governed: float, execute_step: float, verdict: str
) -> None:
    pipeline = {
        "policies": 1010,
        "pipeline_call": _latency(governed, 0.6, governed),
        "execute_step_alone": _latency(execute_step, 0.2, execute_step),
    }
    rows = targets({"pipeline": pipeline})
    overhead = next(row for row in rows if row.startswith("| governance overhead p50"))
    assert (
        f"| {governed - execute_step:.3f} ms ({governed:.3f} ms less {execute_step:.3f} ms) | {verdict} |" in overhead
    )
    cpu = next(row for row in rows if row.startswith("| (same, mean CPU time per call)"))
    assert cpu.endswith(f"| {verdict} |")
