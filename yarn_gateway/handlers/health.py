"""GET /api/health: the gateway's named health checks, as JSON.

A check is a :class:`HealthCheck` (a name and an async function returning a dict with at
least ``"ok": bool``); the app puts the list in the tornado setting ``health_checks``.
The answer is ``{"status": "ok" | "failing", "checks": [{"name": ..., "ok": ..., ...}]}``
with 200 when every check passes and 503 otherwise, so a load balancer can use the
status code alone. A check that raises counts as failing (its error is reported).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Callable

from .base import APIHandler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthCheck:
    name: str
    run: Callable[[], Awaitable[dict[str, Any]]]
    timeout: float = 10.0


async def run_checks(checks: list[HealthCheck]) -> tuple[bool, list[dict[str, Any]]]:
    async def one(check: HealthCheck) -> dict[str, Any]:
        try:
            result = dict(await asyncio.wait_for(check.run(), check.timeout))
        except Exception as exc:
            log.warning("Health check %s failed: %s", check.name, exc)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["ok"] = bool(result.get("ok"))
        return {"name": check.name, **result}

    results = list(await asyncio.gather(*(one(c) for c in checks)))
    return all(r["ok"] for r in results), results


class HealthHandler(APIHandler):
    async def get(self) -> None:
        ok, results = await run_checks(list(self.settings.get("health_checks", [])))
        self.finish_json({"status": "ok" if ok else "failing", "checks": results}, 200 if ok else 503)
