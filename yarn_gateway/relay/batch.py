"""Websocket writes of one batch of kernel messages, flushed together when it ends.

A kernel connection hands every message it parsed from one read to the relay inside
:func:`batch`. Websocket writes made meanwhile can be held back (:func:`defer_flush`)
and written together when the batch ends, in the same callback: one ``send()`` system
call for a burst of kernel output instead of one per message, and nothing can run
between the messages being accepted and written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Callable

log = logging.getLogger(__name__)


class _Batch:
    depth = 0
    flushes: list[Callable[[], None]] = []


def batching() -> bool:
    """Whether a batch of received messages is being handled right now."""
    return _Batch.depth > 0


def defer_flush(flush: Callable[[], None]) -> None:
    """Call ``flush`` when the current batch ends (only valid while :func:`batching`)."""
    _Batch.flushes.append(flush)


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Handle a batch of messages: deferred flushes run when the outermost batch ends."""
    _Batch.depth += 1
    try:
        yield
    finally:
        _Batch.depth -= 1
        if _Batch.depth == 0:
            while _Batch.flushes:
                flushes, _Batch.flushes = _Batch.flushes, []
                for flush in flushes:
                    try:
                        flush()
                    except Exception:  # one broken writer must not keep the others' output back
                        log.exception("Flushing a websocket failed")
