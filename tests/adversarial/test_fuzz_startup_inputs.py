"""Generated manifests, Cedar policy files, config files and audit logs.

Every input either loads or stops with a ``CedargateError`` that names the place at fault;
nothing else escapes. A server that does start still governs every call. An audit log that
was tampered with never verifies.
"""

from __future__ import annotations

import copy
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.adversarial.harness import FUZZ, assert_call_governed, governed, make_tree, principal
from tests.adversarial.test_fuzz_tool_arguments import JSON_VALUES
from tests.adversarial.toml_text import toml_document
from tests.conftest import ROOT, sample_event, shipped_check

from cedargate.audit.event import AuditEvent
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.record import EventRecord
from cedargate.audit.verify import verify_log
from cedargate.authorize import Authorizer
from cedargate.catalog import load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import load_config
from cedargate.decision import Effect
from cedargate.errors import AuditWriteError, CedargateError, ConfigError, ManifestError, PolicyError
from cedargate.policy_set import load_policy_set
from cedargate.request_context import build_context
from cedargate.resolve import resolve_call
from cedargate.session import SessionState

MANIFESTS = [tomllib.loads(p.read_text()) for p in sorted((ROOT / "tools").rglob("*.toml"))]
POLICY_TEXT = "\n".join(p.read_text() for p in sorted((ROOT / "policies").rglob("*.cedar")))
CHECK = shipped_check()


def _paths(document: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in document.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(_paths(value, (*prefix, key)))
    return out


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``document`` with a few keys replaced, dropped or added (keys in ``keep`` left alone)."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p[-1] not in keep]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "drop":
            del parent[path[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUES)
    return doc


def _text_edits(text: str) -> st.SearchStrategy[str]:
    @st.composite
    def edit(draw: st.DrawFn) -> str:
        out = text
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(out)))
            cut = draw(st.integers(0, 12))
            insert = draw(st.sampled_from(["", "(", ")", "{", "}", ";", '"', "@", "::", "==", "\x00", "é", "\n"]))
            out = out[:at] + insert + out[at + cut :]
        return out

    return edit()


def test_generated_manifests_load_or_name_the_problem(tmp_path: Path) -> None:
    @FUZZ
    @given(docs=st.lists(st.sampled_from(MANIFESTS).flatmap(mutated), min_size=1, max_size=3))
    def run(docs: list[dict[str, Any]]) -> None:
        folder = tmp_path / "tools"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for n, doc in enumerate(docs):
            (folder / f"m{n}.toml").write_text(toml_document(doc))
        try:
            catalog = load_catalog(folder, check=CHECK)
        except ManifestError as exc:
            assert str(folder) in str(exc) or "tools folder" in str(exc)
            return
        # Loaded: each published tool is a closed object schema, and its policies schema builds.
        for manifest in catalog:
            assert manifest.input_schema["additionalProperties"] is False
        build_schema(catalog)

    run()


def test_manifest_text_edits_load_or_name_the_file(tmp_path: Path) -> None:
    source = (ROOT / "tools/repo/write_file.toml").read_text()

    @FUZZ
    @given(text=_text_edits(source))
    def run(text: str) -> None:
        folder = tmp_path / "tools"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "edited.toml").write_text(text)
        try:
            load_catalog(folder, check=CHECK)
        except ManifestError as exc:
            assert "edited.toml" in str(exc)

    run()


def test_generated_policy_files_load_or_name_the_position_and_never_allow_on_error(tmp_path: Path) -> None:
    catalog = load_catalog(ROOT / "tools", check=CHECK)
    schema = build_schema(catalog)
    config = load_config(make_tree(tmp_path / "tree"), environ={})

    @FUZZ
    @given(text=_text_edits(POLICY_TEXT), tool=st.sampled_from(sorted(catalog.tools)))
    def run(text: str, tool: str) -> None:
        folder = tmp_path / "policies"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "fuzzed.cedar").write_text(text)
        try:
            policies = load_policy_set(folder, schema)
        except PolicyError as exc:
            assert "fuzzed.cedar" in str(exc) or "schema" in str(exc) or "policies in" in str(exc)
            return
        manifest = catalog.tools[tool]
        args = {manifest.resource.argument: "acme/payments" if manifest.resource.kind == "repository" else None}
        args = {k: v for k, v in args.items() if v is not None}
        for name in manifest.input_schema.get("required", []):
            args.setdefault(name, "agent/x")
        resource, args = resolve_call(manifest, args, config)
        who = principal()
        context = build_context(who, manifest, resource, args, SessionState(), 1)
        decision = Authorizer(policies, config).authorize(who, tool, resource, context)
        if decision.errors:
            assert decision.effect is Effect.DENY

    run()


