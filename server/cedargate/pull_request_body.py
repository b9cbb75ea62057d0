"""The provenance summary a pull request carries: what task, which writes, what was read, tested how.

Everything in it is a fact cedargate recorded (audit event ids, commit trailers, the
workspace's last sandboxed run); nothing is taken from what the agent claims.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from cedargate.errors import ToolInputError, quoted
from cedargate.identity import Principal
from cedargate.workspaces import TestRun

HEADING = "## Provenance (recorded by cedargate)"
MAX_LISTED_SOURCES = 100
"""Reads listed in the body; a longer session names how many more and where to find them all."""

_CONTAINER: Final = re.compile(r"^\s*(?:(?:>|[-*+]|\d{1,9}[.)])(?:\s+|$))*")
"""Blockquote and list markers: a heading inside a quote or a list item still renders as a heading."""
_ATX_HEADING: Final = re.compile(r"^#{1,6}(?:\s|$)")
_SETEXT_UNDERLINE: Final = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
_HTML_HEADING: Final = re.compile(r"<(h[1-6]|summary)\b[^>]*>(.*?)(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_HEADING_WORDS: Final = ("provenance", "auditevent", "contextsource", "sandboxedtest")
"""Words of cedargate's heading and subheadings (compacted): a heading naming one passes for its section."""
_CLAIM: Final = "recordedbycedargate"
"""The section's own claim, refused on any line."""
_CONFUSABLES: Final = str.maketrans(
    # Cyrillic, Greek and other letters that render like Latin ones: a reviewer reads them as those.
    "АВЕЅІЈКМНОРСТХУҮԚԜаеһіјоросуѕхԁԛԝӏΑΒΕΖΗΙΚΜΝΟΡΤΥΧαιικνορυχıɑɡօոսⅰ",
    "ABESIJKMHOPCTXYYQWaehijopocysxdqwlABEZHIKMNOPTYXaiikvopuxiagonui",
)
_FENCE: Final = re.compile(r"^\s*(?:(?:>|[-*+]|\d{1,9}[.)])\s*)*(`{3,}|~{3,})(.*)$")
_CODE_SPAN: Final = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
_RAW_BLOCK: Final = re.compile(
    r"(?P<comment><!--)|(?P<cdata><!\[CDATA\[)|^ {0,3}(?:(?P<pi><\?)|(?P<decl><![A-Za-z]))", re.M
)
_RAW_BLOCK_ENDS: Final = {
    "comment": ("-->", "an HTML comment `<!--` never closed with `-->`"),
    "cdata": ("]]>", "a `<![CDATA[` section never closed with `]]>`"),
    "pi": ("?>", "a `<?` block never closed with `?>`"),
    "decl": (">", "a `<!` declaration never closed with `>`"),
}
"""Markdown's raw HTML blocks that run on, past blank lines, until their end marker: unclosed, to the end of the PR."""
_TAG: Final = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\b[^>]*>")
# fmt: off
_WRAPPING_TAGS: Final = frozenset({
    "a", "abbr", "b", "bdo", "blockquote", "center", "cite", "code", "del", "details", "dfn", "div", "dl", "em",
    "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "i", "iframe", "ins", "kbd", "mark", "noscript", "ol",
    "picture", "pre", "q", "ruby", "s", "samp", "script", "small", "span", "strike", "strong", "style", "sub",
    "summary", "sup", "table", "template", "textarea", "time", "tt", "u", "ul", "var", "xmp",
})
"""Elements whose content is what follows them until their end tag: left open, they fold, hide or restyle it."""
# fmt: on


def agent_body(text: str) -> str:
    """The agent's part of the body, refused if it would pass for cedargate's section or hide it.

    A reviewer trusts the provenance section because cedargate alone writes it; a lookalike
    heading above it (or a line claiming to be recorded by cedargate) would put the agent's
    claims where a reviewer looks for recorded facts, and a block the agent leaves open (a
    comment, ``<details>``, a code fence) would swallow the real section appended below it.
    Lines are compared as they render: invisible characters dropped, entities decoded,
    lookalike letters read as the Latin ones.
    """
    body = text.strip()
    _refuse_lookalikes(body)
    _refuse_open_blocks(body)
    return body


def _folded(text: str) -> str:
    """``text`` as a reader sees it, compacted to lowercase Latin letters and digits for comparison."""
    text = html.unescape(_TAG.sub("", _without_comments(text)))
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]", "", text.casefold().translate(_CONFUSABLES))


def _shown(found: str) -> str:
    """What was found, quoted on one line, with the characters that disguised it spelled out and named."""
    tricks = [c for c in dict.fromkeys(found) if unicodedata.category(c) == "Cf" or ord(c) in _CONFUSABLES]
    shown = quoted(" ".join("".join(f"\\u{ord(c):04x}" if c in tricks else c for c in found).split()))
    if not tricks:
        return shown
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in tricks[:3])
    return f"{shown} (holding {named})"


def _refuse_lookalikes(body: str) -> None:
    lines = body.splitlines()
    # Invisible characters cannot make a heading either: `#` behind a zero-width space still reads as one.
    visible = [
        "".join(c for c in unicodedata.normalize("NFKC", line) if unicodedata.category(c) != "Cf") for line in lines
    ]
    for number, line in enumerate(lines):
        bare = _CONTAINER.sub("", visible[number], count=1)
        underlined = number + 1 < len(lines) and bare.strip() != "" and _SETEXT_UNDERLINE.match(visible[number + 1])
        heading = bool(_ATX_HEADING.match(bare) or underlined or _HTML_HEADING.search(bare))
        folded = _folded(line)
        if _CLAIM in folded or (heading and any(word in folded for word in _HEADING_WORDS)):
            _refuse(line)
    for match in _HTML_HEADING.finditer(_without_comments(body)):
        if any(word in _folded(match[2]) for word in _HEADING_WORDS):
            _refuse(match[0])


