"""Shared pieces of the YARN kernel tests: kernelspec variants, gateway config, waiting on YARN."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any, Optional

from helpers.waiting import wait_until

PORT_RANGE = (42000, 42999)
#: Start-request env for a kernel that holds no executor until a job asks (dynamic allocation from 0):
#: Spark refuses spark.executor.instances=0 without dynamic allocation.
NO_EXECUTORS = {"KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true"}


def make_spec(dest: Any, name: str, **config: Any) -> str:
    """A copy of spark_python_yarn_cluster with provisioner config overrides."""
    from yarn_gateway.app import builtin_kernelspec_dir

    src = os.path.join(builtin_kernelspec_dir(), "spark_python_yarn_cluster")
    out = os.path.join(str(dest), name)
    shutil.copytree(src, out)
    with open(os.path.join(out, "kernel.json")) as f:
        spec = json.load(f)
    spec["metadata"]["kernel_provisioner"]["config"].update(config)
    with open(os.path.join(out, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return out


def yarn_gateway_config(cluster: Any) -> dict[str, Any]:
    """make_gateway() config for kernels on ``cluster`` with ports in PORT_RANGE, two submits at a time."""
    lo, hi = PORT_RANGE
    cfg: dict[str, Any] = cluster.gateway_config(port_range=f"{lo}..{hi}", max_concurrent_submits=2)
    cfg["KernelRegistry"] = {"launch_timeout": 180.0, "shutdown_wait_time": 20.0}
    return cfg


async def wait_app_state(cluster: Any, app_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    """Poll the RM until ``app_id`` is in one of ``states``; return the app object."""
    last: dict[str, Any] = {}

    async def in_state() -> Optional[dict[str, Any]]:
        nonlocal last
        last = await asyncio.to_thread(cluster.app_json, app_id)
        return last if last["state"] in states else None

    app: dict[str, Any] = await wait_until(in_state, timeout, interval=0.5,
                                           what=lambda: f"{app_id} in {sorted(states)} (still {last.get('state')})")
    return app


def app_of(gw: Any, kid: str) -> str:
    """The YARN application id of kernel ``kid`` held by gateway ``gw``."""
    app_id = gw.registry.kernels[kid].km.provisioner.app_id
    assert app_id
    return str(app_id)
