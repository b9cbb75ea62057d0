"""Turning database failures into ``StoreError`` at the edge of each governance step.

A call whose approval, budget or hold cannot be read does not run (fail closed); the agent
is told the store failed rather than that its tool crashed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from cedargate.errors import StoreError

P = ParamSpec("P")
R = TypeVar("R")


def store_guarded(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-raise any database error inside ``fn`` as a ``StoreError`` naming the step."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except SQLAlchemyError as exc:
                cause = getattr(exc, "orig", None) or exc
                raise StoreError(
                    f"the governance store failed during {step} ({type(cause).__name__}); nothing ran; "
                    "check the `[store]` database and retry"
                ) from exc

        return guarded

    return decorate
