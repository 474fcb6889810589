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
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from .base import APIHandler

if TYPE_CHECKING:
    from ..provisioners.services import YarnServices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthCheck:
    name: str
    run: Callable[[], Awaitable[dict[str, Any]]]
    timeout: float = 10.0


class CachedProbe:
    """Runs ``probe`` at most once per ``ttl`` seconds (its answer, failures included, is
    reused meanwhile), so frequent health polls cost the probed service almost nothing."""

    def __init__(self, probe: Callable[[], Awaitable[dict[str, Any]]], ttl: float) -> None:
        self.probe = probe
        self.ttl = ttl
        self._result: Optional[dict[str, Any]] = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> Optional[dict[str, Any]]:
        if self._result is not None and time.monotonic() - self._at < self.ttl:
            return dict(self._result)
        return None

    async def __call__(self) -> dict[str, Any]:
        cached = self._fresh()
        if cached is not None:
            return cached
        async with self._lock:  # concurrent polls share one probe
            cached = self._fresh()
            if cached is not None:
                return cached
            try:
                result = dict(await self.probe())
            except Exception as exc:
                log.warning("Health probe failed: %s: %s", type(exc).__name__, exc)
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self._result, self._at = result, time.monotonic()
            return dict(result)


def rm_configured(services: YarnServices) -> bool:
    """Whether this gateway has a ResourceManager to check (endpoints or a yarn-site.xml)."""
    return bool(services.rm_endpoints) or os.path.isfile(os.path.join(services.hadoop_conf_dir, "yarn-site.xml"))


def rm_check(services: YarnServices, ttl: float) -> HealthCheck:
    """ResourceManager reachable: a cluster_information call through the shared RM client."""

    async def probe() -> dict[str, Any]:
        rm = services.rm()
        info = (await rm.call("cluster_information")).get("clusterInfo") or {}
        return {"ok": True, "state": info.get("state"), "ha_state": info.get("haState"),
                "endpoints": list(rm.endpoints)}

    return HealthCheck("resourcemanager", CachedProbe(probe, ttl))


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
    """GET /api/health (authenticated): every check with its details."""

    async def get(self) -> None:
        ok, results = await run_checks(list(self.settings.get("health_checks", [])))
        self.finish_json({"status": "ok" if ok else "failing", "checks": results}, 200 if ok else 503)


class ProbeHandler(APIHandler):
    """GET /healthz (no authentication): only ``{"status"}`` and 200/503, for load balancers
    and cluster managers' alerts. It reveals nothing but whether the gateway is healthy."""

    async def prepare(self) -> None:
        return None

    async def get(self) -> None:
        ok, _ = await run_checks(list(self.settings.get("health_checks", [])))
        self.finish_json({"status": "ok" if ok else "failing"}, 200 if ok else 503)