SAFE_PATHS = ["audit.jsonl", "var/a/b.jsonl", "/dev/full", "repos", "missing/dir/x.jsonl", "", "."]


def test_generated_config_files_start_or_name_the_field_and_a_started_server_governs(tmp_path: Path) -> None:
    config_path = make_tree(tmp_path / "tree")
    base = tomllib.loads(config_path.read_text())

    @FUZZ
    @given(
        doc=mutated(base, keep=frozenset({"path", "tools_dir", "policies_dir"})),
        audit_path=st.sampled_from(SAFE_PATHS),
        tool=st.sampled_from(["repo_read_file", "repo_write_file", "aws_sts_get_caller_identity"]),
    )
    def run(doc: dict[str, Any], audit_path: str, tool: str) -> None:
        if isinstance(doc.get("audit"), dict):
            doc["audit"]["path"] = audit_path
        config_path.write_text(toml_document(doc))
        try:
            g = governed(config_path)
        except CedargateError as exc:
            assert isinstance(exc, ConfigError | ManifestError | PolicyError | AuditWriteError)
            assert str(exc)
            return
        try:
            args = {"repository": "acme/web", "path": "README.md", "branch": "agent/f", "content": "x"}
            manifest = g.runtime.catalog.tools[tool]
            args = {k: v for k, v in args.items() if k in manifest.input_schema["properties"]}
            before_events, before_runs = len(g.events), len(g.runs)
            result = g.call(tool, args)
            if result.event is None:
                # The audit sink cannot write: nothing ran, now or on the next call.
                assert result.is_error and result.payload is None and len(g.runs) == before_runs
                again = g.call(tool, args)
                assert again.is_error and again.event is None and len(g.runs) == before_runs
            else:
                assert_call_governed(g, before_events, before_runs, result)
        finally:
            g.close()

    run()


def _event(n: int) -> AuditEvent:
    return sample_event(n, arguments={"path": f"f{n}", "note": "ü"}, duration_ms=1.25)


@pytest.fixture
def valid_log(tmp_path: Path) -> bytes:
    path = tmp_path / "source.jsonl"
    log = JsonlAuditLog(path)
    for n in range(4):
        log.append(EventRecord.of(_event(n)))
    log.close()
    return path.read_bytes()


def test_arbitrary_audit_files_are_verified_or_refused_never_crash(tmp_path: Path, valid_log: bytes) -> None:
    @FUZZ
    @given(
        data=st.binary(max_size=300)
        | st.builds(lambda cut, junk: valid_log[:cut] + junk, st.integers(0, len(valid_log)), st.binary(max_size=40))
    )
    def run(data: bytes) -> None:
        path = tmp_path / "fuzzed.jsonl"
        path.write_bytes(data)
        report = verify_log(path)
        assert report.ok or (report.line is not None and report.problem)
        try:
            log = JsonlAuditLog(path)
        except AuditWriteError as exc:
            assert "fuzzed.jsonl" in str(exc)
            return
        log.append(EventRecord.of(_event(99)))
        log.close()
        if report.ok:
            # A log that verified keeps verifying once the server continues it.
            assert verify_log(path).ok

    run()


def test_any_changed_byte_in_a_complete_event_fails_verify(tmp_path: Path, valid_log: bytes) -> None:
    last_line_start = valid_log.rstrip(b"\n").rindex(b"\n") + 1

    @FUZZ
    @given(at=st.integers(0, last_line_start - 1), byte=st.integers(0, 255))
    def run(at: int, byte: int) -> None:
        if valid_log[at] == byte:
            return
        path = tmp_path / "edited.jsonl"
        path.write_bytes(valid_log[:at] + bytes([byte]) + valid_log[at + 1 :])
        assert not verify_log(path).ok

    run()
