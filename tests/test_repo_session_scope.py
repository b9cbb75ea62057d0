"""Cedar sees the repositories a session has touched, so a policy can pin a session to one."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import audit_events
from tests.repo_support import Session, client_for

from cedargate.config import load_config
from cedargate.runtime import build_runtime

pytestmark = pytest.mark.anyio

ONE_REPOSITORY = """
@id("one-repository-per-session")
@reason("a session works on the first repository it touched")
forbid (principal, action, resource is Repository)
when {
  !context.session.repositories.isEmpty() &&
  !context.session.repositories.contains(resource.name)
};
"""


async def test_a_policy_can_pin_a_session_to_the_first_repository_it_touched(tree: Path) -> None:
    (tree / "policies" / "session.cedar").write_text(ONE_REPOSITORY)
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ={}))
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_read_file", {"repository": "acme/web", "path": "README.md"})
            await s.ok("repo_log", {"repository": "acme/web"})
            message = await s.refused("repo_read_file", {"repository": "acme/payments", "path": "README.md"})
    finally:
        runtime.close()
    assert "one-repository-per-session" in message
    assert [e["outcome"] for e in audit_events(runtime.config.audit.path)] == ["succeeded", "succeeded", "denied"]
