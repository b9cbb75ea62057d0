"""The compiled argument check: it may say yes only where ``jsonschema`` (2020-12) says valid."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cedargate.catalog import load_catalog
from cedargate.demo import project_root
from cedargate.errors import ToolInputError
from cedargate.manifest import ToolManifest
from cedargate.quick_accept import compile_quick_accept
from cedargate.validate import MAX_LISTED_PROBLEMS, validate_arguments

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 1.5, -2.5]),
    st.sampled_from(["", "a", "ab", "a\n", "main", "x$", "README.md", "\u00e9\u00e9\u00e9"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=6,
)
_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])


def _keyword_schemas(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    keywords = st.fixed_dictionaries(
        {},
        optional={
            "type": _TYPES | st.lists(_TYPES, min_size=1, max_size=2, unique=True),
            "enum": st.lists(_SCALARS, min_size=1, max_size=3),
            "const": _SCALARS,
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(0, 3),
            "pattern": st.sampled_from(["^a", "a$", "^[a-z]+$", "b", r"^\w+$"]),
            "minimum": st.integers(-2, 2),
            "maximum": st.sampled_from([-1, 0, 1.5, 2]),
            "exclusiveMinimum": st.integers(-2, 2),
            "exclusiveMaximum": st.integers(-2, 2),
            "items": inner,
            "minItems": st.integers(0, 2),
            "maxItems": st.integers(0, 2),
            "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=2),
            "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
            "additionalProperties": st.booleans() | inner,
            "minProperties": st.integers(0, 2),
            "maxProperties": st.integers(0, 2),
            "format": st.sampled_from(["date", "email", "uri"]),
            "description": st.just("annotation only"),
        },
    )
    return keywords


_SCHEMAS = st.recursive(st.booleans() | _keyword_schemas(st.just({})), _keyword_schemas, max_leaves=4)


@settings(max_examples=600, deadline=None)
@given(_SCHEMAS, _VALUES)
@example({"type": "integer", "enum": [1]}, True)  # True is not 1
@example({"const": 0}, False)
@example({"type": "integer"}, 1.0)  # an integer in 2020-12; a refusal here only costs the slow path
@example({"pattern": "^a$"}, "a\n")  # draft 7's rewrite makes $ stricter: the slow path decides
@example({"format": "email"}, "not an address")  # an annotation in 2020-12
@example({"properties": {"a": {"maxLength": 1}}, "additionalProperties": False}, {"a": "\u00e9"})
def test_a_quick_yes_is_always_a_valid_instance(schema: Any, instance: Any) -> None:
    quick = compile_quick_accept({"type": "object", "properties": {"x": schema}})
    assume(quick is not None)  # a schema it cannot compile is judged by jsonschema alone
    assert quick is not None
    if quick({"x": instance}):
        assert Draft202012Validator({"type": "object", "properties": {"x": schema}}).is_valid({"x": instance})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}},
        {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}},
        {"type": "object", "prefixItems": [{"type": "string"}]},
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        {"type": "object", "properties": {"a": {"pattern": "[$]"}}},  # draft 7's rewrite cannot take it
    ],
)
def test_schemas_it_cannot_read_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_quick_accept(schema) is None


def test_every_published_tool_takes_the_quick_path() -> None:
    catalog = load_catalog(project_root() / "tools")
    slow = [name for name, manifest in catalog.tools.items() if manifest.quick_accept is None]
    assert slow == []


def test_arguments_the_quick_check_refuses_still_get_the_named_field() -> None:
    catalog = load_catalog(project_root() / "tools")
    manifest = catalog.tools["repo_read_file"]
    assert validate_arguments(manifest, {"repository": "demo/app", "path": "README.md"}) == {
        "repository": "demo/app",
        "path": "README.md",
    }
    with pytest.raises(ToolInputError, match="field `path`: `3` is not of type 'string'"):
        validate_arguments(manifest, {"repository": "demo/app", "path": 3})
    with pytest.raises(ToolInputError, match="field `colour` is not accepted"):
        validate_arguments(manifest, {"repository": "demo/app", "path": "a", "colour": "red"})


def test_every_bad_field_is_named_in_one_error_so_one_retry_can_fix_them_all() -> None:
    manifest = load_catalog(project_root() / "tools").tools["repo_read_file"]
    with pytest.raises(ToolInputError) as missing:
        validate_arguments(manifest, {})
    assert str(missing.value) == (
        "invalid arguments for `repo_read_file`: field `repository` is required; field `path` is required"
    )
    with pytest.raises(ToolInputError) as mixed:
        validate_arguments(manifest, {"repository": 3, "path": "a", "colour": "red"})
    problems = str(mixed.value).split(": ", 1)[1].split("; ")
    assert sorted(problems) == [
        "field `colour` is not accepted by this tool",
        "field `repository`: `3` is not of type 'string'",
    ]


def test_a_long_list_of_problems_is_cut_and_counted() -> None:
    properties = {"repository": {"type": "string"}, **{f"f{i}": {"type": "string"} for i in range(8)}}
    manifest = load_catalog(project_root() / "tools").tools["repo_read_file"]
    wide = ToolManifest.model_validate(
        {**manifest.model_dump(), "input_schema": {"type": "object", "properties": properties}}
    )
    with pytest.raises(ToolInputError) as many:
        validate_arguments(wide, {f"f{i}": i for i in range(8)})
    assert str(many.value).count("is not of type 'string'") == MAX_LISTED_PROBLEMS
    assert str(many.value).endswith(f"; and {8 - MAX_LISTED_PROBLEMS} more")


def test_defaults_are_not_filled_into_the_arguments() -> None:
    quick = compile_quick_accept({"type": "object", "properties": {"limit": {"type": "integer", "default": 10}}})
    assert quick is not None
    args: dict[str, Any] = {}
    assert quick(args)
    assert args == {}
