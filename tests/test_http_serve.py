"""``cedargate serve --transport http`` as a real process: the address it announces and the Host checks it makes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from tests.raw_wire import HANDSHAKE, reap, serve_process

INITIALIZE = HANDSHAKE[0]
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@contextmanager
def _serving(tree: Path, host: str) -> Iterator[str]:
    """The URL a server without [auth] announces on ``host`` (any free port)."""
    process = serve_process(tree, subprocess.DEVNULL, "--transport", "http", "--host", host, "--port", "0")
    try:
        assert process.stderr is not None
        banner = process.stderr.readline().decode()
        url = re.search(r"http://\S+/mcp", banner)
        assert url is not None, banner + process.stderr.read().decode()
        yield url.group()
    finally:
        reap(process)


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.1"])
def test_a_loopback_server_refuses_a_request_naming_another_host_or_origin(tree: Path, host: str) -> None:
    with _serving(tree, host) as url:
        port = url.rsplit(":", 1)[1].removesuffix("/mcp")
        rebound = httpx.post(
            url, json=INITIALIZE, headers={**HEADERS, "host": "evil.example", "origin": "http://evil.example"}
        )
        foreign_origin = httpx.post(url, json=INITIALIZE, headers={**HEADERS, "origin": "http://evil.example"})
        own = httpx.post(url, json=INITIALIZE, headers={**HEADERS, "origin": f"http://{host}:{port}"}, timeout=30)
    assert rebound.status_code == 421
    assert foreign_origin.status_code == 403
    assert own.status_code == 200, own.text


def test_an_ipv6_loopback_server_announces_its_url_with_brackets(tree: Path) -> None:
    with _serving(tree, "::1") as url:
        assert re.fullmatch(r"http://\[::1\]:\d+/mcp", url), url
        assert httpx.post(url, json=INITIALIZE, headers=HEADERS, timeout=30).status_code == 200
