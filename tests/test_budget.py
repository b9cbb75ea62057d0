"""Spend and call-rate caps: checked before the handler, charged after, atomic across replicas."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import select
from tests.conftest import audit_events
from tests.governed_tree import governed_config

from cedargate.budget import UNCAPPED_CENTS, Budget
from cedargate.cli import main
from cedargate.config import BudgetsConfig, CapsConfig, StoreConfig, load_config
from cedargate.errors import BudgetExceeded
from cedargate.git import git_text
from cedargate.identity import Principal
from cedargate.manifest import ToolManifest
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.store import open_store
from cedargate.store.tables import spend_ledger

pytestmark = pytest.mark.anyio

CAPS = "\n[budgets.teams.storefront]\nday_cents = 2\nmonth_cents = 100\n"
PRINCIPAL = Principal(agent="codex-demo", team="storefront", on_behalf_of="alice", mode="autonomous", task="t")
NOON = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


def _write(branch: str) -> dict[str, str]:
    return {"repository": "acme/web", "branch": branch, "path": "a.txt", "content": branch}


@pytest.fixture
def capped(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    path = governed_config(tree, store_config, staging=False, extra=CAPS)
    runtime = build_runtime(load_config(path, environ={}))
    yield runtime
    runtime.close()


@pytest.fixture
def write_manifest(runtime: Runtime) -> ToolManifest:
    manifest = runtime.catalog.tools["repo_write_file"]
    assert manifest.cost_cents == 1
    return manifest


async def test_a_call_over_the_daily_cap_is_denied_with_cap_spend_and_reset_time_and_audited(
    capped: Runtime,
) -> None:
    async with Client(build_server(capped)) as client:
        first = await client.call_tool("repo_write_file", _write("agent/b1"))
        second = await client.call_tool("repo_write_file", _write("agent/b2"))
        third = await client.call_tool("repo_write_file", _write("agent/b3"))
    assert first.is_error is False and second.is_error is False
    assert third.is_error is True
    text = third.content[0].text  # type: ignore[union-attr]
    assert "over budget: team `storefront` daily spend cap is 2 cents, 2 cents spent" in text
    assert "resets at" in text and "T00:00:00+00:00" in text
    repo = capped.config.repository("acme/web")
    assert repo is not None
    assert git_text(repo.path, ["branch", "--list", "agent/b3"]) == ""
    events = audit_events(capped.config.audit.path)
    assert [e["outcome"] for e in events] == ["succeeded", "succeeded", "over_budget"]
    assert events[2]["decision"]["effect"] == "allow"


async def test_reads_that_cost_nothing_still_run_when_the_spend_cap_is_reached(capped: Runtime) -> None:
    async with Client(build_server(capped)) as client:
        for n in range(3):
            await client.call_tool("repo_write_file", _write(f"agent/r{n}"))
        read = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "README.md"})
    assert read.is_error is False


async def test_policies_see_the_remaining_budget_in_the_cedar_context(tree: Path, store_config: StoreConfig) -> None:
    (tree / "policies" / "budget.cedar").write_text(
        '@id("keep-a-reserve")\n@reason("the last cent of the day is kept for reads")\n'
        'forbid (principal, action in Action::"risk:write", resource)\n'
        "when { context.budget.remaining_cents < 2 };\n"
    )
    runtime = build_runtime(load_config(governed_config(tree, store_config, staging=False, extra=CAPS), environ={}))
    try:
        async with Client(build_server(runtime)) as client:
            first = await client.call_tool("repo_write_file", _write("agent/c1"))
            second = await client.call_tool("repo_write_file", _write("agent/c2"))
    finally:
        runtime.close()
    assert first.is_error is False
    assert second.is_error is True
    assert "keep-a-reserve" in second.content[0].text  # type: ignore[union-attr]


def test_the_call_rate_cap_refuses_the_call_past_the_limit_until_the_minute_ends(
    store_config: StoreConfig, write_manifest: ToolManifest
) -> None:
    store = open_store(store_config)
    config = BudgetsConfig(agents={"codex-demo": CapsConfig(calls_per_minute=2)})
    try:
        budget = Budget(store, config, clock=lambda: NOON)
        budget.check(PRINCIPAL, write_manifest)
        budget.check(PRINCIPAL, write_manifest)
        with pytest.raises(BudgetExceeded) as refused:
            budget.check(PRINCIPAL, write_manifest)
        assert "agent `codex-demo` calls-per-minute cap is 2 calls, 2 made this minute" in str(refused.value)
        assert "resets at 2026-11-26T12:01:00+00:00" in str(refused.value)
        later = Budget(store, config, clock=lambda: NOON.replace(minute=1))
        assert later.check(PRINCIPAL, write_manifest) is not None
    finally:
        store.close()


def test_a_failed_call_gives_its_reserved_cents_back(store_config: StoreConfig, write_manifest: ToolManifest) -> None:
    store = open_store(store_config)
    try:
        budget = Budget(store, BudgetsConfig(teams={"storefront": CapsConfig(day_cents=5)}), clock=lambda: NOON)
        assert budget.remaining_cents(PRINCIPAL) == 5
        reservation = budget.check(PRINCIPAL, write_manifest)
        assert budget.remaining_cents(PRINCIPAL) == 4
        budget.release(reservation)
        assert budget.remaining_cents(PRINCIPAL) == 5
        assert Budget(store, BudgetsConfig()).remaining_cents(PRINCIPAL) == UNCAPPED_CENTS
    finally:
        store.close()


def test_two_replicas_charging_concurrently_never_pass_the_cap(
    store_config: StoreConfig, write_manifest: ToolManifest
) -> None:
    replicas = [open_store(store_config), open_store(store_config)]
    config = BudgetsConfig(teams={"storefront": CapsConfig(day_cents=7)}, agents={"codex-demo": CapsConfig()})
    budgets = [Budget(store, config, clock=lambda: NOON) for store in replicas]
    admitted: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(16)

    def call(n: int) -> None:
        budget = budgets[n % 2]
        start.wait()
        try:
            budget.charge(budget.check(PRINCIPAL, write_manifest), f"event-{n}")
            admitted.append(n)
        except BudgetExceeded:
            refused.append(n)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(admitted) == 7 and len(refused) == 9
        assert budgets[0].remaining_cents(PRINCIPAL) == 0
        assert {budgets[0].caps_for("team", "storefront").day_cents} == {7}
    finally:
        for store in replicas:
            store.close()


async def test_budget_show_reports_spend_and_caps_as_json(capped: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    async with Client(build_server(capped)) as client:
        await client.call_tool("repo_write_file", _write("agent/s1"))
    capsys.readouterr()
    assert main(["--config", str(capped.config.base_dir / "cedargate.toml"), "budget", "show", "--json"]) == 0
    lines = {(line["scope"], line["subject"]): line for line in json.loads(capsys.readouterr().out)}
    team = lines[("team", "storefront")]
    assert team["day_cents"]["used"] == 1 and team["day_cents"]["cap"] == 2
    assert team["month_cents"]["cap"] == 100
    assert lines[("agent", "codex-demo")]["day_cents"] == {**team["day_cents"], "cap": None}


async def test_concurrent_calls_through_two_replicas_on_one_postgresql_never_pass_the_cap(
    tree: Path, postgres: object
) -> None:
    from tests.store_fixtures import PostgresCluster

    assert isinstance(postgres, PostgresCluster)
    store = StoreConfig(url=postgres.create_database())
    caps = "\n[budgets.agents.codex-demo]\nday_cents = 3\n"
    path = governed_config(tree, store, staging=False, extra=caps)
    second = tree / "replica2.toml"
    second.write_text(path.read_text().replace('path = "audit.jsonl"', 'path = "audit-2.jsonl"'))
    replicas = [build_runtime(load_config(path, environ={})), build_runtime(load_config(second, environ={}))]
    outcomes: list[bool] = []

    async def agent(runtime: Runtime, n: int) -> None:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool("repo_write_file", _write(f"agent/k{n}"))
            outcomes.append(bool(result.is_error))

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                for n in range(8):
                    tasks.start_soon(agent, replicas[n % 2], n)
    finally:
        for runtime in replicas:
            runtime.close()
    assert outcomes.count(False) == 3
    events = audit_events(tree / "audit.jsonl") + audit_events(tree / "audit-2.jsonl")
    assert sorted(e["outcome"] for e in events) == ["over_budget"] * 5 + ["succeeded"] * 3


def test_a_refusal_tells_cents_spent_from_cents_reserved_by_calls_in_flight(
    store_config: StoreConfig, write_manifest: ToolManifest
) -> None:
    store = open_store(store_config)
    try:
        budget = Budget(store, BudgetsConfig(teams={"storefront": CapsConfig(day_cents=3)}), clock=lambda: NOON)
        budget.charge(budget.check(PRINCIPAL, write_manifest), "event-done")
        in_flight = [budget.check(PRINCIPAL, write_manifest) for _ in range(2)]
        with pytest.raises(BudgetExceeded) as refused:
            budget.check(PRINCIPAL, write_manifest)
        message = str(refused.value)
        assert "daily spend cap is 3 cents, 1 cents spent and 2 cents reserved by calls in flight" in message
        assert "a retry may pass once the calls in flight finish" in message
        for reservation in in_flight:  # both failed: their cents come back and the retry passes
            budget.release(reservation)
        assert budget.check(PRINCIPAL, write_manifest) is not None
    finally:
        store.close()


def test_a_refusal_with_nothing_in_flight_names_only_the_spend_and_the_reset(
    store_config: StoreConfig, write_manifest: ToolManifest
) -> None:
    store = open_store(store_config)
    try:
        budget = Budget(store, BudgetsConfig(teams={"storefront": CapsConfig(day_cents=1)}), clock=lambda: NOON)
        budget.charge(budget.check(PRINCIPAL, write_manifest), "event-done")
        with pytest.raises(BudgetExceeded) as refused:
            budget.check(PRINCIPAL, write_manifest)
    finally:
        store.close()
    message = str(refused.value)
    assert "cap is 1 cents, 1 cents spent, `repo_write_file` costs 1 cents" in message
    assert "in flight" not in message and "the cap resets at 2026-11-27T00:00:00+00:00" in message


def test_the_ledger_dates_a_charge_when_it_was_reserved_not_when_it_was_charged(
    store_config: StoreConfig, write_manifest: ToolManifest
) -> None:
    """A call reserved just before midnight and finished just after is spend of the day its counters hold."""
    store = open_store(store_config)
    reserved_at = datetime(2026, 11, 26, 23, 59, 59, 900000, tzinfo=UTC)
    now = [reserved_at]
    try:
        budget = Budget(store, BudgetsConfig(teams={"storefront": CapsConfig(day_cents=5)}), clock=lambda: now[0])
        reservation = budget.check(PRINCIPAL, write_manifest)
        now[0] = datetime(2026, 11, 27, 0, 0, 0, 100000, tzinfo=UTC)
        budget.charge(reservation, "e1")
        with store.engine.connect() as connection:
            [at] = connection.execute(select(spend_ledger.c.at)).scalars().all()
        assert (at if at.tzinfo else at.replace(tzinfo=UTC)) == reserved_at
    finally:
        store.close()
