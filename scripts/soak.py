#!/usr/bin/env python3
"""A longer adversarial run than CI's: fuzzed calls, load, and SIGKILLs, with one summary table.

Usage: .venv/bin/python scripts/soak.py [--examples N] [--seconds S] [--sessions K] [--kills R]

1. fuzz   generated tool arguments (inside and outside each tool's schema) through the governed
          pipeline in-process; every call must leave one audit event and run no handler unallowed
2. load   K concurrent MCP sessions over streamable HTTP against a real ``cedargate serve`` for S s
3. budget the same load against a server with a SQLite store and a team spend cap well below what
          the agents try to spend; what succeeded must never cost more than the cap
4. outage a governed runtime on its own PostgreSQL cluster; the cluster is stopped for C calls
          (each must fail closed, audited, no handler run) and started again (calls succeed, no restart)
5. kill   R times: load, SIGKILL the server mid-call (every other time also tear its last write),
          restart it; everything it acknowledged must still be in the log, and the chain verify

Exits 1 if any event was lost, the chain does not verify, or the cap or the outage did not hold.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "server")]

import anyio  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tests.adversarial.harness import (  # noqa: E402
    ServerProcess,
    assert_call_governed,
    chained_records,
    governed,
    make_tree,
    spy_on,
    start_http_server,
)
from tests.adversarial.load import run_load, run_load_until_killed  # noqa: E402
from tests.adversarial.test_fuzz_tool_arguments import calls  # noqa: E402
from tests.governed_tree import store_toml  # noqa: E402
from tests.store_fixtures import PostgresServer, local_postgres  # noqa: E402

from cedargate.audit.event import Outcome  # noqa: E402
from cedargate.audit.verify import verify_log  # noqa: E402
from cedargate.catalog import load_catalog  # noqa: E402
from cedargate.config import StoreConfig, load_config  # noqa: E402
from cedargate.runtime import build_runtime  # noqa: E402

TORN = b'{"event_id":"soak-torn","principal":{"agent":"cod'


@dataclass
class Summary:
    inputs: int = 0
    faults: int = 0
    calls: int = 0
    lost: int = 0
    load_calls_per_second: float = 0.0
    load_p99_ms: float = 0.0
    chain_ok: bool = True
    segments: int = 0
    budget_spent: int = 0
    budget_cap: int = 0
    outage_refused: str = "not run"
    guards_held: bool = True
    """The spend cap held and no handler ran while the store was down."""


def fuzz(workdir: Path, examples: int, summary: Summary) -> None:
    gov = governed(make_tree(workdir))
    try:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def run(data: st.DataObject) -> None:
            tool, args = data.draw(calls(gov))
            before_events, before_runs = len(gov.events), len(gov.runs)
            result = gov.call(tool, args)
            summary.inputs += 1
            assert_call_governed(gov, before_events, before_runs, result)

        run()
    finally:
        gov.close()
    summary.calls += summary.inputs
    report = verify_log(gov.runtime.config.audit.path)
    summary.chain_ok &= report.ok
    summary.lost += max(0, summary.inputs - report.events)


async def load(workdir: Path, sessions: int, seconds: float, summary: Summary) -> None:
    config = make_tree(workdir)
    server = await start_http_server(config, workdir / "server.log")
    try:
        report = await run_load(server.url, sessions, seconds)
    finally:
        server.stop()
    events = chained_records(workdir / "audit.jsonl")
    ids = {e["event_id"] for e in events}
    summary.calls += report.calls
    summary.lost += max(0, report.calls - len(events)) + len(set(report.acknowledged_ids) - ids)
    summary.load_calls_per_second = report.calls_per_second
    summary.load_p99_ms = report.percentile(0.99) * 1000
    verdict = verify_log(workdir / "audit.jsonl")
    summary.chain_ok &= verdict.ok and report.hung == 0


async def budget(workdir: Path, sessions: int, seconds: float, summary: Summary) -> None:
    config = make_tree(workdir)
    summary.budget_cap = sessions  # one write per session in the first round already reaches it
    caps = f"\n[budgets.teams.storefront]\nday_cents = {summary.budget_cap}\n"
    config.write_text(config.read_text() + "\n" + store_toml(StoreConfig(path=workdir / "state.db")) + caps)
    server = await start_http_server(config, workdir / "server.log")
    try:
        report = await run_load(server.url, sessions, seconds)
    finally:
        server.stop()
    cost = {m.name: m.cost_cents for m in load_catalog(workdir / "tools")}
    summary.budget_spent = report.spent_cents(cost)
    summary.guards_held &= summary.budget_spent <= summary.budget_cap
    events = chained_records(workdir / "audit.jsonl")
    summary.calls += report.calls
    summary.lost += max(0, report.calls - len(events)) + len(
        set(report.acknowledged_ids) - {e["event_id"] for e in events}
    )
    summary.chain_ok &= verify_log(workdir / "audit.jsonl").ok and report.hung == 0


async def outage(workdir: Path, calls_each: int, summary: Summary) -> None:
    try:
        with local_postgres() as cluster:
            await _outage_on(cluster, workdir, calls_each, summary)
    except pytest.skip.Exception as exc:  # no PostgreSQL server binaries here
        summary.outage_refused = f"skipped ({exc})"


async def _outage_on(cluster: PostgresServer, workdir: Path, calls_each: int, summary: Summary) -> None:
    read = {"repository": "acme/web", "path": "README.md"}
    config = make_tree(workdir)
    config.write_text(config.read_text() + "\n" + store_toml(StoreConfig(url=cluster.create_database())))
    gov = spy_on(build_runtime(load_config(config, environ={})))
    try:
        served = [(await gov.acall("repo_read_file", read)).outcome for _ in range(calls_each)]
        runs = len(gov.runs)
        cluster.stop()
        summary.faults += 1
        down = [(await gov.acall("repo_read_file", read)).outcome for _ in range(calls_each)]
        summary.guards_held &= len(gov.runs) == runs
        cluster.start()
        served += [(await gov.acall("repo_read_file", read)).outcome for _ in range(calls_each)]
    finally:
        gov.close()
    refused = sum(o is Outcome.FAILED for o in down)
    summary.outage_refused = f"{refused}/{len(down)}"
    summary.guards_held &= refused == len(down) and all(o is Outcome.SUCCEEDED for o in served)
    summary.calls += len(served) + len(down)
    verdict = verify_log(gov.runtime.config.audit.path)
    summary.lost += max(0, len(served) + len(down) - verdict.events)
    summary.chain_ok &= verdict.ok


async def kills(
    workdir: Path, rounds: int, sessions: int, seconds: float, summary: Summary, rng: random.Random
) -> None:
    config = make_tree(workdir)
    audit = workdir / "audit.jsonl"
    for number in range(rounds):
        before = len(chained_records(audit)) if audit.exists() else 0
        server = await start_http_server(config, workdir / "server.log")
        delay = rng.uniform(0.5, seconds)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_kill_after, server, delay)
                report = await run_load_until_killed(server.url, sessions, seconds + 5)
        finally:
            server.stop()
        summary.faults += 1
        if number % 2 == 1:
            with open(audit, "ab") as handle:  # a write torn by the crash, made certain
                handle.write(TORN[: rng.randint(1, len(TORN))])
            summary.faults += 1
        events = chained_records(audit)
        ids = {e["event_id"] for e in events}
        summary.calls += report.calls
        summary.lost += max(0, before + report.calls - len(events)) + len(set(report.acknowledged_ids) - ids)
    # One more start: it recovers whatever the last kill left, then serves.
    server = await start_http_server(config, workdir / "server.log")
    try:
        report = await run_load(server.url, 1, 0.5)
        summary.calls += report.calls
    finally:
        server.stop()
    verdict = verify_log(audit)
    summary.chain_ok &= verdict.ok
    summary.segments = verdict.segments


async def _kill_after(server: ServerProcess, delay: float) -> None:
    await anyio.sleep(delay)
    server.kill()


def print_table(summary: Summary, elapsed: float) -> None:
    rows = [
        ("inputs tried", str(summary.inputs)),
        ("faults injected", str(summary.faults)),
        ("calls served", str(summary.calls)),
        ("events lost", str(summary.lost)),
        ("load: calls/s", f"{summary.load_calls_per_second:.1f}"),
        ("load: p99 latency", f"{summary.load_p99_ms:.0f} ms"),
        ("segments after torn writes", str(summary.segments)),
        ("budget: spent / cap", f"{summary.budget_spent} / {summary.budget_cap} cents"),
        ("store outage: calls refused", summary.outage_refused),
        ("caps and outage held", "yes" if summary.guards_held else "NO"),
        ("audit chains verify", "yes" if summary.chain_ok else "NO"),
        ("wall time", f"{elapsed:.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="fuzzed calls (default: 500)")
    parser.add_argument("--seconds", type=float, default=20, help="load duration in seconds (default: 20)")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent MCP sessions (default: 8)")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILL rounds (default: 4)")
    parser.add_argument(
        "--outage-calls", type=int, default=20, help="calls before, during and after the store outage (default: 20)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for kill timing (default: random)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)  # noqa: S311 - timing, not secrets
    print(f"soak: seed {seed}", file=sys.stderr)
    summary = Summary()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cedargate-soak-") as tmp:
        base = Path(tmp)
        print("soak: fuzz", file=sys.stderr)
        fuzz(base / "fuzz", args.examples, summary)
        print("soak: load", file=sys.stderr)
        anyio.run(load, base / "load", args.sessions, args.seconds, summary)
        print("soak: budget", file=sys.stderr)
        anyio.run(budget, base / "budget", args.sessions, args.seconds / 2, summary)
        print("soak: store outage", file=sys.stderr)
        anyio.run(outage, base / "outage", args.outage_calls, summary)
        print("soak: kill", file=sys.stderr)
        rng = random.Random(seed)  # noqa: S311 - timing, not secrets
        anyio.run(kills, base / "kill", args.kills, args.sessions, args.seconds / 2, summary, rng)
    print_table(summary, time.perf_counter() - started)
    return 0 if summary.lost == 0 and summary.chain_ok and summary.guards_held else 1


if __name__ == "__main__":
    sys.exit(main())
