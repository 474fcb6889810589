"""Small helpers shared across the daemon."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

_executor: Optional[ThreadPoolExecutor] = None
_executor_size = 16


def configure_executor(max_workers: int) -> None:
    """Size the executor used by :func:`run_blocking` (call before first use)."""
    global _executor_size
    _executor_size = max_workers


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call (RM REST, Kerberos, DNS, filesystem scans) off the event loop."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_executor_size, thread_name_prefix="yarngw-blocking")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


def isoformat_z(dt: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a ``Z`` (what GatewayClient parses)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
