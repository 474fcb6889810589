"""The one public error type.

Everything a user may see goes through :class:`GatewayError`: the message for the user
(what happened, which kernel and application, what to do), the HTTP status, a short
reason, and optionally a more detailed message for the log. Handlers turn it into the
JSON body ``{"reason": ..., "message": ...}``; nothing else (no traceback, no Java stack
trace, no secret) reaches the client.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Optional

# A Java stack frame ("\tat org.apache....(Foo.java:12)") or "Caused by:" chain.
_JAVA_FRAME = re.compile(r"^\s*(at [\w$.<>]+\(.*\)|\.\.\. \d+ more|Caused by: .*)$")


class GatewayError(Exception):
    """An error whose message is safe and useful to show to the user.

    ``message`` is for the user; ``log_message`` (default: ``message``) is for the log;
    ``status`` is the HTTP status; ``reason`` a short phrase (default: the status phrase);
    ``headers`` extra response headers (e.g. ``Retry-After`` on a 429).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: Optional[str] = None,
        log_message: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.reason = reason or _phrase(self.status)
        self.log_message = log_message or message
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def strip_java_stack(text: str, max_lines: int = 20) -> str:
    """Return ``text`` without Java stack frames, keeping the exception lines.

    Used on spark-submit and YARN diagnostics before they are shown to a user. When more
    than ``max_lines`` remain, the first lines (YARN's summary) and the last ones (the
    program's final words) are kept.
    """
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not _JAVA_FRAME.match(ln)]
    if len(kept) <= max_lines:
        return "\n".join(kept)
    head = max(1, max_lines // 2)
    return "\n".join([*kept[:head], "...", *kept[-(max_lines - head):]])
