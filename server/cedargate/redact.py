"""Step 8, redact: known secret shapes never reach the audit log, and never go back to the agent.

Redaction is by shape (AWS keys, bearer tokens, private keys, forge tokens, JWTs) and by
argument name (``password``, ``secret``, ``token`` ...). Long strings are summarised in the
audit log by length and digest so a written file is identifiable without being copied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
MAX_AUDIT_STRING: Final = 2048

_SECRET_SHAPES: Final = re.compile(
    "|".join(
        [
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b",
            r"(?i:(?<=aws_secret_access_key))\s*[=:]\s*[A-Za-z0-9/+=]{40}",
            r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
        ]
    )
)
_SENSITIVE_NAME: Final = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|private[_-]?key|credential)")


def redact_text(text: str) -> str:
    """Replace every known secret shape in ``text``."""
    return _SECRET_SHAPES.sub(REDACTED, text)


def redact_value(value: Any, name: str = "") -> Any:
    """Redact recursively; any value under a sensitive-looking key is replaced whole."""
    if name and _SENSITIVE_NAME.search(name) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def arguments_for_audit(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as the audit log keeps them: redacted, long strings summarised by digest."""
    return {k: _summarise(v) for k, v in redact_value(dict(args)).items()}


def _summarise(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_AUDIT_STRING:
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"{value[:256]}... [{len(value)} chars, sha256 {digest}]"
    return value
