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

_CONTAINER: Final = re.compile(r"^\s*(?:>\s*|(?:[-*+]|\d{1,9}[.)])(?:\s+|$))*")
"""Blockquote and list markers: a heading inside a quote or a list item still renders as a heading."""
_ATX_HEADING: Final = re.compile(r"^#{1,6}(?:\s|$)")
_SETEXT_UNDERLINE: Final = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
_QUOTES_AND_INDENT: Final = re.compile(r"^[\s>]*")
"""Stripped from an underline: it underlines a line in a quote, or in a list item's deep indent, as well."""
_HTML_HEADING: Final = re.compile(r"<(h[1-6]|summary)\b[^>]*>(.*?)(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_SECTION_NAMES: Final = re.compile(r"\b(?:provenances?|audit events?|context sources?|sandboxed tests?)\b")
"""The names in cedargate's heading and subheadings ("Provenance (recorded by cedargate)", "Writes (audit
events)", "Context sources (audit events of ...)", "Last sandboxed test run"), matched as whole words in a
normalised heading: one naming them passes for the section; "Audit: eventual" or "Context: source maps" does not."""
_CLAIM: Final = "recordedbycedargate"
"""The section's own claim (compacted), refused on any line, code included."""
_CONFUSABLES: Final = str.maketrans(
    # Cyrillic, Greek and other letters that render like Latin ones: a reviewer reads them as those.
    "АВЕЅІЈКМНОРСТХУҮԚԜаеһіјоросуѕхԁԛԝӏΑΒΕΖΗΙΚΜΝΟΡΤΥΧαιικνορυχıɑɡօոսⅰ",
    "ABESIJKMHOPCTXYYQWaehijopocysxdqwlABEZHIKMNOPTYXaiikvopuxiagonui",
)
_INVISIBLE: Final = frozenset("\u2006\u2008\u2009\u200a\u202f\u205f\u115f\u1160\u3164\uffa0\u2800")
"""Spaces too thin to see and blank fillers: they split a word without a reader noticing, so they are dropped."""
_INLINE_MARKUP: Final = re.compile(r"[*_~`]")
"""Emphasis and code-span markers: they render away, so ``Pro**venance**`` reads as one word."""
_CLAUSE_BREAK: Final = re.compile(r"[.,:;!?/\\|]")
"""Punctuation that ends a phrase: ``Context: source maps`` does not say "context sources"."""
_QUOTE_MARKER: Final = re.compile(r" {0,3}> ?")
_LIST_MARKER: Final = re.compile(r" {0,3}(?:[-*+]|(\d{1,9})[.)])(?= |$)")
_FENCE_LINE: Final = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
_THEMATIC_BREAK: Final = re.compile(r" {0,3}(?:(?:\*\s*){3,}|(?:-\s*){3,}|(?:_\s*){3,})$")
_BLOCK_TAGS: Final = (
    "address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|div|dl|"
    "dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|legend|li|link|main|"
    "menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|thead|"
    "title|tr|track|ul"
)
_HTML_BLOCK_START: Final = re.compile(
    r" {0,3}(?:(?P<raw><(?P<tag>pre|script|style|textarea)(?:\s|>|$))|(?P<comment><!--)|(?P<pi><\?)"
    r"|(?P<cdata><!\[CDATA\[)|(?P<decl><![A-Za-z])"
    rf"|(?P<block></?(?:{_BLOCK_TAGS})(?:\s|/?>|$))|(?P<tag7></?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>\s*$))",
    re.IGNORECASE,
)
"""The starts of CommonMark's HTML blocks: a fence or indented code cannot open inside one."""
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


@dataclass(frozen=True)
class _Layout:
    """Which lines of the body are code (fenced or indented) or raw HTML, and the fence left open at its end."""

    code: frozenset[int]
    html: frozenset[int]
    open_fence: str | None
    open_html: str | None
    """The end marker (``-->``, ``</pre>``, ...) an HTML block open at the end of the body still waits for."""


def agent_body(text: str) -> str:
    """The agent's part of the body, refused if it would pass for cedargate's section or hide it.

    A reviewer trusts the provenance section because cedargate alone writes it; a lookalike
    heading above it (or a line claiming to be recorded by cedargate) would put the agent's
    claims where a reviewer looks for recorded facts, and a block the agent leaves open (a
    comment, ``<details>``, a code fence) would swallow the real section appended below it.
    Lines are compared as they render: invisible characters dropped, entities decoded,
    lookalike letters read as the Latin ones. Code blocks render as text, so headings and
    tags in them are the agent's to write.
    """
    body = text.strip()
    lines = body.splitlines()
    layout = _layout(lines)
    _refuse_lookalikes(lines, layout)
    _refuse_open_blocks(lines, layout)
    return body


def _layout(lines: Sequence[str]) -> _Layout:
    """Find the fenced and indented code blocks as CommonMark does, erring towards prose when unsure.

    Blockquotes and list items are followed line by line: a fence opens only with at most 3 spaces
    of indent inside its container and ends with it (a line that no longer continues the quote, or
    is indented less than the item's content). Indented code needs a blank line (or the start)
    before it, and neither opens inside an HTML block. A line that might be either is prose.
    """
    code: set[int] = set()
    html_lines: set[int] = set()
    stack: list[int | None] = []  # None for a blockquote, the content's indent for a list item
    filled: list[bool] = []  # whether each holds anything yet: an empty list item ends at a blank line
    fence: tuple[str, int] | None = None  # belongs to the innermost container
    html_end: str | None = None  # "" for an HTML block a blank line ends
    paragraph = False
    code_may_follow = True
    for number, original in enumerate(lines):
        line = original.expandtabs(4)
        position, matched = 0, 0
        for depth, width in enumerate(stack):
            rest = line[position:]
            if width is None:
                quote = _QUOTE_MARKER.match(rest)
                if quote is None:
                    break
                position += quote.end()
            elif rest.strip():
                if _indent(rest) < width:
                    break
                position += width
            elif not filled[depth]:
                break
            matched += 1
        rest = line[position:]
        if fence is not None:
            if matched == len(stack):
                code.add(number)
                closing = _FENCE_LINE.match(rest)
                if closing and closing[1][0] == fence[0] and len(closing[1]) >= fence[1] and not closing[2].strip():
                    fence = None
                continue
            fence = None
        if html_end is not None:
            if matched == len(stack) and (html_end or rest.strip()):
                html_lines.add(number)
                if html_end and html_end in rest.lower():
                    html_end = None
                continue
            html_end = None
        all_matched = matched == len(stack)
        opened: list[int | None] = []
        while (rest := line[position:]).strip() and _indent(rest) < 4:
            if quote := _QUOTE_MARKER.match(rest):
                opened.append(None)
                position += quote.end()
                continue
            item = _LIST_MARKER.match(rest)
            if item is None or _THEMATIC_BREAK.match(rest):
                break
            after = rest[item.end() :]
            empty, ordinal = not after.strip(), item[1]
            if paragraph and all_matched and not opened and (empty or (ordinal is not None and int(ordinal) != 1)):
                break  # cannot interrupt a paragraph: paragraph text
            spaces = _indent(after)
            width = item.end() + (1 if empty or spaces >= 5 else spaces)
            opened.append(width)
            position += width
        blank, indent = not rest.strip(), _indent(rest)
        if paragraph and not all_matched and not opened and not blank and (indent >= 4 or not _starts_block(rest)):
            code_may_follow = False  # a lazy continuation line: the containers stay open
            continue
        if not all_matched or opened:
            stack = stack[:matched] + opened
            filled = filled[:matched] + [True] * len(opened)
            paragraph = False
        if not blank:
            filled = [True] * len(stack)
        elif opened:
            filled[-1] = False
        if blank:
            paragraph, code_may_follow = False, True
            continue
        if indent >= 4:
            if not paragraph and code_may_follow and not opened:
                code.add(number)
                continue
            paragraph, code_may_follow = True, False
            continue
        code_may_follow = False
        opening = _FENCE_LINE.match(rest)
        if opening and not (opening[1][0] == "`" and "`" in opening[2]):
            fence = (opening[1][0], len(opening[1]))
            code.add(number)
            paragraph = False
            continue
        html = _HTML_BLOCK_START.match(rest)
        if html and not (html["tag7"] and paragraph):
            kind = html.lastgroup
            end = {"raw": f"</{(html['tag'] or '').lower()}>", "comment": "-->", "pi": "?>", "cdata": "]]>"}
            html_end = end.get(kind or "", ">" if kind == "decl" else "")
            html_lines.add(number)
            if html_end and html_end in rest[html.end() :].lower():
                html_end = None
            paragraph = False
            continue
        setext = paragraph and _SETEXT_UNDERLINE.match(rest)
        paragraph = not (setext or _ATX_HEADING.match(rest.lstrip()) or _THEMATIC_BREAK.match(rest))
    return _Layout(
        frozenset(code), frozenset(html_lines), None if fence is None else fence[0] * fence[1], html_end or None
    )


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _starts_block(rest: str) -> bool:
    """Whether ``rest`` (indented less than 4) opens a block, so it cannot be a paragraph's lazy continuation."""
    html = _HTML_BLOCK_START.match(rest)
    return bool(
        _FENCE_LINE.match(rest)
        or _ATX_HEADING.match(rest.lstrip())
        or _THEMATIC_BREAK.match(rest)
        or (html and not html["tag7"])
    )


def _normalised(text: str) -> str:
    """``text`` as a reader sees it: lowercase Latin words, one space apart, `` | `` where punctuation ends a phrase."""
    text = html.unescape(_TAG.sub("", _without_comments(text)))
    text = "".join(c for c in text if c not in _INVISIBLE)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_CONFUSABLES)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = _INLINE_MARKUP.sub("", text.casefold().translate(_CONFUSABLES))
    text = _CLAUSE_BREAK.sub(" | ", text)
    return " ".join(re.sub(r"[^0-9a-z|]+", " ", text).split())


