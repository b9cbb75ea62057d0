"""Bytes an agent reads (a file, an object body) as text it can use, and how they were given.

Text that is not UTF-8 would come back with replacement characters, which an agent writing
the file back would keep: such bytes are given as base64 instead, and the encoding says so.
"""

from __future__ import annotations

import base64
import codecs
from typing import Final

from cedargate.redact import redact_text

_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def text_for_agent(data: bytes) -> tuple[str, str]:
    """``(content, encoding)``: UTF-8 text as it is, other bytes as base64 unless they hold a secret.

    base64 hides secret shapes from redaction; bytes holding one, read as text (their BOM's
    encoding, else Latin-1), are given as that text, redacted, with the encoding they were read as.
    """
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "latin-1")
    text = data.decode(encoding, errors="replace")
    redacted = redact_text(text)
    if redacted != text:
        return redacted, encoding
    return base64.b64encode(data).decode("ascii"), "base64"