def _refuse(found: str) -> NoReturn:
    raise ToolInputError(
        f"field `body`: {_shown(found)} reads as the provenance section (or one of its subheadings), which "
        "cedargate alone writes below the body; reword or remove that line (invisible characters, entities and "
        "lookalike letters count as what they render as)"
    )


def _refuse_open_blocks(body: str) -> None:
    """Refuse a block left open at the end of the body: the provenance section would render inside it."""
    prose: list[str] = []
    fence: tuple[str, int] | None = None
    for line in body.splitlines():
        found = _FENCE.match(line)
        if fence is None and found is not None:
            fence = (found[1][0], len(found[1]))
        elif fence is not None:
            if found is not None and found[1][0] == fence[0] and len(found[1]) >= fence[1] and not found[2].strip():
                fence = None
        else:
            prose.append(line)
    if fence is not None:
        marker = fence[0] * fence[1]
        _refuse_open(f"a fenced code block (opened by a line of {marker}) never closed", f"close it with {marker}")
    # Code spans end with their paragraph; what they hold is text, not HTML.
    text = "\n\n".join(_CODE_SPAN.sub("", paragraph) for paragraph in re.split(r"\n\s*\n", "\n".join(prose)))
    text = _without_raw_blocks(text)
    depth: dict[str, int] = {}
    for closing, name in _TAG.findall(text):
        name = name.lower()
        if name in _WRAPPING_TAGS:
            depth[name] = max(0, depth.get(name, 0) + (-1 if closing else 1))
    for name, count in depth.items():
        if count:
            _refuse_open(f"`<{name}>` never closed with `</{name}>`", f"add `</{name}>` or remove the tag")


def _without_comments(text: str) -> str:
    """``text`` without its HTML comments (an unclosed one hides the rest); a scan, so linear in the length."""
    kept, start = [], 0
    while (opened := text.find("<!--", start)) >= 0:
        kept.append(text[start:opened])
        closed = text.find("-->", opened + 4)
        if closed < 0:
            return "".join(kept)
        start = closed + 3
    return "".join(kept) + text[start:]


def _without_raw_blocks(text: str) -> str:
    """``text`` without its closed raw HTML blocks (their content is not markup); an unclosed one is refused."""
    kept, start = [], 0
    while (found := _RAW_BLOCK.search(text, start)) is not None:
        kind = found.lastgroup or "comment"
        end, what = _RAW_BLOCK_ENDS[kind]
        kept.append(text[start : found.start()])
        closed = text.find(end, found.end())
        if closed < 0:
            _refuse_open(what, f"close it with `{end}` or remove it")
        start = closed + len(end)
    return "".join(kept) + text[start:]


def _refuse_open(what: str, fix: str) -> NoReturn:
    raise ToolInputError(
        f"field `body`: it leaves {what}, so cedargate's provenance section, appended below the body, would "
        f"render inside it (hidden, folded or restyled); {fix}"
    )


@dataclass(frozen=True)
class WriteRecord:
    """One commit on the branch and the audit event that made it (``None`` if made outside cedargate)."""

    commit: str
    subject: str
    audit_event: str | None


@dataclass(frozen=True)
class Provenance:
    principal: Principal
    branch: str
    base: str
    base_commit: str
    head_commit: str
    writes: Sequence[WriteRecord]
    context_sources: Sequence[str]
    last_test: TestRun | None
    event_id: str

    def markdown(self) -> str:
        p = self.principal
        lines = [
            HEADING,
            "",
            f"- task: `{p.task}`",
            f"- agent: `{p.agent}` (team `{p.team}`, {p.mode}) on behalf of `{p.on_behalf_of}`",
            f"- branch: `{self.branch}` at `{self.head_commit}`, from `{self.base}` at `{self.base_commit}`",
            f"- this pull request: audit event `{self.event_id}`",
            "",
            "### Writes (audit events)",
        ]
        lines += [
            f"- `{w.audit_event or 'not made through cedargate'}`: {w.commit[:12]} {w.subject}" for w in self.writes
        ] or ["- none"]
        lines += ["", "### Context sources (audit events of the reads before these writes)", *self._source_lines()]
        lines += ["", "### Last sandboxed test run", *self._test_lines()]
        return "\n".join(lines) + "\n"

    def _source_lines(self) -> list[str]:
        """The latest reads; forges cap a body's length, and a long session reads thousands of files."""
        if not self.context_sources:
            return ["- none recorded in this session"]
        listed = self.context_sources[-MAX_LISTED_SOURCES:]
        lines = [f"- `{event}`" for event in listed]
        earlier = len(self.context_sources) - len(listed)
        if earlier:
            lines.append(
                f"- and {earlier} earlier reads: `cedargate provenance {self.event_id}` lists every one of them"
            )
        return lines

    def _test_lines(self) -> list[str]:
        run = self.last_test
        if run is None:
            return ["- none: tests were not run through cedargate for this branch"]
        verdict = (
            "timed out" if run.timed_out else ("passed" if run.exit_code == 0 else f"failed (exit {run.exit_code})")
        )
        current = "the branch head" if run.commit == self.head_commit else f"`{run.commit}`, not the branch head"
        if run.clean is False:
            current += ", with uncommitted changes"
        return [
            f"- `{run.command}`: {verdict} in {run.duration_ms / 1000:.1f} s",
            f"- tested {current}; audit event `{run.event_id}`",
            f"- output: {run.output_bytes} bytes, sha256 `{run.output_sha256}`",
        ]
