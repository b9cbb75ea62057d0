"""``policies/tests/*.toml``: policy test cases, a request and the decision it must get.

A case file may declare the repositories and accounts its cases name (``[[repositories]]``,
``[[aws_accounts]]``) and the path classes (``[path_classes]``), so the cases hold whatever the
serving config says; without them the config's own are used. Cases check the decision of the
whole policy set, shadow files included: a test describes what the policies say, not how far
they are rolled out.

    [defaults]                     # any request field, for every case in the file
    agent = "codex"
    team = "storefront"
    user = "alice"

    [[case]]
    name = "writes in prod are denied"
    tool = "repo_write_file"
    resource = "acme/payments"
    args = { branch = "agent/x", path = "a.txt", content = "x" }
    expect = "deny"
    policies = ["prod-writes-forbidden"]   # optional: the determining policy ids, in any order
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cedargate.catalog import files_under
from cedargate.config import AwsAccountConfig, Config, Identifier, PathClasses, RepositoryConfig
from cedargate.decision import Decision, Effect
from cedargate.errors import CedargateError, PolicyError, describe_validation_error
from cedargate.handlers import HandlerRegistry
from cedargate.policy_request import PolicyRequest, decide_request
from cedargate.policy_set import TESTS_FOLDER
from cedargate.snapshot import Snapshot, build_snapshot
from cedargate.text_file import read_text_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepositoryFixture(_Strict):
    name: str
    environment: Identifier
    owner_team: Identifier = "tests"
    protected_branches: tuple[str, ...] = ("main",)
    path_classes: PathClasses = Field(default_factory=dict)


class AccountFixture(_Strict):
    id: str
    environment: Identifier
    alias: str = ""


class PolicyCase(_Strict):
    """One request and what it must be decided."""

    name: str
    expect: Effect
    policies: tuple[str, ...] | None = None
    request: dict[str, Any] = Field(default_factory=dict)


class CaseFile(_Strict):
    repositories: tuple[RepositoryFixture, ...] = ()
    aws_accounts: tuple[AccountFixture, ...] = ()
    path_classes: PathClasses | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    case: tuple[dict[str, Any], ...] = ()


class CaseResult(BaseModel):
    """The verdict on one case; ``problem`` says why a failing case failed."""

    file: str
    name: str
    passed: bool
    request: str
    expected: str
    actual: str
    problem: str | None = None
    changes: dict[str, Any] | None = None
    """The paths the request changes and their path classes, as the policies saw them (``None``: none)."""


class PolicyTestReport(BaseModel):
    ok: bool
    files: int
    cases: list[CaseResult]

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]


def case_files(cases_dir: Path) -> list[Path]:
    """The case files under ``cases_dir``, or ``cases_dir`` itself when it is one ``.toml`` file."""
    if cases_dir.is_file() and cases_dir.suffix == ".toml":
        return [cases_dir]
    if cases_dir.exists() and not cases_dir.is_dir():
        raise PolicyError(f"`{cases_dir}` is neither a folder of case files nor a case file (*.toml)")
    if not cases_dir.is_dir():
        raise PolicyError(f"policy tests folder `{cases_dir}` does not exist: put cases in `policies/tests/*.toml`")
    files = files_under(cases_dir, ".toml", PolicyError)
    if not files:
        raise PolicyError(f"policy tests folder `{cases_dir}` holds no case files (*.toml)")
    return files


def run_policy_tests(config: Config, registry: HandlerRegistry, cases_dir: Path | None = None) -> PolicyTestReport:
    """Run every case under ``cases_dir`` (default ``policies/tests``) against the policies on disk."""
    files = case_files(cases_dir or config.policies_dir / TESTS_FOLDER)
    results = [result for path in files for result in _run_file(path, config, registry)]
    return PolicyTestReport(ok=all(r.passed for r in results), files=len(files), cases=results)


def _load(path: Path) -> CaseFile:
    try:
        raw = tomllib.loads(read_text_file(path, PolicyError))
        case_file = CaseFile.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise PolicyError(f"{path}: {describe_validation_error(exc)}") from exc
    if not case_file.case:
        # An empty file passing would read as "these policies are tested" when nothing was.
        raise PolicyError(f"{path}: no `[[case]]` tables; a case file holds at least one case")
    return case_file


def _config_for(case_file: CaseFile, config: Config) -> Config:
    update: dict[str, Any] = {}
    if case_file.repositories:
        update["repositories"] = tuple(
            RepositoryConfig(path=Path("."), **r.model_dump()) for r in case_file.repositories
        )
    if case_file.path_classes is not None:
        update["path_classes"] = case_file.path_classes
    if case_file.aws_accounts:
        accounts = tuple(AwsAccountConfig(**a.model_dump()) for a in case_file.aws_accounts)
        update["aws"] = config.aws.model_copy(update={"accounts": accounts, "default_account": accounts[0].id})
    return config.model_copy(update=update)


def _run_file(path: Path, config: Config, registry: HandlerRegistry) -> list[CaseResult]:
    case_file = _load(path)
    file_config = _config_for(case_file, config)
    # A case file's classes replace the config's for its cases; policies may ask for either's.
    snapshot = build_snapshot(
        file_config, registry, path_classes=config.defined_path_classes | file_config.defined_path_classes
    )
    results = []
    for number, raw in enumerate(case_file.case, start=1):
        fields = {**case_file.defaults, **raw}
        case_name = str(fields.get("name", f"case {number}"))
        if "expect" not in fields:
            raise PolicyError(
                f"{path}: case `{case_name}`: field `expect` is missing; say what the case must get: "
                '`expect = "allow"`, `"deny"` or `"approval_required"`'
            )
        try:
            case = PolicyCase(
                name=case_name,
                expect=fields.pop("expect"),
                policies=fields.pop("policies", None),
                request={k: v for k, v in fields.items() if k != "name"},
            )
            request = PolicyRequest.model_validate(case.request)
        except ValidationError as exc:
            raise PolicyError(f"{path}: case `{case_name}`: {describe_validation_error(exc)}") from exc
        results.append(_run_case(path, case, request, snapshot, file_config))
    return results


def _run_case(path: Path, case: PolicyCase, request: PolicyRequest, snapshot: Snapshot, config: Config) -> CaseResult:
    expected = _describe(case.expect, case.policies)
    try:
        decided = decide_request(request, snapshot, config)
    except CedargateError as exc:
        return CaseResult(
            file=str(path),
            name=case.name,
            passed=False,
            request=request.summary(),
            expected=expected,
            actual="not decided",
            problem=str(exc),
        )
    verdict = decided.verdict
    decision = verdict.shadow.decision if verdict.shadow is not None else verdict.decision
    actual = _describe(decision.effect, tuple(p.id for p in decision.policies), decision)
    problem = _mismatch(case, decision)
    if problem is not None and decided.approval_problem is not None:
        problem += f" ({decided.approval_problem})"
    return CaseResult(
        file=str(path),
        name=case.name,
        passed=problem is None,
        request=request.summary(),
        expected=expected,
        actual=actual,
        problem=problem,
        changes=decided.changes.for_policy() if decided.changes.paths else None,
    )


def _mismatch(case: PolicyCase, decision: Decision) -> str | None:
    if decision.effect is not case.expect:
        return f"decision is `{decision.effect}`, expected `{case.expect}`"
    actual_ids = sorted(p.id for p in decision.policies)
    if case.policies is not None and actual_ids != sorted(case.policies):
        return f"determined by {actual_ids}, expected {sorted(case.policies)}"
    return None


def _describe(effect: Effect, policies: tuple[str, ...] | None, decision: Decision | None = None) -> str:
    text = str(effect)
    if policies:
        text += " by " + ", ".join(policies)
    elif decision is not None and not decision.errors and effect is Effect.DENY:
        text += " (no policy permits it: default deny)"
    if decision is not None and decision.errors:
        text += " (errors: " + "; ".join(decision.errors) + ")"
    return text
