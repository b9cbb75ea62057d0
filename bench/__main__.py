"""``python -m bench``: run every section, print a markdown table, write JSON.

python -m bench                  # the full run (about 3 minutes on 2 cores)
python -m bench --quick          # a small run that proves the harness works
python -m bench --sections overhead,scale --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

from bench import http, overhead, peers
from bench.fixture import make_tree
from bench.noop import build_bench_runtime
from bench.report import render
from bench.stats import reference_loop_us
from cedargate.config import load_config

SECTIONS = ("overhead", "scale", "http", "peers")
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Plan:
    calls: int
    runs: int
    sizes: list[int]
    levels: list[int]
    http_calls: int
    http_runs: int
    overhead_policies: int


FULL = Plan(
    calls=200,
    runs=7,
    sizes=[10, 100, 1000, 10000],
    levels=[1, 8, 32],
    http_calls=20,
    http_runs=3,
    overhead_policies=1000,
)
QUICK = Plan(calls=10, runs=2, sizes=[10, 100], levels=[1, 2], http_calls=2, http_runs=1, overhead_policies=100)


async def run(plan: Plan, sections: list[str], workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "mcp": version("mcp"),
            "cedarpy": version("cedarpy"),
            "reference_loop_us": {"start": reference_loop_us()},
        },
        "plan": plan.__dict__,
    }
    steps = {"overhead": _overhead, "scale": _scale, "http": _http, "peers": _peers}
    for section in sections:
        try:
            results.update(await steps[section](plan, workdir))
        except Exception as exc:  # one broken section is reported, the others still run
            results.setdefault("failed", {})[section] = f"{type(exc).__name__}: {exc}"
    results["machine"]["reference_loop_us"]["end"] = reference_loop_us()
    return results


async def _overhead(plan: Plan, workdir: Path) -> dict[str, Any]:
    config_path = make_tree(workdir / "overhead", scale=plan.overhead_policies)
    runtime = build_bench_runtime(load_config(config_path, environ={}))
    try:
        times = await overhead.pipeline_overhead(runtime, plan.calls, plan.runs, breakdown=True)
        pipeline = {
            "policies": len(runtime.policies.info),
            "pipeline_call": times.governed.__dict__,
            "execute_step_alone": times.execute_step.__dict__,
        }
        for name, latency in (
            ("governance_work_alone", times.work_alone),
            ("hop_after_work", times.hop_after_work),
            ("work_after_idle", times.work_after_idle),
        ):
            if latency is not None:
                pipeline[name] = latency.__dict__
        pipeline["idle_before_call_ms"] = overhead.IDLE_BETWEEN_CALLS_S * 1000
        clients = await overhead.client_overhead(runtime, config_path, plan.calls, plan.runs)
    finally:
        runtime.close()
    return {"pipeline": pipeline, "overhead": clients}


async def _scale(plan: Plan, workdir: Path) -> dict[str, Any]:
    return {"scale": await overhead.policy_scale(workdir, plan.sizes, plan.calls, plan.runs)}


async def _http(plan: Plan, workdir: Path) -> dict[str, Any]:
    config_path = make_tree(workdir / "http", noop=False)
    return {"http": await http.http_throughput(config_path, plan.levels, plan.http_calls, plan.http_runs)}


async def _peers(plan: Plan, workdir: Path) -> dict[str, Any]:
    config_path = make_tree(workdir / "peers", noop=False)
    repo = workdir / "peers" / "repos" / "web"
    calls = max(1, plan.calls // 3)
    reports = [await peers.git_peer(config_path, repo, calls, plan.runs)]
    reports.append(await peers.aws_peer(config_path, workdir / "peers", calls, plan.runs))
    return {"peers": [r.__dict__ for r in reports]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark cedargate's governed calls.")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (proves the harness works)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"where to write results (default {DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section `{unknown[0]}` (known: {', '.join(SECTIONS)})")
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cedargate-bench-") as tmp:
        results = anyio.run(run, plan, sections, Path(tmp))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results))
    print(f"\nresults written to {args.json}", file=sys.stderr)
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
