"""Step 8, redact: known secret shapes never reach the audit log, and never go back to the agent.

Redaction is by shape (AWS keys, bearer tokens, private keys, forge and cloud tokens, JWTs,
passwords in URLs, secret-named variables in env files), by key name (``password``,
``secret``, ``token`` ...), and by the fields a manifest declares sensitive
(``sensitive_fields``), whose values are replaced whole wherever they appear in arguments
or results. Long strings are summarised in the audit log by length and digest so a written
file is identifiable without being copied.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

REDACTED: Final = "[REDACTED]"
MAX_AUDIT_STRING: Final = 2048
WINDOW_MARGIN: Final = 64 * 1024
"""Text redacted beyond a cut (``redacted_head``, ``redacted_tail``): a secret straddling the cut is seen whole."""

# A value that reads as code (a call, a subscript, a constant, a variable) names a secret; it is not one.
_NOT_CODE: Final = (
    r"(?!\$|(?:None|null|nil|undefined|true|false|True|False)(?![A-Za-z0-9_])|[A-Za-z_][A-Za-z0-9_.]*[(\[])"
)
_KEY_MARKER: Final = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
_ENV_NAME: Final = (
    r"(?:[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|PRIVATE_KEY|SECRET_KEY|ACCESS_KEY|CREDENTIALS?"
    r"|SECRET_KEY_BASE)|(?:[A-Z0-9]+_)*(?:PASS|PWD|DSN))"
)


def _token(prefixes: str, width: int, body: str) -> str:
    """A token shape: one of ``prefixes`` (each ``width`` characters), with no letter or digit before it, then ``body``.

    ``\\b`` would miss ``lookup_ghp_...`` (``_`` is a word character). The check looks back
    from after the prefix so the shape starts with a literal, which the regex engine
    rejects fast at every other position (redaction runs on every result).
    """
    return rf"(?:{prefixes})(?<![A-Za-z0-9][\s\S]{{{width}}}){body}"


def _named(group: str, first: str, rest: str, value: str) -> str:
    """A value (group ``group``) after its name, in any quoting: JSON, JSON in JSON (``\\"``), INI, YAML, env.

    The name is matched without regard to case; its ``first`` letter is a class (``[Ss]``) so
    the shape starts with something the regex engine rejects fast.
    """
    return rf"{first}(?i:{rest})\\?[\"']?[ \t]*[=:][ \t]*\\?[\"']?(?P<{group}>{value})"


_SECRET_SHAPES: Final = re.compile(
    "|".join(
        [
            rf"-----BEGIN {_KEY_MARKER}[\s\S]*?-----END {_KEY_MARKER}",
            _token("AKIA|ASIA|AIDA|AROA", 4, r"[0-9A-Z]{16}(?![A-Za-z0-9])"),
            # Bearer and its token on one line: `bearer` at a line's end is prose.
            _token("[Bb](?i:earer)", 6, r"[ \t]+[A-Za-z0-9._~+/=-]{16,}"),
            r"[Aa](?i:uthorization)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?i:basic)[ \t]+(?P<basic>[A-Za-z0-9+/=]{8,})",
            _token("gh[pousr]_", 4, "[A-Za-z0-9]{36,}"),
            _token("github_pat_", 11, "[A-Za-z0-9_]{30,}"),
            _token("xox[abposre]-|xapp-", 5, "[A-Za-z0-9-]{10,}"),
            _token("eyJ", 3, r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
            _token("glpat-", 6, "[A-Za-z0-9_-]{20,}"),
            _token("npm_", 4, "[A-Za-z0-9]{36}"),
            _token("[sr]k_live_", 8, "[A-Za-z0-9]{20,}"),
            _token("sk-", 3, "(?:proj-)?[A-Za-z0-9_-]{32,}"),
            _token("AIza", 4, "[0-9A-Za-z_-]{35}"),
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
            # A 40-character secret access key next to its name.
            _named("aws", "[Ss]", "ecret_?access_?key", "[A-Za-z0-9/+=]{40}"),
            # An STS session token next to its name (~/.aws/credentials, CloudTrail's `sessionToken`).
            _named("sts", "[Ss]", "e(?:ssion|curity)_?token", "[A-Za-z0-9/+=]{16,}"),
            # The password of a URL's userinfo, up to the authority's last `@`: scheme://[user]:PASSWORD@host.
            # Quotes and commas end it: `"http://host:80","a@b.c"` is JSON, not a password.
            r"://[^/\s:@\"',]*:(?P<url>[^/\s\"',]+)(?=@[^/\s@\"',]*(?:[/\s\"',?#]|\Z))",
            # key=value connection strings (libpq, ODBC, query strings): password=VALUE up to a separator.
            rf"[Pp](?i:assw(?:or)?d|wd)=(?P<kv>{_NOT_CODE}[^\s;&\"'(),]+)(?=[\s;&\"']|\Z)",
            # env files, also as diff lines and indented: a secret-named variable and its (quoted) value.
            rf"(?m:^)[+\- \t]*(?:export[ \t]+)?{_ENV_NAME}[ \t]*=[ \t]*"
            rf"(?P<env>{_NOT_CODE}(?:\"[^\"\n]*\"|'[^'\n]*'|\S+))",
        ]
    )
)
_KEY_BEGIN: Final = re.compile(f"-----BEGIN {_KEY_MARKER}")
_KEY_END: Final = re.compile(f"-----END {_KEY_MARKER}")

_SENSITIVE_NAME: Final = re.compile(
    r"(?i)passw(?:or)?d|passphrase|secret|token|api[_-]?key|private[_-]?key|credential|authorization"
)
_NAME_WORDS: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SENSITIVE_WORDS: Final = frozenset({"pass", "pwd", "dsn"})
_DESCRIBING_WORDS: Final = (
    "ttl seconds secs minutes hours days count max min length len size limit used type id ids arn name names "
    "path file enabled required expiry expires expiration age at date time rotation tokens tokenizer"
)
_ABOUT_A_SECRET: Final = frozenset(_DESCRIBING_WORDS.split())
"""Last words of names that describe a secret (``TOKEN_TTL_SECONDS``, ``PasswordLastUsed``) rather than hold one."""
_PAGINATION: Final = re.compile(r"(?i)(?:next|page|pagination|continuation|starting|resume|sync)_?token$")


def redact_text(text: str) -> str:
    """Replace every known secret shape in ``text``."""
    return _SECRET_SHAPES.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    """The secret goes; the name that announced it stays, so the reader sees what was there.

    A shape's one capturing group, when it has one, is its secret.
    """
    secret = match.lastgroup
    if secret is None:
        return REDACTED
    return match.string[match.start() : match.start(secret)] + REDACTED


def redact_cut(text: str) -> str:
    """Redact a piece cut out of a longer text: a private key whose BEGIN or END line fell outside it goes too.

    Only complete keys are shapes; in a cut piece an END with no BEGIN before it (or a BEGIN
    with no END after it) is the part of a key that is left, and everything up to it (or from
    it) is replaced.
    """
    redacted = redact_text(text)
    end = _KEY_END.search(redacted)
    if end is not None and _KEY_BEGIN.search(redacted, 0, end.start()) is None:
        redacted = REDACTED + redacted[end.end() :]
    begin = _KEY_BEGIN.search(redacted)  # any BEGIN left has no END after it: complete keys are gone
    return redacted if begin is None else redacted[: begin.start()] + REDACTED


def redacted_head(data: bytes, limit: int) -> tuple[str, bool]:
    """The first ``limit`` bytes of ``data`` as text, redacted before the cut, and whether it was cut.

    Cutting first could split a secret so that no shape matches what is left; past the
    cut, ``WINDOW_MARGIN`` more bytes are read so a secret straddling it is seen whole.
    """
    if len(data) <= limit:
        return redact_text(data.decode("utf-8", errors="replace")), False
    window = redact_cut(data[: limit + WINDOW_MARGIN].decode("utf-8", errors="replace"))
    return window.encode()[:limit].decode("utf-8", errors="ignore"), True


def redacted_tail(data: bytes, limit: int, whole: bool) -> str:
    """The last ``limit`` bytes of ``data`` (its end, ``limit + WINDOW_MARGIN`` bytes or more) as redacted text.

    ``whole`` says ``data`` is the entire text; otherwise it was cut at its start and a key
    whose BEGIN line fell before the cut is caught by its END line.
    """
    text = data.decode("utf-8", errors="replace")
    redacted = redact_text(text) if whole else redact_cut(text)
    encoded = redacted.encode()
    return redacted if len(encoded) <= limit else encoded[-limit:].decode("utf-8", errors="ignore")


def redacted_lines(text: str, numbers: Collection[int]) -> dict[int, str]:
    """Each of the lines ``numbers`` (1-based, split at ``\\n``) of ``text`` as redacting the whole text leaves it.

    A line of a multi-line secret (a private key's body, found by a search) has no shape of its
    own: it shows as ``[REDACTED]`` here, exactly as reading the whole file shows it.
    """
    spans = [(m.start(), m.end(), _replace(m)) for m in _SECRET_SHAPES.finditer(text)]
    ends = [end for _, end, _ in spans]
    wanted = sorted(set(numbers))
    found: dict[int, str] = {}
    line, start = 1, 0
    for number in wanted:
        while line < number and start <= len(text):
            newline = text.find("\n", start)
            start = len(text) + 1 if newline < 0 else newline + 1
            line += 1
        if start > len(text):
            break
        newline = text.find("\n", start)
        end = len(text) if newline < 0 else newline
        found[number] = _redacted_slice(text, start, end, spans, bisect.bisect_right(ends, start))
    return found


def _redacted_slice(text: str, start: int, end: int, spans: list[tuple[int, int, str]], first: int) -> str:
    """``text[start:end]`` with the (sorted, disjoint) ``spans`` from index ``first`` on replaced."""
    pieces, at = [], start
    for span_start, span_end, replacement in spans[first:]:
        if span_start >= end:
            break
        if span_start > at:
            pieces.append(text[at:span_start])
        pieces.append(replacement if span_start >= start else REDACTED)
        at = span_end
    if at < end:
        pieces.append(text[at:end])
    return "".join(pieces)


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
        verdict = _names_a_secret(name)
        if len(_NAME_VERDICTS) < _MAX_NAME_VERDICTS:
            _NAME_VERDICTS[name] = verdict
    return verdict


def _names_a_secret(name: str) -> bool:
    """Whether a key's value is a secret: its name says so (``db_password``, ``DB_PASS``, ``apiKey``, ``PG_DSN``).

    A name that describes a secret rather than holds one (``TOKEN_TTL_SECONDS``,
    ``PasswordLastUsed``, ``MAX_TOKENS``) or pages through results (``next_token``) keeps its value.
    """
    words = [word.lower() for word in _NAME_WORDS.findall(name)]
    named = _SENSITIVE_NAME.search(name) is not None or (
        len(words) > 1 and any(word in _SENSITIVE_WORDS for word in words)
    )
    if not named or (words and words[-1] in _ABOUT_A_SECRET):
        return False
    return _PAGINATION.search(name) is None


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
