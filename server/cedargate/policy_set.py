"""Loading ``policies/*.cedar`` into one parsed, validated policy set.

Every file is parsed and validated against the schema generated from the manifests; any
error stops start-up naming ``file:line:column`` of the policy at fault. The parsed handles
are kept for the life of the set, so a decision never re-parses text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from cedargate.errors import PolicyError
from cedargate.policy_text import Statement, split_statements
from cedargate.text_file import read_text_file


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """What the audit trail and the agent are told about one policy."""

    policy_id: str
    annotation_id: str | None
    reason: str | None
    approval_group: str | None
    file: Path
    line: int
    column: int
    self_approval: bool = False
    """``@self_approval``: an interactive human may approve their own agent's call (via elicitation)."""

    @property
    def display_id(self) -> str:
        """The author's ``@id`` when there is one, else the position (``file.cedar:12``)."""
        return self.annotation_id or f"{self.file.name}:{self.line}"


@dataclass(frozen=True)
class PolicySet:
    """Parsed policies, the parsed schema they validated against, and each policy's facts."""

    policies: cedarpy.PolicySet
    schema: cedarpy.Schema
    schema_json: Mapping[str, Any]
    info: Mapping[str, PolicyInfo]
    files: tuple[Path, ...]
    static_policies: Mapping[str, Any] = field(default_factory=dict)
    """Each policy in Cedar's JSON form, by Cedar's id (``policy3``): what ``policy_slice`` reads scopes from."""

    def readable(self, message: str) -> str:
        """Replace Cedar's positional ids (``policy3``) in a message with ``@id`` and place."""
        return _with_readable_ids(message, self.info)


_POLICY_ID = re.compile(r"\bpolicy\d+\b")


def _with_readable_ids(message: str, info: Mapping[str, PolicyInfo]) -> str:
    def name(match: re.Match[str]) -> str:
        policy = info.get(match.group(0))
        return f"{policy.display_id} ({policy.file.name}:{policy.line})" if policy else match.group(0)

    return _POLICY_ID.sub(name, message)


@dataclass(frozen=True)
class _SourceFile:
    path: Path
    text: str
    statements: list[Statement]


def policy_files(policies_dir: Path) -> list[Path]:
    if not policies_dir.is_dir():
        raise PolicyError(f"policies folder `{policies_dir}` does not exist: set `policies_dir` in the config")
    return sorted(policies_dir.rglob("*.cedar"))


def load_policy_set(
    policies_dir: Path, schema: Mapping[str, Any], exclude: Collection[Path] = frozenset()
) -> PolicySet:
    """Parse, validate and index every policy file but ``exclude``; fails closed on the first problem."""
    sources = [_read_and_parse(path) for path in policy_files(policies_dir) if path not in exclude]
    positions = [(src.path, st) for src in sources for st in src.statements]
    combined = "\n".join(src.text for src in sources)
    parsed = cedarpy.PolicySet.from_str(combined)
    if len(parsed) != len(positions):  # pragma: no cover - the splitter and Cedar disagree
        raise PolicyError(f"policies in `{policies_dir}`: could not line up statements with parsed policies")
    schema_text = json.dumps(schema)
    cedar_schema = cedarpy.Schema.from_json_str(schema_text)
    static_policies = json.loads(cedarpy.policies_to_json_str(combined))["staticPolicies"]
    info = _index(static_policies, positions)
    _validate(combined, cedar_schema, info)
    _refuse_duplicate_ids(info)
    return PolicySet(
        policies=parsed,
        schema=cedar_schema,
        schema_json=schema,
        info=info,
        files=tuple(src.path for src in sources),
        static_policies=static_policies,
    )


def _read_and_parse(path: Path) -> _SourceFile:
    text = read_text_file(path, PolicyError)
    statements = split_statements(text)
    try:
        parsed = cedarpy.PolicySet.from_str(text)
    except ValueError:
        for statement in statements:
            try:
                cedarpy.PolicySet.from_str(statement.text)
            except ValueError as exc:
                raise PolicyError(f"{path}:{statement.line}:{statement.column}: policy does not parse: {exc}") from exc
        raise PolicyError(f"{path}: policies do not parse") from None
    if len(parsed) != len(statements):
        # Statements the splitter saw but Cedar did not (or the reverse) mean a split we cannot trust.
        raise PolicyError(f"{path}: found {len(statements)} statements but Cedar parsed {len(parsed)} policies")
    return _SourceFile(path, text, statements)


def _index(est: Mapping[str, Any], positions: list[tuple[Path, Statement]]) -> dict[str, PolicyInfo]:
    info: dict[str, PolicyInfo] = {}
    for index, (path, statement) in enumerate(positions):
        policy_id = f"policy{index}"
        annotations = est.get(policy_id, {}).get("annotations", {})
        info[policy_id] = PolicyInfo(
            policy_id=policy_id,
            annotation_id=annotations.get("id"),
            reason=annotations.get("reason"),
            approval_group=annotations.get("approval"),
            file=path,
            line=statement.line,
            column=statement.column,
            self_approval="self_approval" in annotations,
        )
    return info


def _validate(combined: str, schema: cedarpy.Schema, info: Mapping[str, PolicyInfo]) -> None:
    result = cedarpy.validate_policies(combined, schema)
    if result.validation_passed:
        return
    problems = []
    for error in result.errors:
        where = info.get(error.policy_id)
        place = f"{where.file}:{where.line}:{where.column}" if where else error.policy_id
        problems.append(f"{place}: {_with_readable_ids(error.error, info)}")
    raise PolicyError(
        "policy does not validate against the schema generated from the manifests: " + "; ".join(problems)
    )


def _refuse_duplicate_ids(info: Mapping[str, PolicyInfo]) -> None:
    seen: dict[str, PolicyInfo] = {}
    for policy in info.values():
        if policy.annotation_id is None:
            continue
        if policy.annotation_id in seen:
            first = seen[policy.annotation_id]
            raise PolicyError(
                f'{policy.file}:{policy.line}:{policy.column}: @id("{policy.annotation_id}") '
                f"is already used at {first.file}:{first.line}"
            )
        seen[policy.annotation_id] = policy
