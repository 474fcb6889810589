"""Kernel lifecycle log lines and the optional JSON log format.

Every lifecycle event (start requested, submitted, connected, interrupted, restarted,
shut down, died, culled, recovered, start failed, left running) is one line written by
:func:`kernel_event`: ``Kernel <id> <event>[: detail] (app <app id>, user <user>, ...)``.
The same values travel as ``extra`` record attributes (``kernel_id``, ``app_id``,
``user``, ``kernelspec``, ``event``), which :class:`JsonFormatter` emits as fields when
``YarnGatewayApp.log_json`` is set.

Never pass a secret (connection info, keys, tokens, passwords) to these functions.

Log integrity: a client chooses kernelspec names, paths, session ids and more, and a
``%0A`` in a URL is a newline once decoded. :func:`safe_text` escapes control characters
(and the Unicode line separators) as ``\\xNN`` / ``\\uNNNN``, so one record is one line and
no client can forge another; everything client-supplied is passed through it before it is
logged, and :class:`EscapeControlFilter` (on the daemon's console handler) applies it to
every message as a second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from typing import Any, Optional, Union

#: Record attributes the JSON format copies into its objects when present.
EXTRA_FIELDS = ("kernel_id", "app_id", "user", "kernelspec", "event", "session_id")

AnyLogger = Union[logging.Logger, "logging.LoggerAdapter[Any]"]

# C0 controls but tab, DEL, C1 controls, and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object) -> str:
    """``value`` as one printable log line: control characters escaped (see the module docstring)."""
    return _CONTROL.sub(_escape, value if isinstance(value, str) else str(value))


class EscapeControlFilter(logging.Filter):
    """Escape control characters in every message a handler writes (tracebacks keep their lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as usual
            return True
        if _CONTROL.search(message):
            record.msg, record.args = safe_text(message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message and the known extra fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # dictConfig passes format/datefmt; the JSON layout ignores them.
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def kernel_event(
    logger: AnyLogger,
    event: str,
    kernel_id: str,
    user: str,
    *,
    app_id: Optional[str] = None,
    kernelspec: Optional[str] = None,
    detail: str = "",
    level: int = logging.INFO,
) -> None:
    """Log one lifecycle event of one kernel (see the module docstring)."""
    kernel_id, user, detail = safe_text(kernel_id), safe_text(user or ""), safe_text(detail)
    kernelspec = safe_text(kernelspec) if kernelspec else kernelspec
    parts = []
    if app_id:
        parts.append(f"app {safe_text(app_id)}")
    parts.append(f"user {user or '?'}")
    if kernelspec:
        parts.append(f"kernelspec {kernelspec}")
    extra = {"kernel_id": kernel_id, "app_id": app_id, "user": user, "kernelspec": kernelspec,
             "event": event.replace(" ", "_")}
    logger.log(level, "Kernel %s %s%s (%s)", kernel_id, event, f": {detail}" if detail else "", ", ".join(parts),
               extra=extra)


def app_id_of(rec: Any) -> Optional[str]:
    """The YARN application id of a kernel record (None for local kernels or before submit)."""
    app_id = getattr(getattr(getattr(rec, "km", None), "provisioner", None), "app_id", None)
    return str(app_id) if app_id else None


def record_event(logger: AnyLogger, event: str, rec: Any, *, detail: str = "", level: int = logging.INFO) -> None:
    """:func:`kernel_event` for a ``KernelRecord``."""
    kernel_event(logger, event, rec.kernel_id, rec.owner, app_id=app_id_of(rec), kernelspec=rec.name,
                 detail=detail, level=level)
