"""Turning a boto3 response into what the agent gets: bodies read under a cap, secrets
redacted unless revealed, the manifest's projection applied, the JSON size capped.

A result over the size cap keeps as many list items as fit and says it was truncated; a
result that cannot be cut that way is refused with what to narrow. A streamed body over its
cap is refused before it is read in full.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import jmespath

from cedargate.agent_bytes import text_for_agent
from cedargate.errors import HandlerError
from cedargate.manifest import AwsHandlerSpec
from cedargate.redact import REDACTED

_ALL: Final = "[]"


def read_bodies(response: dict[str, Any], limit: int, operation: str) -> dict[str, Any]:
    """Replace streamed bodies with text (or base64), refusing any body over ``limit`` bytes.

    ``{key}Encoding`` says how a body that is not UTF-8 is given: ``base64``, or the encoding
    it was read as when it held a secret and is given as redacted text.
    """
    for key, value in list(response.items()):
        if not hasattr(value, "read"):
            continue
        declared = response.get("ContentLength")
        if isinstance(declared, int) and declared > limit:
            value.close()
            raise HandlerError(
                f"AWS `{operation}`: the body is {declared} bytes, over this tool's {limit}-byte cap; "
                "read a smaller object or ask an admin to raise `handler.max_body_bytes`"
            )
        data = value.read(limit + 1)
        value.close()
        if len(data) > limit:
            raise HandlerError(f"AWS `{operation}`: the body is over this tool's {limit}-byte cap")
        response[key], encoding = text_for_agent(data)
        if encoding != "utf-8":
            response[f"{key}Encoding"] = encoding
    return response


def redact_paths(value: Any, paths: tuple[str, ...]) -> Any:
    """Replace the value at each dotted path (``[]`` = every element) with ``[REDACTED]``."""
    for path in paths:
        value = _redact(value, path.replace("[]", ".[]").strip(".").split("."))
    return value


def _redact(value: Any, parts: list[str]) -> Any:
    if not parts:
        return REDACTED if value not in (None, "") else value
    head, rest = parts[0], parts[1:]
    if head == _ALL:
        return [_redact(v, rest) for v in value] if isinstance(value, list) else value
    if isinstance(value, Mapping) and head in value:
        return {**value, head: _redact(value[head], rest)}
    return value


def shape_result(spec: AwsHandlerSpec, response: dict[str, Any], reveal: bool) -> tuple[Any, bool]:
    """Redact, project, make JSON-ready and cap; returns the result and whether it was truncated."""
    response.pop("ResponseMetadata", None)
    if spec.secrets is not None and not reveal:
        response = redact_paths(response, spec.secrets.paths)
    result = jmespath.search(spec.result, response) if spec.result else response
    result = json.loads(json.dumps(result, default=_json_default))
    return cap(result, spec.max_result_bytes, f"{spec.service}:{spec.operation}")


def cap(result: Any, limit: int, operation: str) -> tuple[Any, bool]:
    """Keep ``result`` within ``limit`` bytes of JSON by dropping trailing list items."""
    if _size(result) <= limit:
        return result, False
    if isinstance(result, list):
        return _fit_list(result, lambda items: items, limit), True
    if isinstance(result, dict):
        current: dict[str, Any] = result
        lists = sorted((k for k, v in current.items() if isinstance(v, list)), key=lambda k: -_size(current[k]))
        for key in lists:
            base = current
            trimmed = _fit_list(base[key], lambda items, k=key, b=base: {**b, k: items}, limit)
            current = {**base, key: trimmed}
            if _size(current) <= limit:
                return current, True
    raise HandlerError(
        f"AWS `{operation}`: the result is over this tool's {limit}-byte cap; "
        "narrow the request (filters, a smaller MaxResults) and try again"
    )


def _fit_list(items: list[Any], wrap: Any, limit: int) -> list[Any]:
    low, high = 0, len(items)
    while low < high:  # the largest prefix whose wrapped form fits
        mid = (low + high + 1) // 2
        if _size(wrap(items[:mid])) <= limit:
            low = mid
        else:
            high = mid - 1
    return items[:low]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
