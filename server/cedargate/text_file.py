"""Reading the text files people edit (config, manifests, policies, policy tests) with errors that name them."""

from __future__ import annotations

from pathlib import Path

from cedargate.errors import CedargateError


def read_text_file(path: Path, error: type[CedargateError]) -> str:
    """The file's UTF-8 text; raises ``error`` naming the file when it cannot be read or decoded.

    A leading byte-order mark (some Windows editors write one) is dropped: it is not part of
    the text, and Cedar and TOML would refuse the file at line 1, column 1 without a word why.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} is not); save the file as UTF-8") from exc
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or exc}") from exc
