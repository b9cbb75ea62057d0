"""Argument types shared by the operator commands: what argparse checks before anything runs."""

from __future__ import annotations

import argparse
from typing import Final

from pydantic import TypeAdapter, ValidationError

from cedargate.config import Identifier

_IDENTIFIER: Final = TypeAdapter(Identifier)


def identifier(value: str) -> str:
    """An agent, user or environment id as the config spells them: a typo would act on nobody, silently."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"`{value}` is not an id as the config writes them: up to 128 letters, digits and `._@/:-`, "
            "starting with a letter or digit"
        ) from None
