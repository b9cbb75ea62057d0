"""A load driver: N concurrent MCP sessions over streamable HTTP making a mix of governed calls.

Used by the bounded load test and by ``scripts/soak.py``. Each agent loops over allowed
reads, denied writes, invalid arguments, AWS reads and allowed writes on its own task
branch, and records what came back and how long it took.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

CALL_TIMEOUT = 20.0
"""No single call may take longer: a call that does is a hang, and the run fails."""


@dataclass
class LoadReport:
    calls: int = 0
    errors: int = 0
    hung: int = 0
    latencies: list[float] = field(default_factory=list)
    acknowledged_ids: list[str] = field(default_factory=list)
    """Audit event ids the server named in its answers (every refusal names its event)."""
    by_tool: dict[str, int] = field(default_factory=dict)
    succeeded_by_tool: dict[str, int] = field(default_factory=dict)
    over_budget: int = 0
    """Calls refused because a spend or rate cap was reached."""
    seconds: float = 0.0

    def spent_cents(self, cost_cents: dict[str, int]) -> int:
        """What the succeeded calls cost, by the manifests' ``cost_cents``."""
        return sum(cost_cents.get(tool, 0) * n for tool, n in self.succeeded_by_tool.items())

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def agent_calls(agent: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The calls one agent makes on its ``n``-th round."""
    return [
        ("repo_read_file", {"repository": "acme/web", "path": "README.md"}),
        ("repo_write_file", {"repository": "acme/payments", "branch": "agent/load", "path": "x", "content": "x"}),
        ("repo_read_file", {"repository": "acme/web", "path": 7}),
        ("aws_sts_get_caller_identity", {}),
        (
            "repo_write_file",
            {"repository": "acme/web", "branch": f"agent/load-{agent}", "path": f"f{n % 5}.txt", "content": str(n)},
        ),
    ]


async def run_load(url: str, sessions: int, seconds: float, *, stop_after: int | None = None) -> LoadReport:
    """Run ``sessions`` agents until ``seconds`` pass (or ``stop_after`` calls); connection loss ends an agent."""
    report = LoadReport()
    started = time.perf_counter()
    deadline = started + seconds

    async def agent(number: int) -> None:
        async with Client(url) as client:
            round_number = 0
            while time.perf_counter() < deadline and (stop_after is None or report.calls < stop_after):
                for tool, args in agent_calls(number, round_number):
                    began = time.perf_counter()
                    try:
                        with anyio.fail_after(CALL_TIMEOUT):
                            result = await client.call_tool(tool, args)
                    except TimeoutError:
                        report.hung += 1
                        raise
                    report.latencies.append(time.perf_counter() - began)
                    report.calls += 1
                    report.by_tool[tool] = report.by_tool.get(tool, 0) + 1
                    if not result.is_error:
                        report.succeeded_by_tool[tool] = report.succeeded_by_tool.get(tool, 0) + 1
                    else:
                        report.errors += 1
                        text = result.content[0].text  # type: ignore[union-attr]
                        report.over_budget += text.startswith("over budget:")
                        if "(audit event " in text:
                            report.acknowledged_ids.append(text.rsplit("(audit event ", 1)[1].rstrip(")"))
                round_number += 1

    async with anyio.create_task_group() as tg:
        for number in range(sessions):
            tg.start_soon(agent, number)
    report.seconds = time.perf_counter() - started
    return report


async def run_load_until_killed(url: str, sessions: int, seconds: float) -> LoadReport:
    """Like ``run_load``, but agents whose server dies under them just stop (for SIGKILL faults)."""
    report = LoadReport()
    started = time.perf_counter()
    deadline = started + seconds

    async def agent(number: int) -> None:
        try:
            async with Client(url) as client:
                round_number = 0
                while time.perf_counter() < deadline:
                    for tool, args in agent_calls(number, round_number):
                        with anyio.fail_after(CALL_TIMEOUT):
                            result = await client.call_tool(tool, args)
                        report.calls += 1
                        if result.is_error:
                            text = result.content[0].text  # type: ignore[union-attr]
                            if "(audit event " in text:
                                report.acknowledged_ids.append(text.rsplit("(audit event ", 1)[1].rstrip(")"))
                    round_number += 1
        except Exception:
            return

    async with anyio.create_task_group() as tg:
        for number in range(sessions):
            tg.start_soon(agent, number)
    report.seconds = time.perf_counter() - started
    return report
