"""Section 1: what governance costs a trivial call, and section 2: how that grows with policies.

Through a client, governed and ungoverned calls take turns call by call, so both see the same
machine; ``Pipeline.call`` and its baselines alternate run by run (each run also measures CPU time).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from mcp import Client, StdioServerParameters

from bench.fixture import NOOP_ARGS, NOOP_TOOL, generated_repo, make_tree
from bench.noop import build, build_bench_runtime, noop
from bench.stats import Latency, ratio, summarise, time_calls, time_interleaved
from cedargate.config import load_config
from cedargate.handlers import HandlerCall
from cedargate.identity import principal_from_config
from cedargate.pipeline import CallRequest
from cedargate.resolve import resolve_resource
from cedargate.runtime import Runtime
from cedargate.session import SessionState

ROOT = Path(__file__).resolve().parent.parent


def _row(name: str, governed: Latency, baseline: Latency, **extra: Any) -> dict[str, Any]:
    p50, p99 = governed.ratio_to(baseline)
    return {
        "name": name,
        "governed": governed.__dict__,
        "baseline": baseline.__dict__,
        "ratio_p50": p50,
        "ratio_p99": p99,
        **extra,
    }


async def _paired(clients: dict[bool, Client], calls: int, runs: int) -> tuple[Latency, Latency]:
    """Governed and ungoverned calls taking turns, call by call (``time_interleaved``)."""

    def one(client: Client) -> Callable[[], Coroutine[Any, Any, object]]:
        return lambda: client.call_tool(NOOP_TOOL, NOOP_ARGS)

    samples: dict[bool, list[list[float]]] = {True: [], False: []}
    for _ in range(runs):
        run = await time_interleaved({g: one(c) for g, c in clients.items()}, calls, warmup=max(3, calls // 10))
        for governed, timed in run.items():
            samples[governed].append(timed)
    return summarise(samples[True]), summarise(samples[False])


async def client_overhead(runtime: Runtime, config_path: Path, calls: int, runs: int) -> list[dict[str, Any]]:
    """A trivial tool through a real client session, in-process and over stdio, governed vs not."""
    rows = []
    async with AsyncExitStack() as stack:
        clients = {g: await stack.enter_async_context(Client(build(runtime, g), mode="legacy")) for g in (True, False)}
        gov, base = await _paired(clients, calls, runs)
        rows.append(_row("in-process client, trivial tool", gov, base, baseline_name="same server, pipeline bypassed"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    async with AsyncExitStack() as stack:
        clients = {}
        for g in (True, False):
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "bench.noop", "--config", str(config_path), "governed" if g else "ungoverned"],
                env=env,
                cwd=str(ROOT),
            )
            clients[g] = await stack.enter_async_context(Client(params, mode="legacy"))
        gov, base = await _paired(clients, calls, runs)
        rows.append(_row("stdio client, trivial tool", gov, base, baseline_name="same server, pipeline bypassed"))
    return rows


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _run_inline(call: Coroutine[Any, Any, object]) -> object:
    """Run a pipeline call whose offload never suspends, without the event loop (nothing to wait for)."""
    try:
        call.send(None)
    except StopIteration as done:
        return done.value
    call.close()
    raise RuntimeError("an inline pipeline call waited for something")


def _busy(seconds: float) -> None:
    """Keep the event loop's thread working, as the governance steps do before the hop."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@dataclass(frozen=True)
class PipelineTimes:
    governed: Latency
    """``Pipeline.call``: identify through audit, the line written."""
    execute_step: Latency
    """The bare execute step: one worker-thread hop to the handler, back to back."""
    work_alone: Latency | None = None
    """``Pipeline.call`` with the store visits and the handler run inline: the governance work without the hop."""
    hop_after_work: Latency | None = None
    """One worker-thread hop after the loop worked as long as ``work_alone``: the hop as the pipeline meets it."""
    work_after_idle: Latency | None = None
    """``work_alone`` with the process idle for ``IDLE_BETWEEN_CALLS_S`` before each call, as between stdio calls."""


