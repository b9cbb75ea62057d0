"""The errors cedargate raises, one base and a few named kinds.

    CedargateError
    ├── ConfigError          the configuration file or an override is missing or wrong
    ├── ManifestError        a tool manifest does not load (names the file, tool and field)
    ├── PolicyError          a Cedar policy does not parse or validate (names file and position)
    ├── ToolInputError       an agent passed arguments that do not fit the tool's schema
    ├── ResourceError        the resource a call names is not configured
    ├── AuditWriteError      the audit trail cannot be written: the call must not run
    ├── HandlerError         a tool's handler failed while running
    ├── StoreError           the governance store cannot be opened, migrated or queried
    ├── ApprovalError        an approval does not exist or cannot be decided by this user
    └── BudgetExceeded       a call would pass a spend or call-rate cap

Messages follow one convention: lowercase, no final period, user input in backticks, and
where it helps, what to do next.
"""

from __future__ import annotations

from typing import Final

from pydantic import ValidationError

QUOTED_CHARACTERS: Final = 120
"""The most of one input an error message (or an audit field) echoes."""


def clipped(text: str, limit: int = QUOTED_CHARACTERS) -> str:
    """``text``, or its start and its length when longer than ``limit``.

    Errors go back to the agent and into the audit line: echoing a 3 MB argument would pass
    the result cap and swell the trail, while its start and its length identify it.
    """
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text):,} characters)"


def quoted(text: str) -> str:
    """``text`` in backticks, as messages quote user input, cut to its start when long (see ``clipped``)."""
    if len(text) <= QUOTED_CHARACTERS:
        return f"`{text}`"
    return f"`{text[: QUOTED_CHARACTERS - 40]}…` ({len(text):,} characters)"


class CedargateError(Exception):
    """Base of every error cedargate raises on purpose."""


class ConfigError(CedargateError):
    """The configuration is missing or does not validate."""


class ManifestError(CedargateError):
    """A tool manifest is broken; start-up stops."""


class PolicyError(CedargateError):
    """A Cedar policy file does not parse or does not validate against the schema."""


class ToolInputError(CedargateError):
    """The arguments of a tool call do not match the tool's input schema."""


class ResourceError(CedargateError):
    """A call names a repository or account that is not configured."""


class AuditWriteError(CedargateError):
    """The audit event could not be written; no handler may run."""


class HandlerError(CedargateError):
    """A handler failed in a way it could describe to the agent."""


class StoreError(CedargateError):
    """The governance store (approvals, budgets, revocations) is unreachable or refused a change."""


class ApprovalError(CedargateError):
    """An approval is unknown, already decided, expired, or the user may not decide it."""


class BudgetExceeded(CedargateError):
    """A team's or agent's spend or call-rate cap would be passed; the call does not run."""


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as ``field `a.b`: problem`` clauses, one per error (under ``prefix``)."""
    parts = []
    for error in exc.errors():
        location = ".".join([prefix, *(str(p) for p in error["loc"])] if prefix else [str(p) for p in error["loc"]])
        location = location or "(top level)"
        message = str(error.get("ctx", {}).get("error", ""))
        if not error["loc"] and message.startswith("field `"):
            parts.append(message)  # a model-level check that already names its field
            continue
        parts.append(f"field `{location}`: {error['msg'][:1].lower()}{error['msg'][1:]}")
    return "; ".join(parts)