def _names_the_section(text: str) -> bool:
    return _SECTION_NAMES.search(_normalised(text)) is not None


def _claims_the_section(text: str) -> bool:
    return _CLAIM in re.sub(r"[^0-9a-z]", "", _normalised(text))


def _shown(found: str) -> str:
    """What was found, quoted on one line, with the characters that disguised it spelled out and named."""
    tricks = [
        c for c in dict.fromkeys(found) if unicodedata.category(c) == "Cf" or ord(c) in _CONFUSABLES or c in _INVISIBLE
    ]
    shown = quoted(" ".join("".join(f"\\u{ord(c):04x}" if c in tricks else c for c in found).split()))
    if not tricks:
        return shown
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in tricks[:3])
    return f"{shown} (holding {named})"


def _refuse_lookalikes(lines: Sequence[str], layout: _Layout) -> None:
    """Refuse a heading naming cedargate's section or a subheading of it, and any line claiming its words."""
    # Invisible characters cannot make a heading either: `#` behind a zero-width space still reads as one.
    visible = [
        "".join(c for c in unicodedata.normalize("NFKC", line) if unicodedata.category(c) != "Cf") for line in lines
    ]
    bare = [_CONTAINER.sub("", line, count=1) for line in visible]
    # A setext underline makes a heading of the whole paragraph above it, however many lines it has (a lone
    # `>` or `2.` there may be paragraph text too: only an empty line surely ends it).
    underlined: set[int] = set()
    for number in range(1, len(lines)):
        if number not in layout.code and _SETEXT_UNDERLINE.match(_QUOTES_AND_INDENT.sub("", visible[number])):
            above = number - 1
            while above >= 0 and above not in layout.code and visible[above].strip():
                underlined.add(above)
                above -= 1
    for number, line in enumerate(lines):
        if _claims_the_section(line):
            _refuse(line)
        if number in layout.code:
            continue
        heading = bool(_ATX_HEADING.match(bare[number]) or number in underlined or _HTML_HEADING.search(bare[number]))
        if heading and _names_the_section(line):
            _refuse(line)
    # A tag in code is text, but code inside a heading element opened in prose still renders in that heading.
    text = "\n".join(line.replace("<", " ") if number in layout.code else line for number, line in enumerate(lines))
    for match in _HTML_HEADING.finditer(_without_comments(text)):
        if _names_the_section(match[2]):
            _refuse(match[0])


