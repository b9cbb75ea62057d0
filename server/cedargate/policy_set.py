"""Loading ``policies/**/*.cedar`` into one parsed, validated policy set.

Every file under the policies folder, subfolders included (as ``tools/**/*.toml`` are read),
is parsed and validated against the schema generated from the manifests; any error stops
start-up naming ``file:line:column`` of the policy at fault. Symlinked subfolders are
followed, editor leftovers skipped and other hidden files refused (``catalog.files_under``);
a policy nested deeper than ``MAX_NESTING`` or holding more than ``MAX_OPERATORS`` is refused
before Cedar's parser sees it, and one deeper than ``MAX_POLICY_DEPTH`` once parsed.
``tests/`` holds the policy test cases and never a policy. The parsed handles are kept for the
life of the set, so a decision never re-parses text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cedarpy

from cedargate.catalog import files_under
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
    name: str
    """The file's path under the policies folder (``retired/old.cedar``): how decisions name it."""
    line: int
    column: int
    self_approval: bool = False
    """``@self_approval``: an interactive human may approve their own agent's call (via elicitation)."""

    @property
    def display_id(self) -> str:
        """The author's ``@id`` when there is one, else the position (``team/file.cedar:12``)."""
        return self.annotation_id or f"{self.name}:{self.line}"


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
    sha256: Mapping[Path, str] = field(default_factory=dict)
    """Each file's sha256, of the text loaded: what a reload audit event records."""

    def readable(self, message: str) -> str:
        """Replace Cedar's positional ids (``policy3``) in a message with ``@id`` and place."""
        return _with_readable_ids(message, self.info)


_POLICY_ID = re.compile(r"\bpolicy\d+\b")


def _with_readable_ids(message: str, info: Mapping[str, PolicyInfo]) -> str:
    def name(match: re.Match[str]) -> str:
        policy = info.get(match.group(0))
        return f"{policy.display_id} ({policy.name}:{policy.line})" if policy else match.group(0)

    return _POLICY_ID.sub(name, message)


@dataclass(frozen=True)
class _SourceFile:
    path: Path
    text: str
    statements: list[Statement]


TESTS_FOLDER: Final = "tests"
"""The subfolder of the policies folder that holds policy test cases (``*.toml``), never policies."""


def policy_files(policies_dir: Path) -> list[Path]:
    """Every ``*.cedar`` file under ``policies_dir``, subfolders included, in path order.

    Symlinked subfolders are followed and hidden files refused, as the reload digest does. A
    policy file in ``tests/`` is refused rather than loaded or skipped: it sits among the test
    cases, so whether it is enforced would surprise whoever put it there.
    """
    if not policies_dir.is_dir():
        raise PolicyError(f"policies folder `{policies_dir}` does not exist: set `policies_dir` in the config")
    files = files_under(policies_dir, ".cedar", PolicyError)
    tests = policies_dir / TESTS_FOLDER
    for path in files:
        if path.is_relative_to(tests):
            raise PolicyError(
                f"{path}: `{TESTS_FOLDER}/` holds policy test cases (*.toml), never policies; "
                f"move the file elsewhere under `{policies_dir}` to enforce it, or delete it"
            )
    return files


