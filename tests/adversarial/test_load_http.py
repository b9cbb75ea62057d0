"""Load: concurrent sessions over streamable HTTP against a real ``cedargate serve`` process."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from tests.adversarial.harness import chained_records, make_tree, start_http_server
from tests.adversarial.load import run_load

from cedargate.audit.verify import verify_log

pytestmark = pytest.mark.anyio

SESSIONS = int(os.environ.get("CEDARGATE_LOAD_SESSIONS", "6"))
SECONDS = float(os.environ.get("CEDARGATE_LOAD_SECONDS", "4"))


async def test_concurrent_sessions_each_call_gets_exactly_one_event_and_the_chain_verifies(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    server = await start_http_server(config, tmp_path / "server.log")
    try:
        report = await run_load(server.url, SESSIONS, SECONDS)
    finally:
        server.stop()
    audit = tmp_path / "audit.jsonl"
    events = chained_records(audit)
    print(
        f"\nload: {SESSIONS} sessions, {report.calls} calls in {report.seconds:.1f}s = "
        f"{report.calls_per_second:.1f} calls/s, p50 {report.percentile(0.5) * 1000:.0f} ms, "
        f"p99 {report.percentile(0.99) * 1000:.0f} ms"
    )
    assert report.hung == 0
    assert report.calls >= SESSIONS  # every session was served
    # Exactly one event per call: same count, same split by tool, distinct ids.
    assert len(events) == report.calls
    assert Counter(e["tool"] for e in events) == Counter(report.by_tool)
    assert len({e["event_id"] for e in events}) == len(events)
    assert set(report.acknowledged_ids) <= {e["event_id"] for e in events}
    verdict = verify_log(audit)
    assert verdict.ok and verdict.events == report.calls