def _refuse(found: str) -> NoReturn:
    raise ToolInputError(
        f"field `body`: {_shown(found)} reads as the provenance section (or one of its subheadings), which "
        "cedargate alone writes below the body; reword or remove that line (invisible characters, entities and "
        "lookalike letters count as what they render as)"
    )


def _refuse_open_blocks(lines: Sequence[str], layout: _Layout) -> None:
    """Refuse a block left open at the end of the body: the provenance section would render inside it."""
    if layout.open_fence is not None:
        marker = layout.open_fence
        _refuse_open(f"a fenced code block (opened by a line of {marker}) never closed", f"close it with {marker}")
    # Code spans end with their paragraph (a blank line, code or an HTML block); what they hold is text, not HTML.
    chunks: list[str] = []
    paragraph: list[str] = []
    for number, line in enumerate([*lines, ""]):
        if number in layout.code or number in layout.html or not line.strip():
            chunks.append(_CODE_SPAN.sub("", "\n".join(paragraph)))
            paragraph = []
            if number in layout.html:
                chunks.append(line)
        else:
            paragraph.append(line)
    text = "\n\n".join(chunks)
    text = _without_raw_blocks(text)
    depth: dict[str, int] = {}
    for closing, name in _TAG.findall(text):
        name = name.lower()
        if name in _WRAPPING_TAGS:
            depth[name] = max(0, depth.get(name, 0) + (-1 if closing else 1))
    for name, count in depth.items():
        if count:
            _refuse_open(f"`<{name}>` never closed with `</{name}>`", f"add `</{name}>` or remove the tag")
    if layout.open_html is not None:
        end = layout.open_html
        _refuse_open(f"an HTML block never closed with `{end}`", f"close it with `{end}` or remove it")


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
    head_tree: str
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
        if run.commit == self.head_commit:
            current = "the branch head" + (", with uncommitted changes" if run.clean is False else "")
        elif run.tree is not None and run.tree == self.head_tree:
            current = f"the branch head's content (staged on `{run.commit}`, then committed)"
        else:
            current = f"`{run.commit}`, not the branch head" + (
                ", with uncommitted changes" if run.clean is False else ""
            )
        return [
            f"- `{run.command}`: {verdict} in {run.duration_ms / 1000:.1f} s",
            f"- tested {current}; audit event `{run.event_id}`",
            f"- output: {run.output_bytes} bytes, sha256 `{run.output_sha256}`",
        ]
