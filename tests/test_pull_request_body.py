"""The provenance summary of a pull request stays within what a forge accepts."""

from __future__ import annotations

from cedargate.identity import Principal
from cedargate.pull_request_body import MAX_LISTED_SOURCES, Provenance

PRINCIPAL = Principal(agent="codex-demo", team="storefront", on_behalf_of="alice", mode="autonomous", task="t")


def _body(sources: list[str]) -> str:
    return Provenance(
        principal=PRINCIPAL,
        branch="agent/x",
        base="main",
        base_commit="a" * 40,
        head_commit="b" * 40,
        writes=[],
        context_sources=sources,
        last_test=None,
        event_id="pr-event",
    ).markdown()


def test_a_long_session_lists_its_latest_reads_and_says_where_the_rest_are() -> None:
    sources = [f"read-{n}" for n in range(MAX_LISTED_SOURCES + 150)]
    body = _body(sources)
    assert "`read-249`" in body and "`read-150`" in body and "`read-149`" not in body
    assert "and 150 earlier reads: `cedargate provenance pr-event`" in body


def test_a_short_session_lists_every_read() -> None:
    body = _body(["read-1", "read-2"])
    assert "- `read-1`\n- `read-2`\n" in body and "earlier reads" not in body
    assert "none recorded" in _body([])
