"""Context over-sharing: no tool result larger than a fixed cap goes back to the agent.

Handlers have caps of their own (a file read refuses files over 256 KiB); this is the
pipeline-wide backstop for every tool, whatever its handler, measured on the JSON the agent
would receive. An over-cap result is withheld and the call is audited as failed.
"""

from __future__ import annotations

from typing import Any, Final

from cedargate.audit.canonical import canonical_result
from cedargate.errors import HandlerError

MAX_RESULT_BYTES: Final = 2 * 1024 * 1024


def enforce_result_cap(tool: str, payload: dict[str, Any], limit: int = MAX_RESULT_BYTES) -> bytes:
    """The result's canonical JSON (what the audit event's ``result_sha256`` hashes); raise
    ``HandlerError`` when ``payload`` is not JSON or serialises to more than ``limit`` bytes.

    Checked inside the governed steps, so a bad result is an audited failure rather than an
    exception while the audit event is being written.
    """
    try:
        data = canonical_result(payload)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"the result of `{tool}` is not JSON ({exc}); it was withheld") from exc
    size = len(data)
    if size > limit:
        raise HandlerError(
            f"the result of `{tool}` is {size} bytes, over the {limit}-byte result cap; "
            "it was withheld: ask for less (a narrower path, filter or page)"
        )
    return data