def load_policy_set(
    policies_dir: Path, schema: Mapping[str, Any], exclude: Collection[Path] = frozenset()
) -> PolicySet:
    """Parse, validate and index every policy file but ``exclude``; fails closed on the first problem."""
    sources = [_read_and_parse(path) for path in policy_files(policies_dir) if path not in exclude]
    positions = [
        (src.path, src.path.relative_to(policies_dir).as_posix(), st) for src in sources for st in src.statements
    ]
    combined = "\n".join(src.text for src in sources)
    parsed = cedarpy.PolicySet.from_str(combined)
    if len(parsed) != len(positions):  # pragma: no cover - the splitter and Cedar disagree
        raise PolicyError(f"policies in `{policies_dir}`: could not line up statements with parsed policies")
    schema_text = json.dumps(schema)
    cedar_schema = cedarpy.Schema.from_json_str(schema_text)
    try:
        static_policies = json.loads(cedarpy.policies_to_json_str(combined))["staticPolicies"]
        info = _index(static_policies, positions)
        _refuse_too_deep(static_policies, info)
        _refuse_idle_approvals(static_policies, info)
        _validate(combined, cedar_schema, info, schema)
    except RecursionError:
        raise _too_deep_to_read(policies_dir, sources) from None
    _refuse_duplicate_ids(info)
    return PolicySet(
        policies=parsed,
        schema=cedar_schema,
        schema_json=schema,
        info=info,
        files=tuple(src.path for src in sources),
        static_policies=static_policies,
        sha256={src.path: hashlib.sha256(src.text.encode()).hexdigest() for src in sources},
    )


def _read_and_parse(path: Path) -> _SourceFile:
    text = read_text_file(path, PolicyError)
    _refuse_deep_nesting(path, text)
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
        _refuse_templates(path, statements)
        # Statements the splitter saw but Cedar did not (or the reverse) mean a split we cannot trust.
        raise PolicyError(f"{path}: found {len(statements)} statements but Cedar parsed {len(parsed)} policies")
    return _SourceFile(path, text, statements)


MAX_NESTING: Final = 200
"""The deepest nesting of brackets and open ``if``s a policy may have; far beyond any real policy.

Cedar's parser recurses once per level: about a thousand levels overflow its native stack,
which kills the process (a segfault no ``except`` catches) instead of failing the load.
"""

MAX_OPERATORS: Final = 250
"""The most ``||``, ``&&``, ``+``, ``-``, ``*`` and ``.`` (attribute or method) one policy may hold.

Cedar's parser and validator recurse once per operator of a chain (``a || b || ...``): 20000
segfault them (8000 still pass), and from about 480 Python's JSON reader of the parsed policy
overflows its recursion limit. Counted per policy, whatever the grouping, so a policy within
it and ``MAX_NESTING`` is safe to hand to Cedar; ``MAX_POLICY_DEPTH`` then holds it to what
Cedar can decide with.
"""

MAX_POLICY_DEPTH: Final = 125
"""The deepest a policy's JSON form (``staticPolicies.policyN``) may nest, in objects and arrays.

Every decision reads its policies back from JSON (``policy_slice.sliced_policy_set``), and
Cedar's JSON reader stops at 128 levels (two of them the policy set around the policy):
a deeper policy would load and then deny every call it applies to with an engine error.
Each operator, ``if``, ``!`` and set adds about two levels: about 58 terms joined by ``||``.
"""

_SHAPE_PIECE = re.compile(r'"(?:[^"\\]|\\.)*"?|//[^\n]*|[()\[\]{};,\n]|\b(?:if|then|else)\b|\|\||&&|[-+*.]')


