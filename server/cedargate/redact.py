"""Step 8, redact: known secret shapes never reach the audit log, and never go back to the agent.

Redaction is by shape (AWS keys, bearer tokens, private keys, forge and cloud tokens, JWTs,
passwords in URLs, secret-named variables in env files), by key name (``password``,
``secret``, ``token`` ...), and by the fields a manifest declares sensitive
(``sensitive_fields``), whose values are replaced whole wherever they appear in arguments
or results. Long strings are summarised in the audit log by length and digest so a written
file is identifiable without being copied.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
MAX_AUDIT_STRING: Final = 2048

_SECRET_SHAPES: Final = re.compile(
    "|".join(
        [
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b",
            r"\b(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}",
            r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
            r"\bglpat-[A-Za-z0-9_-]{20,}\b",
            r"\bnpm_[A-Za-z0-9]{36}\b",
            r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,}\b",
            r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b",
            r"\bAIza[0-9A-Za-z_-]{35}\b",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
            # A 40-character secret access key next to its name, in any quoting (JSON, INI, env).
            r"(?P<keep_aws>(?i:secret_?access_?key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+=]{40}",
            # The password of a URL's userinfo: scheme://user:PASSWORD@host
            r"(?P<keep_url>://[^/\s:@]+:)[^/\s@]+(?=@)",
            # env files: an upper-case variable whose name ends like a secret's, and its value.
            r"(?P<keep_env>(?m:^)(?:export\s+)?[A-Z0-9_]*"
            r"(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|PRIVATE_KEY|SECRET_KEY|ACCESS_KEY|CREDENTIALS?)"
            r"\s*=\s*)(?!\$)[^\s#]+",
        ]
    )
)
_SENSITIVE_NAME: Final = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|private[_-]?key|credential)")


def redact_text(text: str) -> str:
    """Replace every known secret shape in ``text``."""
    return _SECRET_SHAPES.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    """The secret goes; the name that announced it (``keep_*`` groups) stays, so the reader sees what was there."""
    kept = next((v for k, v in match.groupdict().items() if k.startswith("keep_") and v), "")
    return kept + REDACTED


def redact_value(value: Any, name: str = "", sensitive: Collection[str] = ()) -> Any:
    """Redact recursively; any value under a sensitive-looking or declared-sensitive key is replaced whole."""
    if name and (name in sensitive or _looks_sensitive(name)) and value not in (None, "", [], {}):
        return REDACTED
    kind = type(value)  # exact types first: every result and every argument passes through here
    if kind is str:
        return redact_text(value)
    if kind is dict:
        return {k: redact_value(v, str(k), sensitive) for k, v in value.items()}
    if kind is bool or kind is int or value is None:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k), sensitive) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, "", sensitive) for v in value]
    return value


_NAME_VERDICTS: dict[str, bool] = {}
"""Key names already matched against ``_SENSITIVE_NAME``: tools use a few names over and over."""
_MAX_NAME_VERDICTS: Final = 4096


def _looks_sensitive(name: str) -> bool:
    verdict = _NAME_VERDICTS.get(name)
    if verdict is None:
        verdict = _SENSITIVE_NAME.search(name) is not None
        if len(_NAME_VERDICTS) < _MAX_NAME_VERDICTS:
            _NAME_VERDICTS[name] = verdict
    return verdict


def arguments_for_audit(args: Mapping[str, Any], sensitive: Collection[str] = ()) -> dict[str, Any]:
    """Arguments as the audit log keeps them: redacted, long strings (and keys) summarised by digest."""
    summary: dict[str, Any] = _summarise(redact_value(dict(args), "", sensitive))
    return summary


def _summarise(value: Any) -> Any:
    """Every string at any depth, keys included: an agent can nest a 30 MB string as easily as pass one."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_AUDIT_STRING else _digest(value)
    if kind is dict:
        return {(k if len(k) <= MAX_AUDIT_STRING else _digest(k)): _summarise(v) for k, v in value.items()}
    if kind is list:
        return [_summarise(v) for v in value]
    return value


def _digest(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[:256]}... [{len(text)} chars, sha256 {digest}]"