IDLE_BETWEEN_CALLS_S = 0.002
"""About what a stdio server waits between two calls of one client here."""


async def pipeline_overhead(
    runtime: Runtime, calls: int, runs: int, args: Mapping[str, Any] = NOOP_ARGS, *, breakdown: bool = False
) -> PipelineTimes:
    """``Pipeline.call`` vs the bare execute step; with ``breakdown``, the work and the hop apart."""
    manifest = runtime.catalog.tools[NOOP_TOOL]
    resource = resolve_resource(manifest, args, runtime.config)
    principal = principal_from_config(runtime.config)
    call = HandlerCall(manifest, args, resource, principal, "", "")
    request = CallRequest(NOOP_TOOL, args, principal, SessionState())
    inline = runtime.pipeline.rewired(offload=_inline)
    work_p50 = [0.0]

    async def governed() -> object:
        return await runtime.pipeline.call(request)

    async def bare() -> object:
        return await anyio.to_thread.run_sync(noop, call)

    async def work_alone() -> object:
        return await inline.call(request)

    def work_after_idle() -> float:
        time.sleep(IDLE_BETWEEN_CALLS_S)
        started = time.perf_counter()
        _run_inline(inline.call(request))
        return time.perf_counter() - started

    async def hop_after_work() -> float:
        _busy(work_p50[0])
        started = time.perf_counter()
        await anyio.to_thread.run_sync(noop, call)
        return time.perf_counter() - started

    variants = {"governed": governed, "bare": bare, **({"work": work_alone} if breakdown else {})}
    samples: dict[str, list[list[float]]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    hops: list[list[float]] = []
    idle: list[list[float]] = []
    for _ in range(runs):
        for name, variant in variants.items():
            samples[name].append(await time_calls(variant, calls, warmup=max(3, calls // 10), cpu=cpu[name]))
        if breakdown:
            work_p50[0] = summarise(samples["work"]).p50_ms / 1000
            hops.append([await hop_after_work() for _ in range(calls)])
            idle.append([work_after_idle() for _ in range(calls)])
    result = await runtime.pipeline.call(request)
    if result.is_error or result.event is None:
        raise RuntimeError(f"benchmark call was not allowed and audited: {result.message}")
    return PipelineTimes(
        governed=summarise(samples["governed"], cpu["governed"]),
        execute_step=summarise(samples["bare"], cpu["bare"]),
        work_alone=summarise(samples["work"], cpu["work"]) if breakdown else None,
        hop_after_work=summarise(hops) if breakdown else None,
        work_after_idle=summarise(idle) if breakdown else None,
    )


async def policy_scale(workdir: Path, sizes: list[int], calls: int, runs: int) -> list[dict[str, Any]]:
    """The same governed call with ``n`` generated policies and repositories, for each ``n``."""
    rows: list[dict[str, Any]] = []
    first: Latency | None = None
    for n in sizes:
        config_path = make_tree(workdir / f"scale-{n}", scale=n)
        started = time.perf_counter()
        runtime = build_bench_runtime(load_config(config_path, environ={}))
        load_s = time.perf_counter() - started
        try:
            # The last generated repository: a lookup that scans the config would show here.
            times = await pipeline_overhead(runtime, calls, runs, {"repository": generated_repo(n - 1)})
            gov, bare = times.governed, times.execute_step
        finally:
            runtime.close()
        first = first or gov
        p50, p99 = gov.ratio_to(first)
        rows.append(
            {
                "policies": len(runtime.policies.info),
                "generated": n,
                "repositories": len(runtime.config.repositories),
                "load_s": round(load_s, 2),
                "pipeline": gov.__dict__,
                "execute_step_alone": bare.__dict__,
                "ratio_p50_vs_smallest": p50,
                "ratio_p99_vs_smallest": p99,
                "ratio_p50_vs_execute_step": ratio(gov.p50_ms, bare.p50_ms),
            }
        )
    return rows