def _refuse_deep_nesting(path: Path, text: str) -> None:
    """Refuse a policy Cedar's parser cannot take safely, before it sees it, naming where.

    Each bracket counts one level of nesting, and each ``if`` one more while it is open: an
    ``if`` in the ``else`` of another nests without brackets, but one closed by its bracket
    or a ``,`` (``(if a then b else c) && (if ...)``) does not nest the next. Operators are
    counted per policy (``MAX_OPERATORS``). Strings and comments are skipped.
    """
    depth = operators = ifs_open = 0
    open_ifs: list[list[str]] = [[]]  # per bracket level, the state of each open `if`: if, then or else
    line = 1
    start: int | None = None  # the line the policy starts on: where an operator count is reported
    for match in _SHAPE_PIECE.finditer(text):
        piece = match.group(0)
        ifs = open_ifs[-1]
        if piece == "\n" or piece.startswith("//"):
            line += piece.count("\n")
            continue
        start = line if start is None else start
        if piece.startswith('"'):
            line += piece.count("\n")
        elif piece in ("(", "[", "{"):
            depth += 1
            open_ifs.append([])
        elif piece in (")", "]", "}"):
            depth = max(depth - 1, 0)
            if len(open_ifs) > 1:
                ifs_open -= len(open_ifs.pop())
        elif piece == ",":
            ifs_open -= len(ifs)
            ifs.clear()
        elif piece == ";":
            if depth == 0:
                operators = ifs_open = 0
                open_ifs, start = [[]], None
        elif piece == "if":
            ifs.append(piece)
            ifs_open += 1
        elif piece in ("then", "else"):
            while ifs and ifs[-1] == "else":  # an `if` whose `else` expression this word ends
                ifs.pop()
                ifs_open -= 1
            if ifs:
                ifs[-1] = piece
        else:
            operators += 1
        if depth + ifs_open > MAX_NESTING:
            raise PolicyError(
                f"{path}:{line}: policy nests deeper than {MAX_NESTING} levels of brackets and `if`; "
                "Cedar cannot parse it safely: flatten the expression (split it into several policies "
                "or conditions joined by `&&`)"
            )
        if operators > MAX_OPERATORS:
            raise PolicyError(
                f"{path}:{start}: policy has more than {MAX_OPERATORS} operators (`||`, `&&`, `+`, `-`, `*`, "
                f"`.`; operator {MAX_OPERATORS + 1} is on line {line}); Cedar cannot parse or check so long a "
                'chain safely: list alternatives as a set (`resource in [Repository::"a", Repository::"b"]`, '
                '`["a", "b"].contains(context.x)`) '
                "or split the policy into several"
            )


def _refuse_too_deep(est: Mapping[str, Any], info: Mapping[str, PolicyInfo]) -> None:
    """Refuse a policy nested deeper in JSON than ``MAX_POLICY_DEPTH``: it could never decide a call."""
    for policy_id, policy in info.items():
        depth = _json_depth(est.get(policy_id, {}))
        if depth > MAX_POLICY_DEPTH:
            raise PolicyError(
                f"{policy.file}:{policy.line}:{policy.column}: policy `{policy.display_id}` nests {depth} levels "
                f"deep in Cedar's JSON form, and Cedar reads back at most {MAX_POLICY_DEPTH} when deciding (each "
                "`||`, `&&`, `if`, `!`, `.` and set adds one or two), so every call it applies to would be denied "
                'with an engine error: list alternatives as a set (`resource in [Repository::"a", '
                'Repository::"b"]`) or split the policy into several'
            )


def _json_depth(value: Any) -> int:
    """How deep ``value`` nests in objects and arrays; iterative, as the point is values too deep to recurse."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, level = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in children)
    return deepest


def _too_deep_to_read(policies_dir: Path, sources: list[_SourceFile]) -> PolicyError:
    """A ``PolicyError`` naming the file that overflowed Python's recursion limit, not a traceback."""
    culprit = sources[0].path if len(sources) == 1 else None
    for src in sources:
        try:
            json.loads(cedarpy.policies_to_json_str(src.text))
        except RecursionError:
            culprit = src.path
            break
    where = f"{culprit}: a policy" if culprit else f"policies in `{policies_dir}`: a policy"
    return PolicyError(
        f"{where} is nested too deeply to read (Python's recursion limit was reached): flatten it, listing "
        'alternatives as a set (`resource in [Repository::"a", Repository::"b"]`) or splitting it into '
        "several policies"
    )


def _refuse_templates(path: Path, statements: list[Statement]) -> None:
    """Name the first policy template (``?principal``, ``?resource``): Cedar parses it, but not as a policy."""
    for statement in statements:
        try:
            est = json.loads(cedarpy.policies_to_json_str(statement.text))
        except RecursionError:
            raise _too_deep_to_read(path.parent, [_SourceFile(path, statement.text, [])]) from None
        if est.get("templates"):
            raise PolicyError(
                f"{path}:{statement.line}:{statement.column}: policy templates (`?principal`, `?resource`) "
                "are not supported; write a static policy that names the principal or resource, "
                'for example `principal in Team::"storefront"`'
            )


