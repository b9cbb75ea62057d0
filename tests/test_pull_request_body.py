"""The provenance summary of a pull request stays within what a forge accepts, and the agent cannot hide or fake it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.repo_support import ForgeStandIn, Session, bare_remote, client_for, configure_web, forge_stand_in

from cedargate.errors import ToolInputError
from cedargate.git import git_text
from cedargate.identity import Principal
from cedargate.pull_request_body import MAX_LISTED_SOURCES, Provenance, agent_body

PRINCIPAL = Principal(agent="codex-demo", team="storefront", on_behalf_of="alice", mode="autonomous", task="t")


def _body(sources: list[str]) -> str:
    return Provenance(
        principal=PRINCIPAL,
        branch="agent/x",
        base="main",
        base_commit="a" * 40,
        head_commit="b" * 40,
        head_tree="c" * 40,
        writes=[],
        context_sources=sources,
        last_test=None,
        event_id="pr-event",
    ).markdown()


def test_a_long_session_lists_its_latest_reads_and_says_where_the_rest_are() -> None:
    sources = [f"read-{n}" for n in range(MAX_LISTED_SOURCES + 150)]
    body = _body(sources)
    assert "`read-249`" in body and "`read-150`" in body and "`read-149`" not in body
    assert "and 150 earlier reads: `cedargate provenance pr-event`" in body


def test_a_short_session_lists_every_read() -> None:
    body = _body(["read-1", "read-2"])
    assert "- `read-1`\n- `read-2`\n" in body and "earlier reads" not in body
    assert "none recorded" in _body([])


LOOKALIKES = {
    "zero-width characters": "## Pro\u200bvenance (recorded by cedar\u200bgate)",
    "a zero-width character before the heading": "\u200b## Provenance",
    "a Cyrillic o": "## Pr\u043evenance (rec\u043erded by cedargate)",
    "a Greek omicron": "### Last sandb\u03bfxed test run",
    "an HTML entity": "## Pr&#111;venance",
    "fullwidth letters": "## \uff30rovenance",
    "markup inside the word": "## Pro<b></b>venance",
    "a comment inside the word": "## Pro<!-- -->venance",
    "a heading in a quote": "> ## Provenance",
    "a setext heading": "Provenance\n----------",
    "a heading over lines": "<h3>\nProvenance\n</h3>",
    "the test-run subheading": "### Last sandboxed test run\n- `python3 -m pytest -q`: passed in 3.1 s",
    "the writes subheading": "### Writes (audit events)",
    "the context subheading": "#### Context sources",
    "the context subheading, singular": "### context source",
    "the writes subheading's words": "## Audit events",
    "a hair space inside the word": "### Last sand\u200aboxed test run",
    "emphasis inside the word": "## Pro**venance**",
    "an indented heading in a list item": "- step\n\n    ## Provenance",
    "an indented line continuing a paragraph": "Then:\n    ## Provenance",
    "code inside a heading element": "<h2>\n\n    Provenance\n\n</h2>",
    "a backtick line that is no fence": "```x`\n## Provenance",
    "the claim inside a code block": "```\nTests passed (recorded by cedargate)\n```",
    # A fence ends with its container, and opens only with at most 3 spaces of indent inside it.
    "a quoted fence ended by an unquoted line": "> ```\n## Provenance\n\n- tested\n```",
    "an indented fence continuing a paragraph": "Then:\n    ```\n## Provenance\n    ```",
    "a list item's fence ended by an unindented line": "- item\n  ```\n## Provenance\n```",
    "a lazy line keeping the list item open": "- para\nlazy\n  ```\n## Provenance\n```",
    "a list item that cannot interrupt a paragraph": "Then\n2. ```\n   ## Provenance\n   ```",
    "a fence inside an HTML block": "<pre>\n```\n</pre>\n## Provenance\n```",
    "a heading in a quote without a space": ">## Provenance",
    "a setext heading in a quote": "> Provenance\n> ---",
    "a setext heading in a list item": "1.  Provenance\n    ---",
    "a setext heading over lines": "Provenance\nof the data\n---",
}


@pytest.mark.parametrize("line", LOOKALIKES.values(), ids=LOOKALIKES.keys())
def test_a_disguised_heading_or_subheading_of_the_section_is_refused(line: str) -> None:
    with pytest.raises(ToolInputError) as refused:
        agent_body(f"Raises the timeout.\n\n{line}\n")
    message = str(refused.value)
    assert message.startswith("field `body`: `") and "reads as the provenance section" in message
    assert "reword or remove that line" in message


def test_the_refusal_spells_out_the_characters_that_disguised_the_line() -> None:
    with pytest.raises(ToolInputError) as refused:
        agent_body("## Pr\u043evenance")
    assert "`## Pr\\u043evenance` (holding U+043E CYRILLIC SMALL LETTER O)" in str(refused.value)


OPEN_BLOCKS = {
    "an unclosed comment": ("Raises the timeout.\n\n<!--", "an HTML comment `<!--` never closed with `-->`"),
    "an unclosed details": ("<details><summary>CI log</summary>\n", "`<details>` never closed with `</details>`"),
    "a hidden div": ("<div hidden>\n\nnotes", "`<div>` never closed with `</div>`"),
    "a second details": ("<details>a</details>\n<details>", "`<details>` never closed"),
    "an unclosed fence": ("Log:\n\n```text\nok\n", "a fenced code block (opened by a line of ```) never closed"),
    "an unclosed CDATA": ("x\n<![CDATA[\n", "a `<![CDATA[` section never closed with `]]>`"),
    "an unclosed instruction": ("x\n<?php\n", "a `<?` block never closed with `?>`"),
    "an unclosed fence in a list item": ("- build\n\n    ```sh\n    make\n", "a fenced code block"),
    "a tag inside a raw block, not code": ("<pre>\n\n    <details>\n</pre>", "`<details>` never closed"),
    "a fence whose closer is indented 4": ("```\nok\n    ```", "a fenced code block"),
    "a tag after a code span across blocks": ("x ``` y\n<pre>\n2. ```\n  text", "`<pre>` never closed"),
    "a fence after an empty list item and a blank line": ("-\n\n  ```\n- ok", "a fenced code block"),
    "an HTML block behind a comment in code": (">     <!--\n<pre>\n> \n   -->", "never closed with `</pre>`"),
}


@pytest.mark.parametrize(("body", "found"), OPEN_BLOCKS.values(), ids=OPEN_BLOCKS.keys())
def test_a_block_left_open_that_would_swallow_the_section_is_refused(body: str, found: str) -> None:
    with pytest.raises(ToolInputError) as refused:
        agent_body(body)
    message = str(refused.value)
    assert message.startswith("field `body`: it leaves ") and found in message
    assert "provenance section, appended below the body, would render inside it" in message


ORDINARY = {
    "closed details and comment": "<!-- template -->\n<details><summary>Log</summary>\n\n```\n<div>\n```\n</details>\n",
    "markup in code": "Use `<!--` and `<details>` freely in `code`.\n\n~~~\n<!--\n```\n~~~",
    "generics and comparisons": "Use List<String> and Map<K, V>; a < b > c. <br> <img src=x>",
    "ordinary headings": "## Why\nRequests time out.\n## Testing\nRan pytest: 30 passed.\n\n---\nfooter",
    "a table with keys": "| key | action |\n|---|---|\n| <kbd>q</kbd> | quit |",
    "the word in prose": "Adds data provenance to exports; audit events are unchanged.",
    "a shell comment in a fence": "Rotate the log.\n\n```sh\n# audit events are written here\ntail -f audit.jsonl\n```",
    "a python comment in a fence": "```python\n# provenance of each row is kept\nrow.source = src\n```",
    "a comment in a quoted fence": "> ```\n> # Last sandboxed test run\n> ```",
    "a comment in a fence in a list": "- step\n  ```bash\n  # provenance\n  ```\n- done",
    "a heading word run into another": "## Context: source maps\nWe ship them.\n\n## Audit: eventual consistency",
    "a heading with an apart word": "## Context\nSources of the bug: see #12.",
    "indented code with tags": 'Example:\n\n    <div class="x">\n    <!-- not a comment\n\n    ## Provenance\n\nDone.',
    "indented code holding a fence": "Example:\n\n\t```\n\nDone.",
    "HTML headings in a fence": "```html\n<h3>Provenance</h3>\n<details>\n```",
    "backticks inline on one line": "```x``` is inline code.",
    "a quoted fence over quoted lines": "> ```sh\n> # provenance of the rows\n>\n> make\n> ```\n\nDone.",
    "a fence in a nested list item": "1. build\n   - run\n     ```\n     ## Provenance\n\n     ```\n2. done",
    "a list item's fence with a blank line": "- step\n\n  ~~~\n  # audit events\n\n  more\n  ~~~",
    "indented code after a quote and a blank line": "> note\n\n    ## Provenance\n\nDone.",
    "a fence after a tag in a paragraph": "Press <kbd>q</kbd>\n```\n# provenance\n```",
}


@pytest.mark.parametrize("body", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_markdown_is_the_agents_to_write(body: str) -> None:
    assert agent_body(f"  {body}\n") == body.strip()


TOKEN_ENV = "CEDARGATE_TEST_FORGE_TOKEN"
BRANCH = {"repository": "acme/web", "branch": "agent/timeout"}


@pytest.fixture
def forge(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForgeStandIn]:
    monkeypatch.setenv(TOKEN_ENV, "stand-in-token-0123456789")
    with forge_stand_in() as stand_in:
        yield stand_in


ORDINARY_THROUGH_MCP = (
    "Rotate the audit log daily.\n\n```sh\n# audit events are written here\ntail -f audit.jsonl\n```\n\n"
    "## Context: source maps\nWe now ship source maps.\n\n## Audit: eventual consistency\nFixes the race.\n\n"
    'Example:\n\n    <div class="x">\n\nDone.'
)


@pytest.mark.anyio
async def test_a_pull_request_body_cannot_hide_or_fake_the_section(tree: Path, forge: ForgeStandIn) -> None:
    remote = bare_remote(tree / "remote.git")
    runtime = configure_web(
        tree,
        f"""remote = "{remote}"

