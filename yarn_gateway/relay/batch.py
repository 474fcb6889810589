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
import threading
from collections.abc import Iterator
from typing import Callable

log = logging.getLogger(__name__)


class _Batch(threading.local):
    """The batch in progress on this thread, hence on the event loop it runs (each loop has its
    own: a gateway embedded beside another loop, or tests running several, never mix them)."""

    def __init__(self) -> None:
        self.depth = 0
        self.flushes: list[Callable[[], None]] = []


_state = _Batch()


def batching() -> bool:
    """Whether a batch of received messages is being handled right now."""
    return _state.depth > 0


def defer_flush(flush: Callable[[], None]) -> None:
    """Call ``flush`` when the current batch ends (only valid while :func:`batching`)."""
    _state.flushes.append(flush)


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """Handle a batch of messages: deferred flushes run when the outermost batch ends."""
    state = _state
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0:
            while state.flushes:
                flushes, state.flushes = state.flushes, []
                for flush in flushes:
                    try:
                        flush()
                    except Exception:  # one broken writer must not keep the others' output back
                        log.exception("Flushing a websocket failed")
