"""Shared pieces of the persistence tests: what YARN says about a kernel's application."""

from __future__ import annotations

import asyncio
from typing import Any

FINAL = {"FINISHED", "FAILED", "KILLED"}
#: Kernels that run no Spark job need no executor: one JVM (the AM's) per kernel on a small machine.
#: Spark refuses zero executors without dynamic allocation; with it, none starts until a job needs one.
NO_EXECUTORS = {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true",
                "KERNEL_SPARK_DYNAMIC_ALLOCATION_MAX_EXECUTORS": "1"}


def app_of_kernel(cluster: Any, kid: str) -> dict[str, Any]:
    """The YARN application the gateway submitted for kernel ``kid`` (found by its tag, as YARN sees it)."""
    apps = [a for a in cluster.apps_of() if f"kernel-{kid}" in str(a.get("applicationTags", "")).split(",")]
    assert len(apps) == 1, apps
    return apps[0]


async def states(cluster: Any, *app_ids: str) -> list[str]:
    """The current YARN state of each application."""
    return [str((await asyncio.to_thread(cluster.app_json, a))["state"]) for a in app_ids]


async def wait_final(cluster: Any, app_id: str, timeout: float = 90) -> dict[str, Any]:
    """Until YARN reports ``app_id`` FINISHED, FAILED or KILLED; the app object."""
    app: dict[str, Any] = await asyncio.to_thread(cluster.wait_app, app_id, FINAL, timeout)
    return app
