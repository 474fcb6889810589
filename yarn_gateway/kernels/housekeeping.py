"""Background jobs of the session keeper: orphan sweeping, culling, saving activity.

Each job runs as a loop that re-raises cancellation, logs anything else and goes on.
Sweeping and culling take the store's exclusive lock first, so with several gateways
sharing a store exactly one does them at a time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import GatewayError
from ..logs import record_event
from ..yarn.rm_client import FINAL_STATES, RMError, RMNotFound

if TYPE_CHECKING:
    from .kernel_record import KernelRecord
    from .sessions import SessionKeeper


async def _every(keeper: SessionKeeper, interval: Callable[[], float], job: Callable[[], Awaitable[None]],
                 name: str, first_delay: float = 0.0) -> None:
    await asyncio.sleep(first_delay)
    while True:
        if interval() > 0:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                keeper.log.error("%s failed: %s", name, exc)
        # Jitter keeps several gateways from hitting YARN at the same moment.
        await asyncio.sleep(max(1.0, interval() or 60.0) * random.uniform(0.9, 1.1))  # noqa: S311


def _kernel_id_of(app: dict[str, object]) -> str:
    for tag in str(app.get("applicationTags", "")).split(","):
        if tag.startswith("kernel-"):
            return tag[len("kernel-"):]
    return ""


async def sweep(keeper: SessionKeeper) -> tuple[list[str], list[str]]:
    """One sweep: kill this cluster's YARN applications that have no record, and remove
    records whose application has ended. Returns (killed app ids, removed kernel ids)."""
    registry = keeper.registry
    try:
        rm = registry.yarn_services.rm()
    except GatewayError:
        return [], []  # no YARN configured: nothing to sweep
    killed: list[str] = []
    removed: list[str] = []
    async with await keeper.exclusive("sweep") as mine:
        if not mine:
            return killed, removed
        apps = await rm.list_tagged(registry.yarn_services.app_tag)
        records = {r["kernel_id"]: r for r in await keeper.records()}
        now_ms = time.time() * 1000
        live_kernels = set()
        for app in apps:
            kid = _kernel_id_of(app)
            live_kernels.add(kid)
            if kid in records or kid in registry.kernels or keeper.is_refused(kid):  # untrusted record: logged
                continue
            if now_ms - float(app.get("startedTime") or now_ms) < keeper.sweep_grace * 1000:
                continue
            keeper.log.warning("Killing orphaned YARN application %s (user %s, kernel %s): no session record",
                               app.get("id"), app.get("user"), kid or "?")
            await rm.kill(str(app["id"]), wait=20)
            killed.append(str(app["id"]))
        for kid, record in records.items():
            if kid in live_kernels:
                continue
            app_id = record["provisioner_info"].get("app_id")
            if not app_id:
                continue
            try:
                state = (await rm.app(app_id)).get("state")
            except RMNotFound:
                state = None
            except RMError:
                continue  # the RM is unavailable or refused: decide on a later sweep
            if state is None or state in FINAL_STATES:
                keeper.log.info("Removing the record of kernel %s: application %s is %s", kid, app_id,
                                state or "unknown to YARN")
                held = registry.kernels.get(kid)
                if held is not None:
                    held.hub.broadcast_status("dead")
                    registry.release(held)
                await keeper.forget(kid)
                removed.append(kid)
    return killed, removed


async def cull(keeper: SessionKeeper) -> list[str]:
    """One culling pass; returns the kernel ids it shut down."""
    if keeper.cull_idle_timeout <= 0:
        return []
    registry = keeper.registry
    culled: list[str] = []
    async with await keeper.exclusive("cull") as mine:
        if not mine:
            return culled
        now = time.time()
        candidates = {}
        for record in await keeper.records():
            candidates[record["kernel_id"]] = record["last_activity"] or record["updated"] or now
        launching = {kid for kid, held in registry.kernels.items() if not held.ready}
        for kid, held in registry.kernels.items():
            candidates[kid] = max(candidates.get(kid, 0.0), held.hub.last_activity.timestamp())
        for kid in launching:  # a launch is never idle, however long YARN takes
            candidates.pop(kid, None)
        for kid, last in candidates.items():
            idle = now - last
            if idle < keeper.cull_idle_timeout:
                continue
            rec: Optional[KernelRecord] = registry.kernels.get(kid)
            if rec is None:
                found = await keeper.find(kid)
                if found is None or found.get("state") != "running":
                    continue
                try:
                    rec = await keeper.attach(found)
                except GatewayError:
                    rec = None
                if rec is None:
                    continue
            if rec.hub.connections and not keeper.cull_connected:
                continue
            if rec.hub.execution_state == "busy" and not keeper.cull_busy:
                continue
            record_event(keeper.log, "culled", rec, detail=f"idle for {idle:.0f} s")
            registry.metrics.event("culled")
            await registry.shutdown(rec)
            culled.append(kid)
    return culled


async def save_activity(keeper: SessionKeeper) -> None:
    """Write the last activity of kernels that were active since their last save."""
    for rec in list(keeper.registry.kernels.values()):
        last = rec.hub.last_activity.timestamp()
        if rec.recoverable and not rec.ended and last > keeper._saved_activity.get(rec.kernel_id, 0.0):
            await keeper.save(rec)


async def sweep_loop(keeper: SessionKeeper) -> None:
    async def job() -> None:
        await sweep(keeper)

    await _every(keeper, lambda: keeper.sweep_interval, job, "Orphan sweep")


async def cull_loop(keeper: SessionKeeper) -> None:
    async def job() -> None:
        await cull(keeper)

    await _every(keeper, lambda: keeper.cull_idle_timeout and keeper.cull_interval, job, "Culling",
                 first_delay=keeper.cull_interval)


async def activity_loop(keeper: SessionKeeper) -> None:
    async def job() -> None:
        await save_activity(keeper)

    await _every(keeper, lambda: keeper.activity_save_interval, job, "Saving kernel activity",
                 first_delay=keeper.activity_save_interval)


#: What a gateway keeps running beside its kernels (see :meth:`SessionKeeper.start_housekeeping`).
HOUSEKEEPING = (sweep_loop, cull_loop, activity_loop)