def _index(est: Mapping[str, Any], positions: list[tuple[Path, str, Statement]]) -> dict[str, PolicyInfo]:
    info: dict[str, PolicyInfo] = {}
    for index, (path, name, statement) in enumerate(positions):
        policy_id = f"policy{index}"
        annotations = est.get(policy_id, {}).get("annotations", {})
        info[policy_id] = PolicyInfo(
            policy_id=policy_id,
            annotation_id=annotations.get("id"),
            reason=annotations.get("reason"),
            approval_group=annotations.get("approval"),
            file=path,
            name=name,
            line=statement.line,
            column=statement.column,
            self_approval="self_approval" in annotations,
        )
    return info


def _refuse_idle_approvals(est: Mapping[str, Any], info: Mapping[str, PolicyInfo]) -> None:
    """Refuse approval annotations that could never let a call through.

    ``@approval`` without a group makes its forbid a plain deny (nobody is asked), and on a
    permit it holds nothing back; ``@self_approval`` without ``@approval`` is never consulted.
    Each would read as a way to get a call approved that does not exist.
    """
    for policy_id, policy in info.items():
        annotations = est.get(policy_id, {}).get("annotations", {})
        place = f"{policy.file}:{policy.line}:{policy.column}: policy `{policy.display_id}`"
        if "approval" in annotations and not annotations["approval"]:
            raise PolicyError(
                f'{place}: `@approval` names no group; write `@approval("GROUP")` with the group '
                "(under `[approvals.groups]`) whose approval lifts this forbid"
            )
        if "approval" in annotations and est[policy_id].get("effect") != "forbid":
            raise PolicyError(
                f'{place}: `@approval("{policy.approval_group}")` on a permit holds nothing back; put it on '
                "the forbid that stops the call (`unless { context.approval.granted }`), or remove it"
            )
        if policy.self_approval and not policy.approval_group:
            raise PolicyError(
                f'{place}: `@self_approval` lifts only a forbid with `@approval("GROUP")`; add one or remove it'
            )


_ACTION_NAME = re.compile(r'Action::"((?:[^"\\]|\\.)*)"')
_ACTIONS_SLOT = "\x00actions\x00"


def _validate(
    combined: str, schema: cedarpy.Schema, info: Mapping[str, PolicyInfo], schema_json: Mapping[str, Any]
) -> None:
    """Fail with every validation problem, one line per policy and problem, naming its actions once.

    Cedar reports a policy's problem once per action it applies to: a typo in a policy on
    every tool would otherwise read as dozens of copies of one sentence.
    """
    result = cedarpy.validate_policies(combined, schema)
    if result.validation_passed:
        return
    grouped: dict[tuple[str, str], list[str]] = {}
    for error in result.errors:
        actions = _ACTION_NAME.findall(error.error)
        shape = _ACTION_NAME.sub(_ACTIONS_SLOT, error.error) if len(actions) == 1 else error.error
        grouped.setdefault((error.policy_id, shape), []).extend(actions if len(actions) == 1 else [])
    every_action = {
        name for name, action in schema_json.get("", {}).get("actions", {}).items() if "appliesTo" in action
    }
    problems = []
    for (policy_id, shape), actions in grouped.items():
        where = info.get(policy_id)
        place = f"{where.file}:{where.line}:{where.column}" if where else policy_id
        message = shape.replace(_ACTIONS_SLOT, _actions_named(sorted(set(actions)), every_action))
        problems.append(f"{place}: {_with_readable_ids(message, info)}")
    raise PolicyError(
        "policy does not validate against the schema generated from the manifests: " + "; ".join(problems)
    )


def _actions_named(actions: list[str], every_action: Collection[str]) -> str:
    if len(actions) == 1:
        return f'Action::"{actions[0]}"'
    if set(actions) >= set(every_action):
        return f"every action ({len(actions)} tools)"
    return f"{len(actions)} actions ({', '.join(f'`{a}`' for a in actions)})"


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
