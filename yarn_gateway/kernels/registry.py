"""The kernel registry: every kernel this gateway runs, with its owner and its relay hub.

The registry does not care which provisioner a kernelspec names: it drives a
jupyter_client ``AsyncKernelManager`` (local kernels use the standard
``LocalProvisioner``; YARN kernels the ``YarnProvisioner``) and connects a
:class:`~yarn_gateway.relay.hub.KernelHub` to whatever connection info results.

Contract for handlers: every method taking a ``caller`` applies ownership (404 for a
kernel the caller may not see), and every failure a user can see is a
:class:`~yarn_gateway.errors.GatewayError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.factory import KernelProvisionerFactory
from traitlets import Bool, Enum, Float, Instance, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from ..auth.base import User
from ..auth.kernelspec_acl import runs_on_gateway_host
from ..auth.policy import AccessPolicy
from ..errors import GatewayError
from ..logs import record_event, safe_text
from ..metrics import GatewayMetrics, observed_start
from ..provisioners.host import HostedKernelManager
from ..relay.hub import KernelHub, KernelNotReady
from ..relay.session import RelayLimits
from ..utils import run_blocking
from .env import base_environment, client_launch_timeout, validate_request_env
from .kernel_record import KernelRecord
from .limits import KernelLimits
from .params import KernelParameters
from .records import kernel_connection_info, record_model
from .session_record import SessionRecord

if TYPE_CHECKING:
    from ..kerberos import KerberosLogin

log = logging.getLogger(__name__)


class KernelRegistry(LoggingConfigurable):
    """See the module docstring."""

    kernel_spec_manager = Instance(KernelSpecManager)
    policy = Instance(AccessPolicy)

    launch_timeout = Float(
        60.0, config=True,
        help="Seconds a local kernel (one whose provisioner has no launch timeout of its own) may take to become "
        "ready when the client sends no KERNEL_LAUNCH_TIMEOUT. YARN kernels use YarnProvisioner.launch_timeout "
        "(default 300 s; set per kernelspec in metadata.kernel_provisioner.config.launch_timeout) instead. "
        "Precedence: the client's KERNEL_LAUNCH_TIMEOUT (at most max_launch_timeout), then the provisioner's "
        "own timeout, then this one.",
    )
    max_launch_timeout = Float(
        600.0, config=True,
        help="Upper bound (seconds) on any launch timeout: a client's KERNEL_LAUNCH_TIMEOUT and the provisioner's.",
    )
    allowed_envs = List(
        Unicode(),
        config=True,
        help="Environment names (besides KERNEL_*) a start request may pass to the kernel.",
    )
    start_grace = Float(
        15.0, config=True, help="Seconds added to the launch timeout before the registry itself gives up."
    )
    liveness_interval = Float(
        3.0, config=True, help="Seconds between checks that each kernel's process (or application) is alive."
    )
    stop_launch_wait = Float(
        30.0, config=True,
        help="Seconds a gateway stop waits for launches in progress to be cancelled (spark-submit and the "
        "YARN application killed).",
    )
    shutdown_wait_time = Float(
        5.0, config=True, help="Seconds a kernel gets to exit after a shutdown request before it is killed."
    )
    replay_buffer_bytes = Int(
        64 * 1024 * 1024, config=True,
        help="Bytes of output kept per disconnected client session for replay on reconnect.",
    )
    client_backlog_bytes = Int(
        64 * 1024 * 1024, config=True,
        help="Bytes a slow client may lag behind before its output is dropped (and it is told so).",
    )
    shutdown_kernels_on_stop = Bool(
        False, config=True,
        help="Shut YARN kernels down when the gateway stops. Default: leave them running, to be recovered by the "
        "next start (or another gateway sharing the session store). Local kernels always stop with the gateway.",
    )
    session_expiry = Float(
        600.0, config=True, help="Seconds a disconnected client session (and its replay buffer) is kept."
    )
    output_batch_interval = Float(
        0.002, config=True,
        help="While a kernel floods output (stream or display messages back to back), relay it in batches at "
        "most this many seconds apart instead of message by message: about half the gateway's and the "
        "client's CPU per message, for at most this much delay. Replies and status messages are never "
        "held back by it. 0 relays every message as soon as it arrives.",
    )
    max_kernel_message_bytes = Int(
        32 * 1024 * 1024, config=True,
        help="Largest message the gateway takes from a kernel (all its frames together), in bytes. A larger one "
        "is never buffered: it is skipped as it arrives; output (iopub) is dropped and every client is told so, "
        "a reply is answered to its client with an error reply naming the limit.",
    )
    kernel_send_queue_bytes = Int(
        16 * 1024 * 1024, config=True,
        help="Bytes of client messages kept per kernel channel while the kernel takes none (not connected yet, or "
        "not reading); past that the client is closed with 1013 (try again later). One message is always kept, "
        "whatever its size (up to YarnGatewayApp.websocket_max_message_size).",
    )
    kernel_handshake_timeout = Float(
        10.0, config=True,
        help="Seconds a kernel's socket gets to accept a connection and complete the ZMTP handshake before the "
        "gateway gives up on that connection and tries again.",
    )
    curve_relay = Enum(
        ("zmtp", "libzmq"), default_value="zmtp", config=True,
        help="How the gateway speaks CurveZMQ to an encrypted kernel: 'zmtp', its own ZMTP client on the event "
        "loop (the CurveZMQ handshake and boxes as RFC 26 defines them, the cipher libsodium's through PyNaCl), "
        "or 'libzmq', a pyzmq socket (libzmq's CurveZMQ, with its I/O thread). Both authenticate the kernel by "
        "its public key and encrypt every message; 'zmtp' costs less CPU per message.",
    )

    max_sessions_per_kernel = Int(
        16, config=True,
        help="Client sessions (websocket session_ids) per kernel, attached or waiting for their client to come "
        "back. At the cap the session detached for the longest is dropped; when all are attached, a new client "
        "gets 429. 0: no cap.",
    )
    max_sessions_per_user = Int(
        64, config=True,
        help="Client sessions per user over all kernels (as max_sessions_per_kernel, per user). 0: no cap.",
    )

    def __init__(self, kerberos: Optional[KerberosLogin] = None, **kwargs: Any) -> None:
        """``kerberos``: the gateway's keytab login, for the YARN services (None without Kerberos)."""
        super().__init__(**kwargs)
        self.kernels: dict[str, KernelRecord] = {}
        #: This gateway's Prometheus metrics (GET /metrics); kernel states are read at scrape time.
        self.metrics = GatewayMetrics(lambda: [(r.hub.execution_state, r.owner) for r in self.kernels.values()])
        self._monitor: Optional[asyncio.Task[None]] = None
        from ..provisioners.services import YarnServices

        # Shared by every YARN kernel of this gateway (the provisioners find it here).
        self.yarn_services = YarnServices(parent=self, log=self.log, metrics=self.metrics, kerberos=kerberos)
        from .sessions import SessionKeeper

        self.sessions = SessionKeeper(self)
        self.kernel_limits = KernelLimits(self)
        self.kernel_parameters = KernelParameters(parent=self, log=self.log)

    # -- lookup -----------------------------------------------------------------------
    def _not_found(self, kernel_id: str) -> GatewayError:
        return GatewayError(404, f"Kernel {kernel_id} does not exist (or is not yours).", reason="No such kernel")

    def get(self, kernel_id: str, caller: User) -> KernelRecord:
        """A kernel this gateway holds, if ``caller`` may see it; 404 otherwise (never 403)."""
        rec = self.kernels.get(kernel_id)
        if rec is None or not self.policy.can_access(caller, rec.owner):
            raise self._not_found(kernel_id)
        return rec

    async def lookup(self, kernel_id: str, caller: User) -> KernelRecord:
        """Like :meth:`get`, but re-attaches a kernel that only the session store knows
        (started by another gateway instance, or before a restart)."""
        if kernel_id in self.kernels:
            return self.get(kernel_id, caller)
        record = await self.sessions.find(kernel_id)
        if record is None or not self.policy.can_access(caller, record["owner"]):
            raise self._not_found(kernel_id)
        rec = await self.sessions.attach(record)
        if rec is None:
            raise self._not_found(kernel_id)
        return rec

    def held(self, caller: User) -> list[KernelRecord]:
        """The kernels this gateway holds that ``caller`` may see."""
        return [r for r in self.kernels.values() if self.policy.can_access(caller, r.owner)]

    async def list_models(self, caller: User) -> list[dict[str, Any]]:
        """Models of every kernel the caller may see: held here, or known to the store."""
        models = [r.model() for r in self.held(caller)]
        held = {m["id"] for m in models}
        for record in await self.sessions.records():
            if record["kernel_id"] not in held and self.policy.can_access(caller, record["owner"]):
                models.append(record_model(record))
        return models

    # -- lifecycle ----------------------------------------------------------------------
    @observed_start
    async def start(self, caller: User, spec_name: str, request_env: Any) -> KernelRecord:
        """Start a kernel of ``spec_name`` for ``caller``; return once it is ready."""
        env = validate_request_env(request_env, self.allowed_envs)
        owner = self.policy.effective_user(caller, env.get("KERNEL_USERNAME"))
        # The canonical name (jupyter_client finds kernelspecs case-insensitively): ACLs apply to it.
        spec_name, spec = await self.policy.resolve_kernelspec(self.kernel_spec_manager, owner, spec_name)
        # Only a client's own value travels in KERNEL_LAUNCH_TIMEOUT: without one, the provisioner's
        # default applies (a YARN launch waits for a queue far longer than a local kernel starts).
        client_timeout = client_launch_timeout(env, self.max_launch_timeout)
        env.pop("KERNEL_LAUNCH_TIMEOUT", None)
        await self.kernel_limits.check(caller, owner)  # no await from here until the kernel is held: exact count
        kernel_id = str(uuid.uuid4())
        env.update(KERNEL_USERNAME=owner, KERNEL_ID=kernel_id)
        if client_timeout is not None:
            env["KERNEL_LAUNCH_TIMEOUT"] = f"{client_timeout:g}"
        timeout = client_timeout if client_timeout is not None else self.launch_timeout
        km = self.new_manager(spec_name, kernel_id)
        km._kernel_spec = spec  # launch exactly the spec the policy checked
        hub = KernelHub(kernel_id, self._limits())
        rec = KernelRecord(kernel_id, spec_name, owner, caller.name, km, hub, launch_env=dict(env))
        self.kernels[kernel_id] = rec
        self._lifecycle(rec, "start requested")
        # The launch runs as a task of its own, so that a gateway stop can cancel it (killing
        # spark-submit and the YARN application) without cancelling the request handler.
        backstop = client_timeout if client_timeout is not None else self.max_launch_timeout
        launch = asyncio.create_task(self._launch(rec, env, timeout, backstop), name=f"launch-{kernel_id}")
        rec.launch_task = launch
        try:
            await asyncio.shield(launch)
        except asyncio.CancelledError:
            if not launch.done():  # the caller went away: end the launch, then pass the cancellation on
                launch.cancel()
                await asyncio.wait({launch})
                if not launch.cancelled():
                    launch.exception()  # retrieved: the caller is gone, the launch logged its own failure
                raise
            if not launch.cancelled():
                raise
            raise GatewayError(503, f"Kernel {kernel_id} ({spec_name}) was not started: the gateway is stopping. "
                               "Try again in a moment.", reason="Gateway stopping") from None
        finally:
            rec.launch_task = None
        await self.sessions.save(rec)
        self._ensure_monitor()
        return rec

    async def recovered_kernelspec(self, record: SessionRecord) -> Optional[str]:
        """The canonical kernelspec name of a recorded kernel if its owner may still use it;
        None (logged) if not: the kernel is then not re-attached."""
        try:
            name, _spec = await self.policy.resolve_kernelspec(
                self.kernel_spec_manager, record["owner"], record["name"])
        except GatewayError as exc:
            self.log.error("Kernel %s: not re-attached: %s", record["kernel_id"], safe_text(exc.message))
            return None
        return name

    async def _launch(self, rec: KernelRecord, env: dict[str, str], timeout: float, backstop: float) -> None:
        km, hub = rec.km, rec.hub
        try:
            # A provisioner with a launch timeout of its own applies it (with a precise error); the
            # registry's wait is the backstop, never shorter than what the provisioner may take.
            await asyncio.wait_for(
                km.start_kernel(kernel_id=rec.kernel_id, env={**base_environment(), **env}),
                backstop + self.start_grace,
            )
            await hub.connect(kernel_connection_info(km), timeout, km.is_alive)
        except asyncio.CancelledError:
            await self._discard(rec)
            raise
        except Exception as exc:
            await self._discard(rec)
            raise self._start_error(rec, exc, timeout) from exc
        rec.ready = True
        self._lifecycle(rec, "connected")

    def new_manager(self, spec_name: str, kernel_id: str) -> AsyncKernelManager:
        km = HostedKernelManager(
            host=self,
            kernel_name=spec_name,
            kernel_spec_manager=self.kernel_spec_manager,
            shutdown_wait_time=self.shutdown_wait_time,
            parent=self,
            log=self.log,
        )
        km.kernel_id = kernel_id
        return km

    def provisioner_checkpoint(self, kernel_id: str) -> None:
        """Called by a provisioner as soon as it knows something recovery needs (an app id)."""
        rec = self.kernels.get(kernel_id)
        if rec is not None:
            fut = asyncio.ensure_future(self.sessions.save(rec, launching=True))
            fut.add_done_callback(_log_failure)
            rec.checkpoint = fut

    def _start_error(self, rec: KernelRecord, exc: BaseException, timeout: float) -> GatewayError:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, KernelNotReady)):
            detail = str(exc) or f"not ready within {timeout:g} s"
            return GatewayError(
                504 if isinstance(exc, asyncio.TimeoutError) or exc.timed_out else 500,
                f"Kernel {rec.kernel_id} ({rec.name}) failed to start: {detail}. "
                "Try again; if it keeps failing, ask your administrator to check the gateway log.",
                reason="Kernel start failed",
            )
        return GatewayError(
            500,
            f"Kernel {rec.kernel_id} ({rec.name}) failed to start: {exc}",
            reason="Kernel start failed",
            log_message=f"Kernel {rec.kernel_id} failed to start: {exc!r}",
        )

    async def _discard(self, rec: KernelRecord) -> None:
        self._lifecycle(rec, "start failed", level=logging.WARNING)
        self.kernels.pop(rec.kernel_id, None)
        rec.hub.close()
        rec.ended = True
        try:
            if rec.km.has_kernel:
                await rec.km.shutdown_kernel(now=True)
        except Exception as exc:
            self.log.warning("Kernel %s: cleanup after a failed start: %s", rec.kernel_id, exc)
        left_running = bool(getattr(rec.km.provisioner, "app_left_running", False))
        if rec.checkpoint is not None and not left_running:  # the launch was recorded: nothing is left to recover
            await asyncio.wait({rec.checkpoint})
            try:
                await self.sessions.forget(rec.kernel_id)
            except Exception as exc:
                self.log.warning("Kernel %s: its launch record stays in the session store: %s", rec.kernel_id, exc)

    async def interrupt(self, rec: KernelRecord) -> None:
        async with rec.lock:
            self._check_running(rec)
            await rec.km.interrupt_kernel()
        self._lifecycle(rec, "interrupted")

    async def restart(self, rec: KernelRecord) -> None:
        """Restart under the same kernel id; attached clients stay attached."""
        async with rec.lock:
            self._check_running(rec)
            # The owner must still be allowed the kernelspec (ACLs may have changed since the start).
            spec = rec.km.kernel_spec  # set at start and on re-attach: no filesystem read here
            await self.policy.check_kernelspec(rec.owner, rec.name, local=spec is None or runs_on_gateway_host(spec))
            rec.hub.broadcast_status("restarting")
            rec.hub.disconnect()
            try:
                await rec.km.restart_kernel(now=False)
                await rec.hub.connect(
                    kernel_connection_info(rec.km), self.launch_timeout, rec.km.is_alive
                )
            except Exception as exc:
                rec.hub.broadcast_status("dead")
                raise GatewayError(500, f"Kernel {rec.kernel_id} ({rec.name}) failed to restart: {exc}",
                                   reason="Restart failed") from exc
            await self.sessions.save(rec)
        self._lifecycle(rec, "restarted")

    async def adopt(self, record: SessionRecord, env: dict[str, str], attach_timeout: float) -> Optional[KernelRecord]:
        """Hold here the kernel a trusted session ``record`` describes (a kernel another gateway, or
        this one before a restart, started), launching nothing: its provisioner is loaded from the
        record and its hub connected to the recorded ports. ``env`` is its filtered restart
        environment. None if it is gone (its application ended: the record is removed) or may not
        be served here; GatewayError 503 if it is recorded as running but does not answer."""
        kid, recorded_conn = record["kernel_id"], record["connection_info"]
        if recorded_conn is None:
            raise ValueError(f"kernel {kid}: a launch record has no kernel to adopt")
        name = await self.recovered_kernelspec(record)  # canonical name; the owner's ACLs still apply
        if name is None:
            return None
        km = self.new_manager(name, kid)
        try:
            spec = await run_blocking(self.kernel_spec_manager.get_kernel_spec, name)
        except Exception as exc:
            self.log.error("Kernel %s: cannot re-attach, kernelspec %r unavailable: %s", kid, name, exc)
            return None
        km._kernel_spec = spec
        prov = KernelProvisionerFactory.instance(parent=self).create_provisioner_instance(kid, spec, parent=km)
        km.provisioner = prov
        await prov.load_provisioner_info({**record["provisioner_info"], "kernel_id": kid})
        if await prov.poll() is not None:
            self.log.info("Kernel %s: its application has ended; removing its record", kid)
            await self.sessions.forget(kid)
            return None
        conn: Any = dict(recorded_conn)
        setattr(prov, "connection_key", str(conn.get("key", "")))  # noqa: B010 - the control-port MAC key
        conn["key"] = str(conn.get("key", "")).encode()
        km.load_connection_info(conn)
        prov.connection_info = conn
        launch_args: Any = {"env": {**base_environment(), **env}, "kernel_id": kid}
        km._launch_args = launch_args
        hub = KernelHub(kid, self._limits())
        hub.last_activity = datetime.fromtimestamp(record["last_activity"] or time.time(), timezone.utc)
        try:
            await hub.connect(kernel_connection_info(km), attach_timeout, km.is_alive)
        except KernelNotReady as exc:
            hub.close()
            raise GatewayError(503, f"Kernel {kid} ({name}) is recorded as running but does not answer "
                               f"({exc}); try again shortly.", reason="Kernel unreachable") from None
        rec = KernelRecord(kid, name, record["owner"], record["started_by"], km, hub,
                           created=datetime.fromtimestamp(record["created"] or time.time(), timezone.utc),
                           launch_env=dict(env))
        rec.ready = True
        self.kernels[kid] = rec
        self._ensure_monitor()
        record_event(self.log, "recovered", rec)
        self.metrics.event("recovered")
        return rec

    async def shutdown(self, rec: KernelRecord, now: bool = False) -> None:
        async with rec.lock:
            if rec.ended:
                return
            rec.ended = True
            self.kernels.pop(rec.kernel_id, None)
            try:
                await rec.km.shutdown_kernel(now=now)
            finally:
                rec.hub.close()
                await self.sessions.forget(rec.kernel_id)
        self._lifecycle(rec, "shut down")

    def release(self, rec: KernelRecord) -> None:
        """Stop holding a kernel without stopping it (it keeps running in YARN)."""
        rec.ended = rec.released = True
        self.kernels.pop(rec.kernel_id, None)
        rec.hub.close()

    async def stop(self) -> None:
        """Gateway shutdown. Kernels that can outlive the gateway are left running (their
        records stay in the session store) unless ``shutdown_kernels_on_stop``; the
        others (local kernels, children of this process) are shut down."""
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        await self.sessions.stop_housekeeping()
        await self.cancel_launches()
        to_stop = []
        for rec in list(self.kernels.values()):
            if rec.recoverable and not self.shutdown_kernels_on_stop:
                await self.sessions.save(rec)
                self.release(rec)
                self._lifecycle(rec, "left running", detail=rec.km.provisioner.__class__.__name__)
            else:
                to_stop.append(rec)
        await asyncio.gather(*(self.shutdown(r) for r in to_stop), return_exceptions=True)
        await self.sessions.close()
        await self.yarn_services.stop()

    async def cancel_launches(self) -> None:
        """End the launches still in progress: their clients get a 503, and what they started
        (spark-submit, a YARN application) is stopped; nobody could reconnect to them."""
        tasks = [r.launch_task for r in self.kernels.values() if r.launch_task is not None and not r.launch_task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.stop_launch_wait)
            if pending:
                self.log.warning("%d kernel launch(es) still cleaning up after %g s", len(pending),
                                 self.stop_launch_wait)
            await asyncio.sleep(0.1)  # the start requests write their 503 before connections close

    def _lifecycle(self, rec: KernelRecord, event: str, detail: str = "", level: int = logging.INFO) -> None:
        """Log one lifecycle event (yarn_gateway.logs) and count it in the metrics."""
        record_event(self.log, event, rec, detail=detail, level=level)
        self.metrics.event(event.replace(" ", "_"))

    def _check_running(self, rec: KernelRecord) -> None:
        if rec.ended:
            raise GatewayError(404, f"Kernel {rec.kernel_id} has ended.", reason="No such kernel")

    def _limits(self) -> RelayLimits:
        return RelayLimits(
            replay_buffer_bytes=self.replay_buffer_bytes,
            client_backlog_bytes=self.client_backlog_bytes,
            session_expiry=self.session_expiry,
            output_batch_interval=self.output_batch_interval,
            max_message_bytes=self.max_kernel_message_bytes,
            send_queue_bytes=self.kernel_send_queue_bytes,
            handshake_timeout=self.kernel_handshake_timeout,
            curve_relay=self.curve_relay,
            max_sessions_per_kernel=self.max_sessions_per_kernel,
            max_sessions_per_user=self.max_sessions_per_user,
        )

    # -- liveness -----------------------------------------------------------------------
    def _ensure_monitor(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while self.kernels:
            await asyncio.sleep(self.liveness_interval)
            for rec in list(self.kernels.values()):
                if rec.ended or not rec.ready or rec.lock.locked() or rec.hub.execution_state == "dead":
                    continue
                try:
                    alive = await rec.km.is_alive()
                except Exception as exc:  # keep watching the others
                    self.log.warning("Kernel %s: liveness check failed: %s", rec.kernel_id, exc)
                    continue
                if not alive and not rec.lock.locked():
                    self._lifecycle(rec, "died", level=logging.WARNING)
                    rec.hub.broadcast_status("dead")
                    if rec.recoverable:  # its application ended: nothing left to reconnect to
                        self.release(rec)
                        await self.sessions.forget(rec.kernel_id)


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("Saving a session record failed: %s", fut.exception())
