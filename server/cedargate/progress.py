"""Progress of long tool calls, told to the client that asked for it.

Handlers run in worker threads and report through a plain callable (``HandlerCall.progress``);
``client_progress`` relays each report to the MCP client as ``notifications/progress`` on the
event loop. A client that sent no progress token gets nothing, and a report that cannot be
delivered never fails the call: progress is a courtesy, the result and the audit are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio.from_thread
from mcp.server.context import ServerRequestContext

logger = logging.getLogger(__name__)

ProgressReport = Callable[[float, float | None, str], None]
"""``(done, total or None, message)``, called from the handler's worker thread."""


def no_progress(done: float, total: float | None, message: str) -> None:
    """Where reports go when nobody listens (direct pipeline use, benchmarks)."""


def client_progress(ctx: ServerRequestContext[Any]) -> ProgressReport:
    """A report function bound to the request ``ctx`` belongs to."""

    def report(done: float, total: float | None, message: str) -> None:
        try:
            anyio.from_thread.run(ctx.session.report_progress, done, total, message)
        except Exception:  # boundary: a lost progress note must not fail a running tool
            logger.debug("could not report progress to the client", exc_info=True)

    return report
