"""Duty sessions against the moto sandbox: one role session per (duty, principal, account)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from moto.sts.models import sts_backends

from cedargate.aws_duty import OTHER_ACCOUNT_CODE, AssumeRoleError, DutySessions, session_name, session_tags
from cedargate.aws_result import cap
from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.aws_session import AwsClients, user_agent_extra
from cedargate.config import AwsAccountConfig, AwsConfig, AwsDutyConfig
from cedargate.errors import HandlerError
from cedargate.identity import Principal

ALICE = Principal(agent="codex", team="storefront", on_behalf_of="alice", mode="interactive", task="T-1")
BOB = Principal(agent="codex", team="storefront", on_behalf_of="bob", mode="interactive", task="T-1")


@pytest.fixture
def clients() -> Iterator[AwsClients]:
    config = AwsConfig(
        mode="sandbox",
        accounts=(
            AwsAccountConfig(id=PROD_ACCOUNT, environment="prod"),
            AwsAccountConfig(id=STAGING_ACCOUNT, environment="staging"),
        ),
        duties={"aws-reader": AwsDutyConfig(), "logs-reader": AwsDutyConfig(session_seconds=3600)},
    )
    aws = AwsClients(config)
    yield aws
    aws.close()


def _identity(clients: AwsClients, sessions: DutySessions, principal: Principal, account: str) -> str:
    session, _ = sessions.session_for("aws-reader", principal, account)
    sts = clients.client("sts", credentials=session.credentials, agent=principal.agent)
    return str(sts.get_caller_identity()["Arn"])


def test_one_principal_reuses_its_cached_session_until_near_expiry(clients: AwsClients) -> None:
    now = [datetime.now(UTC)]
    sessions = DutySessions(clients, clients.config.duties, clock=lambda: now[0])
    first, cached_first = sessions.session_for("aws-reader", ALICE, STAGING_ACCOUNT)
    second, cached_second = sessions.session_for("aws-reader", ALICE, STAGING_ACCOUNT)
    assert (cached_first, cached_second) == (False, True)
    assert second.credentials.access_key_id == first.credentials.access_key_id
    now[0] = first.credentials.expiration - timedelta(minutes=4)  # inside the refresh margin
    third, cached_third = sessions.session_for("aws-reader", ALICE, STAGING_ACCOUNT)
    assert cached_third is False
    assert third.credentials.access_key_id != first.credentials.access_key_id


def test_sessions_are_never_shared_across_principals_duties_or_accounts(clients: AwsClients) -> None:
    sessions = DutySessions(clients, clients.config.duties)
    alice, _ = sessions.session_for("aws-reader", ALICE, STAGING_ACCOUNT)
    bob, bob_cached = sessions.session_for("aws-reader", BOB, STAGING_ACCOUNT)
    logs, _ = sessions.session_for("logs-reader", ALICE, STAGING_ACCOUNT)
    prod, _ = sessions.session_for("aws-reader", ALICE, PROD_ACCOUNT)
    assert bob_cached is False
    keys = {s.credentials.access_key_id for s in (alice, bob, logs, prod)}
    assert len(keys) == 4
    assert alice.tags["cedargate:user"] == "alice"
    assert bob.tags["cedargate:user"] == "bob"
    assert prod.assumed_role_arn.startswith(f"arn:aws:sts::{PROD_ACCOUNT}:assumed-role/cedargate-aws-reader/")
    assert _identity(clients, sessions, BOB, STAGING_ACCOUNT) == bob.assumed_role_arn


def test_assume_role_uses_the_duty_role_and_its_configured_duration(clients: AwsClients) -> None:
    sessions = DutySessions(clients, clients.config.duties)
    before = datetime.now(UTC)
    session, _ = sessions.session_for("logs-reader", ALICE, PROD_ACCOUNT)
    [recorded] = [r for r in sts_backends[PROD_ACCOUNT]["aws"].assumed_roles if r.role_arn == session.role_arn]
    assert recorded.session_name == session_name(ALICE) == "cedargate.codex.T-1"
    assert recorded.access_key_id == session.credentials.access_key_id
    assert session.credentials.expiration > before + timedelta(minutes=55)
    assert "SecretAccessKey" not in repr(session) and session.credentials.secret_access_key not in repr(session)


def test_an_unconfigured_duty_is_a_handler_error(clients: AwsClients) -> None:
    sessions = DutySessions(clients, clients.config.duties)
    with pytest.raises(HandlerError, match="duty `root` is not configured"):
        sessions.session_for("root", ALICE, PROD_ACCOUNT)


def test_session_names_and_tags_stay_within_sts_character_sets() -> None:
    odd = Principal(agent="claude code/ä", team="sre team", on_behalf_of="a|b", mode="autonomous", task="x" * 300)
    assert len(session_name(odd)) == 64
    assert set(session_name(odd)) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-ä")
    tags = session_tags(odd)
    assert tags["cedargate:user"] == "a_b"
    assert len(tags["cedargate:task"]) == 256
    assert user_agent_extra("claude code") == "cedargate/0.1.0 agent/claude_code"


def test_cap_keeps_the_largest_prefix_that_fits_or_refuses() -> None:
    items = [{"id": i, "pad": "x" * 40} for i in range(20)]
    kept, truncated = cap(items, 300, "ec2:DescribeInstances")
    assert truncated is True
    assert kept == items[: len(kept)] and 0 < len(kept) < 20
    nested, truncated = cap({"events": items, "next": "t"}, 300, "logs:FilterLogEvents")
    assert truncated is True and nested["next"] == "t"
    assert cap({"a": 1}, 300, "x") == ({"a": 1}, False)
    with pytest.raises(HandlerError, match="narrow the request"):
        cap({"blob": "y" * 1000}, 300, "s3:GetObject")


def test_clients_retry_throttling_in_standard_mode_and_name_cedargate_and_the_agent(clients: AwsClients) -> None:
    client = clients.client("ec2", agent="codex")
    assert client.meta.config.retries["mode"] == "standard"
    assert "cedargate/0.1.0 agent/codex" in client.meta.config.user_agent_extra
    assert clients.client("ec2", agent="codex") is client
    assert clients.client("ec2", agent="claude") is not client


def _fixed_role(clients: AwsClients) -> dict[str, AwsDutyConfig]:
    return {"infra-operator": AwsDutyConfig(role_arn=f"arn:aws:iam::{PROD_ACCOUNT}:role/cedargate-infra-operator")}


def test_a_duty_whose_role_is_in_another_account_is_refused_at_call_time_naming_both(clients: AwsClients) -> None:
    sessions = DutySessions(clients, _fixed_role(clients))
    with pytest.raises(AssumeRoleError) as refused:
        sessions.session_for("infra-operator", ALICE, STAGING_ACCOUNT)
    message = str(refused.value)
    assert "duty `infra-operator`" in message
    assert f"for account `{STAGING_ACCOUNT}`, but that role is in account `{PROD_ACCOUNT}`" in message
    assert refused.value.code == OTHER_ACCOUNT_CODE
    assert sessions.session_for("infra-operator", ALICE, PROD_ACCOUNT)[0].account == PROD_ACCOUNT
