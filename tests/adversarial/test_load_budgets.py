"""Load with budgets: concurrent sessions over streamable HTTP against a real ``cedargate serve``
process with a team spend cap, on SQLite and on PostgreSQL.

The cap is far below what the agents try to spend, so they race for the last cents: the
succeeded calls times their cost never pass the cap, the ledger agrees, every call has
exactly one audit event and the chain verifies.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from tests.adversarial.harness import chained_records, make_tree, start_http_server
from tests.adversarial.load import run_load
from tests.governed_tree import store_toml

from cedargate.audit.verify import verify_log
from cedargate.catalog import load_catalog
from cedargate.config import StoreConfig
from cedargate.store.engine import store_url
from cedargate.store.tables import spend_ledger

pytestmark = pytest.mark.anyio

SESSIONS = int(os.environ.get("CEDARGATE_LOAD_SESSIONS", "6"))
SECONDS = float(os.environ.get("CEDARGATE_LOAD_SECONDS", "4"))
CAP_CENTS = 3
"""Below one write per session: even a single round of the agents races for it."""


async def test_concurrent_sessions_never_spend_past_the_cap_and_every_call_is_audited_once(
    tmp_path: Path, store_config: StoreConfig
) -> None:
    config = make_tree(tmp_path)
    caps = f"\n[budgets.teams.storefront]\nday_cents = {CAP_CENTS}\n"
    config.write_text(config.read_text() + "\n" + store_toml(store_config) + caps)
    server = await start_http_server(config, tmp_path / "server.log")
    try:
        report = await run_load(server.url, SESSIONS, SECONDS)
    finally:
        server.stop()
    cost = {m.name: m.cost_cents for m in load_catalog(tmp_path / "tools")}
    events = chained_records(tmp_path / "audit.jsonl")
    print(
        f"\nbudget load: {report.calls} calls, {report.calls_per_second:.1f} calls/s, "
        f"spent {report.spent_cents(cost)}/{CAP_CENTS} cents, {report.over_budget} over budget"
    )
    assert report.hung == 0
    # The cap holds, and was reached: the agents raced for it.
    assert report.spent_cents(cost) == CAP_CENTS
    assert report.over_budget > 0
    engine = create_engine(store_url(store_config))
    with engine.connect() as connection:
        ledger = connection.execute(select(func.coalesce(func.sum(spend_ledger.c.cents), 0))).scalar()
    engine.dispose()
    assert ledger == CAP_CENTS
    # Exactly one event per call; the server's own count of what succeeded matches the agents'.
    assert len(events) == report.calls
    assert Counter(e["tool"] for e in events) == Counter(report.by_tool)
    assert Counter(e["tool"] for e in events if e["outcome"] == "succeeded") == Counter(report.succeeded_by_tool)
    assert sum(e["outcome"] == "over_budget" for e in events) == report.over_budget
    assert len({e["event_id"] for e in events}) == len(events)
    verdict = verify_log(tmp_path / "audit.jsonl")
    assert verdict.ok and verdict.events == report.calls
