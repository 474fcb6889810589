"""One way for tests to wait for a condition: poll it until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable

#: What was awaited, in words; or a function giving them at the moment of failure (for details such as
#: the last state seen or a daemon's log, known only then).
What = str | Callable[[], str]


def _timed_out(timeout: float, what: What) -> AssertionError:
    return AssertionError(f"after {timeout:g} s: {what() if callable(what) else what}")


async def wait_until(predicate: Callable[[], Any], timeout: float, what: What, interval: float = 0.05) -> Any:
    """Return ``predicate()``'s first truthy value (awaited if it is a coroutine); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], Any], timeout: float, what: What, interval: float = 0.05) -> Any:
    """:func:`wait_until` for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        time.sleep(interval)
