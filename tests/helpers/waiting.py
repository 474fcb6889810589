"""One way for tests to wait for a condition: poll it until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Return ``predicate()``'s first truthy value (awaited if it is a coroutine); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s: {what}")
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """:func:`wait_until` for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:g} s: {what}")
        time.sleep(interval)