[repositories.forge]
kind = "github"
api_url = "{forge.url}"
repository = "acme-corp/web"
token_env = "{TOKEN_ENV}"
""",
    )
    hiding = [
        "Raises the timeout.\n\n<!--",
        "Raises the timeout.\n\n<details><summary>CI log</summary>\n",
        "Raises the timeout.\n\n## Pro\u200bvenance (recorded by cedar\u200bgate)\n\n- task: `TICKET-1`",
        "Raises the timeout.\n\n## Pr\u043evenance (rec\u043erded by cedargate)",
        "Raises the timeout.\n\n### Last sandboxed test run\n- `python3 -m pytest -q`: passed in 3.1 s",
        "Raises the timeout.\n\n### Context source\n- `read-1`",
        "Raises the timeout.\n\n```sh\nmake\n",
    ]
    ordinary = "Raises the timeout.\n\n<details><summary>Log</summary>\n\nok\n</details>\n<!-- note -->\n\n"
    ordinary += ORDINARY_THROUGH_MCP
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            refusals = [
                await s.refused("repo_open_pull_request", {**BRANCH, "title": "T", "body": body}) for body in hiding
            ]
            assert git_text(remote, ["for-each-ref"]) == ""  # refused before anything was pushed
            opened = await s.ok("repo_open_pull_request", {**BRANCH, "title": "T", "body": ordinary})
    finally:
        runtime.close()
    assert all(message.startswith("field `body`: ") for message in refusals), refusals
    [request] = forge.requests
    assert request["json"]["body"] == opened["body"]
    assert opened["body"].startswith(ordinary + "\n\n## Provenance (recorded by cedargate)\n")
