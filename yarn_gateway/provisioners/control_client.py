"""Authenticated requests to a launcher's control port (PROTOCOL.md, "The control port").

Used by the provisioners for interrupt (``signal`` SIGINT), shutdown and liveness (``ping``).
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, Optional

from yarn_gateway_launchers import launcher_protocol as lp


class ControlRequestError(Exception):
    """The launcher could not be reached, did not answer in time, or refused the request.
    ``reason`` is short and free of secrets (e.g. ``timeout``, ``refused``, or the
    launcher's own ``reason``)."""

    def __init__(self, kernel_id: str, request: str, reason: str) -> None:
        super().__init__(f"kernel {kernel_id}: control request {request!r} failed: {reason}")
        self.kernel_id = kernel_id
        self.request = request
        self.reason = reason


async def send_control(
    host: str,
    port: int,
    kernel_id: str,
    key: str,
    request: str,
    signum: Optional[int] = None,
    timeout: float = 10.0,
    initial_backoff: float = 0.1,
    max_backoff: float = 2.0,
) -> dict[str, Any]:
    """Send one signed request and return the launcher's ``{"status": "ok"}`` answer.

    ``key`` is the kernel's connection key (the MAC key). ``timeout`` (seconds) covers
    every attempt: connect, send and answer. A ``busy`` or ``timeout`` answer (the
    launcher did not process the request, e.g. its control port is flooded) is retried
    with a freshly signed request after a jittered, growing pause (``initial_backoff``
    doubling up to ``max_backoff``) while time is left; nothing else is retried, since a
    request whose answer was lost may have been carried out. Raises
    :class:`ControlRequestError` on timeout, refusal, a malformed answer or ``status: error``.
    """
    if request not in lp.CONTROL_REQUESTS:
        raise ValueError(f"unknown control request {request!r}")
    if request == "signal" and signum is None:
        raise ValueError("a signal request needs signum")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    backoff = initial_backoff
    while True:
        answer = await _attempt(host, port, kernel_id, key, request, signum, timeout, deadline - loop.time())
        if answer.get("status") == "ok":
            return answer
        reason = str(answer.get("reason", "error without reason"))
        pause = backoff * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
        if reason.partition(":")[0] not in lp.RETRYABLE_CODES or loop.time() + pause >= deadline:
            raise ControlRequestError(kernel_id, request, reason)
        await asyncio.sleep(pause)
        backoff = min(backoff * 2, max_backoff)


async def _attempt(host: str, port: int, kernel_id: str, key: str, request: str, signum: Optional[int],
                   timeout: float, remaining: float) -> dict[str, Any]:
    message = lp.sign_control_request(kernel_id, key, request, signum)
    try:
        answer = await asyncio.wait_for(_exchange(host, port, message), max(0.0, remaining))
    except asyncio.TimeoutError:
        raise ControlRequestError(kernel_id, request, f"timeout: no answer from {host}:{port} "
                                  f"within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ControlRequestError(kernel_id, request, f"refused: nothing listens on {host}:{port}") from None
    except (OSError, asyncio.IncompleteReadError, ValueError, RecursionError) as e:
        raise ControlRequestError(kernel_id, request, f"unreachable: {type(e).__name__} from "
                                  f"{host}:{port}") from None
    if not isinstance(answer, dict):
        raise ControlRequestError(kernel_id, request, "malformed answer")
    return answer


async def _exchange(host: str, port: int, message: dict[str, Any]) -> Any:
    reader, writer = await asyncio.open_connection(host, port, limit=lp.MAX_CONTROL_LINE)
    try:
        writer.write(json.dumps(message).encode("utf-8") + b"\n")
        await writer.drain()
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("closed without an answer")
        return json.loads(line.decode("utf-8"))
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
