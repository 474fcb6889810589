"""SessionKeeper: the registry's link to the session store.

It saves and forgets records, re-attaches kernels from records (on start, and on demand
for a kernel another gateway instance started), and runs the housekeeping that must
happen on exactly one instance at a time: sweeping orphaned YARN applications and
stale records, and culling idle kernels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Optional

from traitlets import Bool, Float, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..logs import kernel_event
from ..plugins import resolve_class
from .records import connection_problem, identity_problem, record_of, recovery_env
from .session_record import SessionRecord
from .store import RecordTooLarge, SessionStore

if TYPE_CHECKING:
    from .host import KernelHost
    from .kernel_record import KernelRecord

STORES = {
    "directory": "yarn_gateway.kernels.store.DirectoryStore",
    "zookeeper": "yarn_gateway.kernels.zkstore.ZooKeeperStore",
}


class SessionKeeper(LoggingConfigurable):
    """See the module docstring. Configured as ``c.SessionKeeper.*``."""

    store = Unicode(
        "directory", config=True,
        help="Session store: 'directory' (DirectoryStore.directory; shared filesystem for active/passive), "
        "'zookeeper' (ZooKeeperStore.*; active/active), 'none' (kernels do not survive a restart), "
        "or an import path.",
    )
    @validate("store")
    def _valid_store(self, proposal: Any) -> str:
        if proposal["value"] != "none":
            resolve_class(proposal["value"], STORES, SessionStore, "SessionKeeper.store")
        return str(proposal["value"])

    recover_on_start = Bool(True, config=True, help="Re-attach every recorded kernel when the gateway starts.")
    attach_timeout = Float(30.0, config=True, help="Seconds a recorded kernel gets to answer when re-attached.")
    sweep_interval = Float(
        300.0, config=True, help="Seconds between orphan sweeps (also run at start). 0 disables sweeping."
    )
    sweep_grace = Float(
        900.0, config=True,
        help="Applications younger than this (seconds) are never swept: they may be launches in progress.",
    )
    cull_idle_timeout = Float(
        0.0, config=True, help="Shut down kernels idle for this many seconds (0: never). Ends their YARN applications."
    )
    cull_interval = Float(60.0, config=True, help="Seconds between culling passes.")
    cull_connected = Bool(False, config=True, help="Also cull idle kernels that have clients connected.")
    cull_busy = Bool(False, config=True, help="Also cull kernels that are busy (running a cell).")
    activity_save_interval = Float(
        30.0, config=True, help="Seconds between saves of kernels' last activity (culling across instances)."
    )

    def __init__(self, registry: KernelHost) -> None:
        super().__init__(parent=registry, log=registry.log)
        self.registry = registry
        self._store: Optional[SessionStore] = None
        self._store_ready = asyncio.Lock()
        self._attaching: dict[str, asyncio.Future[Optional[KernelRecord]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._saved_activity: dict[str, float] = {}
        self._prepared: Optional[SessionStore] = None
        #: kernel id -> why its (MAC-verified) record is not trusted; such kernels are neither listed nor swept
        self._refused: dict[str, tuple[Any, str]] = {}
        self._warned: set[tuple[str, str]] = set()

    # -- store --------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Check the store's configuration and files and load its record key (before the gateway
        listens): :class:`~.store.StoreConfigError`, a ValueError saying what to fix, stops the start."""
        if self.store == "none" or self._prepared is not None:
            return
        cls = resolve_class(self.store, STORES, SessionStore, "SessionKeeper.store")
        store: SessionStore = cls(parent=self.registry, log=self.log)
        self.log.info("Session store: %s (%s.%s)", self.store, cls.__module__, cls.__name__)
        await store.prepare()
        self._prepared = store

    async def _get_store(self) -> Optional[SessionStore]:
        if self.store == "none":
            return None
        async with self._store_ready:
            if self._store is None:
                await self.prepare()
                store = self._prepared
                assert store is not None
                await store.start()  # connects (ZooKeeper): retried at the next use if it fails
                self._store = store
            return self._store

    def is_refused(self, kernel_id: str) -> bool:
        """Whether a record of ``kernel_id`` exists but was not trusted at its last read (logged):
        its kernel is not attached, and its application is no orphan to sweep."""
        store = self._store
        return kernel_id in self._refused or (store is not None and kernel_id in store.rejected)

    def _warn_once(self, kernel_id: str, reason: str, msg: str) -> None:
        if (kernel_id, reason) in self._warned:
            return
        if len(self._warned) > 4096:
            self._warned.clear()
        self._warned.add((kernel_id, reason))
        self.log.warning("%s", msg)

    def _trusted(self, record: SessionRecord) -> bool:
        """Whether a (MAC-verified) record may be acted on: listed, counted, attached, swept by its
        application. Checked: who owns it and who started it (user names), its connection info,
        and its restart environment (:func:`.records.recovery_env`: KERNEL_USERNAME, the restart's
        --proxy-user, must be the owner). A refusal is logged once and remembered until the
        record changes; such kernels are neither listed nor attached nor swept."""
        kid, stamp = record["kernel_id"], record["updated"]
        known = self._refused.get(kid)
        if known is not None and known[0] == stamp:
            return False
        problem = identity_problem(record) or connection_problem(record["connection_info"])
        if problem is None:
            try:
                recovery_env(record, self.registry.allowed_envs)
            except ValueError as exc:
                problem = str(exc)
        if problem is None:
            self._refused.pop(kid, None)
            return True
        self._refuse(kid, stamp, problem)
        return False

    def _refuse(self, kid: str, stamp: Any, problem: str) -> None:
        self._refused[kid] = (stamp, problem)
        self._warn_once(kid, problem, f"Kernel {kid}: not re-attached: its session record is not trusted: "
                        f"{problem}. Its YARN application (if any) is left running, unattached, and is not swept "
                        "while the record exists; remove the record (and end the application) once you know where "
                        "it came from.")

    @property
    def gateway_id(self) -> str:
        return str(self.registry.yarn_services.gateway_id)

    async def save(self, rec: KernelRecord, launching: bool = False) -> None:
        """Write (or update) the record of a kernel that can outlive the gateway."""
        if not rec.recoverable or rec.ended:
            return
        store = await self._get_store()
        if store is not None:
            try:
                await store.put(await record_of(rec, self.gateway_id, launching))
            except RecordTooLarge as exc:
                self._warn_once(rec.kernel_id, "too large", str(exc))
                return
            self._saved_activity[rec.kernel_id] = rec.hub.last_activity.timestamp()
            if rec.ended and not rec.released and self.registry.kernels.get(rec.kernel_id) is not rec:
                # The kernel ended (or was released) while we were writing: never resurrect its record.
                await store.remove(rec.kernel_id)

    async def forget(self, kernel_id: str) -> None:
        store = await self._get_store()
        self._saved_activity.pop(kernel_id, None)
        if store is not None:
            await store.remove(kernel_id)

    async def find(self, kernel_id: str) -> Optional[SessionRecord]:
        store = await self._get_store()
        if store is None:
            return None
        record = await store.get(kernel_id)
        if record is None or record["gateway_id"] != self.gateway_id:
            return None
        return record if self._trusted(record) else None

    async def records(self) -> list[SessionRecord]:
        store = await self._get_store()
        if store is None:
            return []
        stored = await store.all()
        present = {r["kernel_id"] for r in stored}
        for kid in [k for k in self._refused if k not in present]:  # its record is gone: no longer protected
            del self._refused[kid]
        return [r for r in stored if r["gateway_id"] == self.gateway_id and self._trusted(r)]

    async def probe(self) -> dict[str, Any]:
        """Health check: one read from the session store."""
        store = await self._get_store()
        if store is None:
            return {"ok": True, "store": "none"}
        await store.probe()
        return {"ok": True, "store": self.store}

    async def close(self) -> None:
        if self._store is not None:
            await self._store.stop()
            self._store = None

    # -- attach -------------------------------------------------------------------------
    async def attach(self, record: SessionRecord) -> Optional[KernelRecord]:
        """Hold the kernel of ``record`` here; None if it is gone (its record is removed then)."""
        kid = record["kernel_id"]
        held = self.registry.kernels.get(kid)
        if held is not None:
            return held
        pending = self._attaching.get(kid)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Optional[KernelRecord]] = asyncio.get_running_loop().create_future()
        self._attaching[kid] = fut
        try:
            rec = await self._attach(record)
            fut.set_result(rec)
            return rec
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters get it through their own await
            raise
        finally:
            self._attaching.pop(kid, None)

    async def _attach(self, record: SessionRecord) -> Optional[KernelRecord]:
        registry = self.registry
        env = self._recovery_env(record)
        if env is None:
            return None
        if record["connection_info"] is None:
            await self._abandoned_launch(record)
            return None
        return await registry.adopt(record, env, self.attach_timeout)

    def _recovery_env(self, record: SessionRecord) -> Optional[dict[str, str]]:
        """The environment a recorded kernel restarts with, filtered as a start request's, if its
        record may be acted on (:meth:`_trusted`); None (logged once) if not."""
        if not self._trusted(record):
            return None
        env, dropped = recovery_env(record, self.registry.allowed_envs)
        if dropped:
            self._warn_once(record["kernel_id"], "dropped", f"Kernel {record['kernel_id']}: names dropped from its "
                            "restart environment (neither KERNEL_* nor in KernelRegistry.allowed_envs): "
                            f"{', '.join(map(repr, dropped))}")
        return env

    async def _abandoned_launch(self, record: SessionRecord) -> None:
        """A record of a launch that never completed: once it is old enough, end it."""
        kid = record["kernel_id"]
        if time.time() - record["created"] < self.registry.max_launch_timeout + 60:
            return  # another instance may still be launching it
        app_id = record["provisioner_info"].get("app_id")
        if app_id:
            with contextlib.suppress(Exception):
                await self.registry.yarn_services.rm().kill(app_id, wait=20)
        kernel_event(self.log, "launch abandoned", kid, record["owner"], app_id=app_id,
                     kernelspec=record["name"], detail="the launch never completed; ended and forgotten",
                     level=logging.WARNING)
        await self.forget(kid)

    async def recover_all(self) -> int:
        """Re-attach every recorded kernel of this gateway cluster; return how many."""
        if not self.recover_on_start:
            return 0
        records = await self.records()
        if not records:
            return 0
        sem = asyncio.Semaphore(8)

        async def one(record: SessionRecord) -> bool:
            async with sem:
                try:
                    return await self.attach(record) is not None
                except Exception as exc:
                    self.log.error("Kernel %s: not recovered: %s", record["kernel_id"], exc)
                    return False

        results = await asyncio.gather(*(one(r) for r in records))
        self.log.info("Recovered %d of %d recorded kernel(s)", sum(results), len(records))
        return sum(results)

    # -- housekeeping ---------------------------------------------------------------------
    def start_housekeeping(self, *jobs: Callable[[SessionKeeper], Awaitable[None]]) -> None:
        """Run ``jobs`` (the loops of :mod:`.housekeeping`) until :meth:`stop_housekeeping`."""
        for job in jobs:
            self._tasks.append(asyncio.ensure_future(job(self)))

    async def stop_housekeeping(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        store = await self._get_store()
        if store is None:
            return _always()
        return store.exclusive(name)


@contextlib.asynccontextmanager
async def _always() -> Any:
    yield True
