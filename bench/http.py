"""Section 3: throughput of ``cedargate serve --transport http`` (a real subprocess) under concurrency.

Each of ``c`` client sessions makes the same number of governed reads (``repo_read_file``,
a real git read); throughput is calls per second of wall time, compared with one session.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from bench.procs import free_port, stop, wait_for_port
from bench.stats import percentile, ratio
from cedargate.demo import DEV_REPO

TOOL = "repo_read_file"
ARGS = {"repository": DEV_REPO, "path": "README.md"}


async def _one_run(url: str, sessions: int, calls: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def session(client: Client) -> None:
        for _ in range(calls):
            start = time.perf_counter()
            result = await client.call_tool(TOOL, ARGS)
            latencies.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(f"`{TOOL}` failed over HTTP: {result.content}")

    clients = [Client(url, mode="legacy") for _ in range(sessions)]
    try:
        for client in clients:
            await client.__aenter__()
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(session, client)
        wall = time.perf_counter() - started
    finally:
        for client in reversed(clients):
            await client.__aexit__(None, None, None)
    return sessions * calls / wall, latencies


async def http_throughput(config_path: Path, levels: list[int], calls: int, runs: int) -> list[dict[str, Any]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cedargate",
            "--config",
            str(config_path),
            "serve",
            "--transport",
            "http",
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict[str, Any]] = []
    try:
        await wait_for_port(port, proc, timeout=60)
        url = f"http://127.0.0.1:{port}/mcp"
        await _one_run(url, 1, 3)  # warm-up: imports, git, first handshake
        base: float | None = None
        for level in levels:
            throughputs, p50s, p99s = [], [], []
            for _ in range(runs):
                throughput, latencies = await _one_run(url, level, calls)
                throughputs.append(throughput)
                p50s.append(percentile(latencies, 50))
                p99s.append(percentile(latencies, 99))
            tput = round(statistics.median(throughputs), 1)
            base = base or tput
            rows.append(
                {
                    "sessions": level,
                    "calls_per_session": calls,
                    "runs": runs,
                    "calls_per_s": tput,
                    "ratio_vs_1_session": ratio(tput, base),
                    "p50_ms": round(statistics.median(p50s) * 1000, 2),
                    "p99_ms": round(statistics.median(p99s) * 1000, 2),
                }
            )
    finally:
        stop(proc)
    return rows
