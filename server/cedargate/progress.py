"""Progress of long tool calls, told to the client that asked for it.

Handlers run in worker threads and report through a plain callable (``HandlerCall.progress``);
``client_progress`` relays each report to the MCP client as ``notifications/progress`` on the
event loop. A client that sent no progress token gets nothing, and a report that cannot be
delivered never fails the call: progress is a courtesy, the result and the audit are not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import anyio.from_thread
import anyio.lowlevel
from mcp.server.context import ServerRequestContext

from cedargate.protocol_era import is_handshake_era

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_S: Final = 5.0
"""How often ``heartbeat`` says a blocking call is still going."""

ProgressReport = Callable[[float, float | None, str], None]
"""``(done, total or None, message)``, called from the handler's worker thread."""


def no_progress(done: float, total: float | None, message: str) -> None:
    """Where reports go when nobody listens (direct pipeline use, benchmarks)."""


def client_progress(ctx: ServerRequestContext[Any]) -> ProgressReport:
    """A report function bound to the request ``ctx`` belongs to, callable from any thread.

    Made on the event loop, it keeps the loop's token, so a thread the handler started (a
    ``heartbeat``) reports as well as the handler's own worker thread. A handshake-era request
    asks for progress by sending a progress token; without one it gets ``no_progress``, so no
    heartbeat is started for it. A 2026-07-28 request is always offered progress: over stdio
    and HTTP it carries a token when its client asks (the SDK drops reports otherwise), but
    the SDK's in-process dispatcher hands reports to the client's callback without one, and
    the request context does not say which dispatcher it came through.
    """
    if is_handshake_era(ctx) and (ctx.meta or {}).get("progress_token") is None:
        return no_progress
    token = anyio.lowlevel.current_token()

    def report(done: float, total: float | None, message: str) -> None:
        try:
            anyio.from_thread.run(ctx.session.report_progress, done, total, message, token=token)
        except Exception:  # boundary: a lost progress note must not fail a running tool
            logger.debug("could not report progress to the client", exc_info=True)

    return report


@contextmanager
def heartbeat(report: ProgressReport, waiting_for: str, every_s: float | None = None) -> Iterator[None]:
    """Say how long a blocking call has been going, every ``every_s`` (``HEARTBEAT_EVERY_S``), until it returns.

    For work that cannot report on its own (one AWS request); a client that asked for
    progress hears the call is alive, and clients that reset their timeout on progress keep
    waiting. Nothing is started when nobody listens.
    """
    if report is no_progress:
        yield
        return
    interval = HEARTBEAT_EVERY_S if every_s is None else every_s
    finished = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not finished.wait(interval):
            elapsed = time.monotonic() - started
            report(elapsed, None, f"waiting for {waiting_for}: {elapsed:.0f} s so far")

    thread = threading.Thread(target=beat, name="cedargate-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()
