"""YarnProvisioner: a kernel as a Spark driver in YARN cluster mode.

Lifecycle (DESIGN.md, "Starting a kernel"):

1. :meth:`pre_launch` checks the user and builds the spark-submit command.
2. :meth:`launch_kernel` registers a fresh launch token with the gateway's response
   listener, runs spark-submit (within the gateway's concurrent-submit cap), learns the
   application id, then follows the application's YARN state until the launcher calls
   back with the kernel's connection info, which it returns to jupyter_client. Any
   failure, timeout or cancellation kills the application before the error is raised:
   no launch leaves an application behind.
3. :meth:`poll` answers from the gateway's shared, rate-limited view of YARN; interrupt
   (:meth:`send_signal`) and stop go to the launcher's authenticated control port; the
   YARN application is killed when the launcher does not end it.

Every error a user sees is a :class:`~yarn_gateway.errors.GatewayError` naming the
kernel and (when it exists) the application.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import secrets
import shutil
import tempfile
import time
from typing import Any, Optional

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Dict, Float, List, TraitError, Unicode, validate

from yarn_gateway_launchers.launcher_protocol import CURVE_PUBLIC_FIELD, TRANSPORT_ENCRYPTION

from ..errors import GatewayError
from ..logs import kernel_event
from ..yarn.rm_client import FINAL_STATES, RMClient, RMError, RMNotFound, RMUnavailable
from ..yarn.spark_submit import (
    SubmitResult,
    SubmitSpec,
    build_argv,
    diagnose,
    is_valid_user_name,
    run_spark_submit,
    write_properties,
)
from .control_client import ControlRequestError, send_control
from .host import ProvisionerHost, host_of
from .response_listener import LauncherResponseError
from .services import YarnServices

ARG_KEYS = ("kernel_id", "response_address", "public_key", "port_range", "spark_context_initialization_mode",
            "transport_encryption")
TRANSPORT_ENCRYPTION_FLAG = "--transport-encryption"


class YarnProvisioner(KernelProvisionerBase):
    """See the module docstring. Settings come from the kernelspec's
    ``metadata.kernel_provisioner.config`` and from the gateway configuration."""

    #: The kernel lives in YARN, not under this process: it can outlive the gateway.
    supports_recovery = True

    launcher = Unicode(config=True, help="Launcher (.py, .R or .jar): absolute, or relative to the kernelspec "
                       "directory, else to the launchers shipped with yarn-gateway.")
    launcher_class = Unicode("", config=True, help="Main class when the launcher is a jar.")
    py_files = List(Unicode(), config=True, help="--py-files (resolved like `launcher`).")
    jars = List(Unicode(), config=True, help="--jars (resolved like `launcher`).")
    files = List(Unicode(), config=True, help="--files (resolved like `launcher`).")
    spark_opts = List(Unicode(), config=True, help="Extra spark-submit options (admin-written, trusted).")
    spark_conf = Dict(config=True, help="Extra --conf key=value pairs.")
    driver_env = Dict(config=True, help="Environment of the driver (AM) container, e.g. PYSPARK_PYTHON.")
    queue = Unicode("", config=True, help="YARN queue (empty: the cluster's default).")
    forward_env = List(Unicode(), config=True,
                       help="Names (besides KERNEL_*) of the start request's env passed to the driver.")
    launch_timeout = Float(300.0, config=True,
                           help="Seconds from submit to connected kernel when the client sends no "
                           "KERNEL_LAUNCH_TIMEOUT (the owner of the YARN launch deadline: a busy queue keeps a "
                           "launch ACCEPTED for minutes). Capped by KernelRegistry.max_launch_timeout.")
    accepted_timeout = Float(120.0, config=True,
                             help="Seconds an application may wait in ACCEPTED (queue full) before the launch fails.")
    spark_context_initialization_mode = Unicode("lazy", config=True, help="lazy, eager or none.")
    transport_encryption = Unicode(
        "curve", config=True,
        help="'curve' (the default): the launcher makes the kernel's CurveZMQ key pair in its container and "
        "the kernel's ports answer only CurveZMQ; the gateway connects with the public key from the "
        "encrypted launch response. 'none': plain ZMQ (HMAC-signed, readable on the network); refused "
        "while YarnServices.require_transport_encryption is on.")

    @validate("transport_encryption")
    def _check_transport_encryption(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value not in TRANSPORT_ENCRYPTION:
            raise TraitError(f"transport_encryption must be one of {', '.join(TRANSPORT_ENCRYPTION)}, not {value!r}")
        return value
    launch_poll_interval = Float(1.0, config=True, help="Seconds between YARN state checks while launching.")
    rm_outage_timeout = Float(60.0, config=True,
                              help="Seconds a launch keeps waiting for its launcher while the ResourceManager is "
                              "unreachable (an RM failover takes seconds) before it fails with 503.")
    shutdown_wait = Float(20.0, config=True, help="Seconds a stopping kernel's application gets to end by itself.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app_id: Optional[str] = None
        self.owner = ""
        self.control_host = ""
        self.control_port = 0
        self.connection_key = ""
        self.curve_publickey: Optional[str] = None  # the kernel's CurveZMQ public key (Z85), if it has one
        self._exit_code: Optional[int] = None
        self._launching = False
        self._submitted = False  # spark-submit ran: an application may exist before its id is known
        self.app_left_running = False
        self._stopping = False
        self._last_fresh = 0.0
        self._host: Optional[ProvisionerHost] = None
        self._argv_template: list[str] = []
        self._spec: Optional[SubmitSpec] = None
        self._driver_env: dict[str, str] = {}
        self._timeout = self.launch_timeout

    # -- helpers ------------------------------------------------------------------------
    @property
    def has_process(self) -> bool:
        return self._launching or (self.app_id is not None and self._exit_code is None)

    def _label(self) -> str:
        return f"Kernel {self.kernel_id}" + (f" (YARN application {self.app_id})" if self.app_id else "")

    def _resolve(self, path: str) -> str:
        if os.path.isabs(path):
            return path
        spec_dir = getattr(self.kernel_spec, "resource_dir", "") or ""
        candidate = os.path.join(spec_dir, path)
        if os.path.exists(candidate):
            return candidate
        from ..kernels.install import find_launcher_file

        found = find_launcher_file(path)
        if found is not None:
            return found
        raise GatewayError(500, f"Kernelspec {getattr(self.kernel_spec, 'display_name', '')!r}: launcher file "
                           f"{path!r} not found; ask your administrator to reinstall the kernelspecs.")

    @property
    def host(self) -> ProvisionerHost:
        """The gateway running this kernel (resolved once; GatewayError 500 outside a gateway)."""
        if self._host is None:
            self._host = host_of(self.parent, f"Kernel {self.kernel_id}")
        return self._host

    def _phase(self, phase: str, seconds: float) -> None:
        self.host.metrics.launch_phase(phase, seconds)

    def _rm(self) -> RMClient:
        return self.host.yarn_services.rm()

    # -- launch -------------------------------------------------------------------------
    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        env: dict[str, str] = kwargs["env"]
        self.app_id, self._exit_code, self._stopping = None, None, False
        self.owner = env.get("KERNEL_USERNAME", "")
        if not is_valid_user_name(self.owner):
            raise GatewayError(400, f"'{self.owner}' is not a valid user name for a YARN kernel.", reason="Bad user")
        services = self.host.yarn_services
        spark_home = services.spark_home
        if not spark_home:
            raise GatewayError(503, "SPARK_HOME is not configured for YARN kernels (YarnServices.spark_home).",
                               reason="YARN not configured")
        forward = set(self.forward_env) | set(self.host.allowed_envs)
        driver_env = {k: v for k, v in env.items() if k.startswith("KERNEL_") or k in forward}
        driver_env.update({str(k): str(v) for k, v in (self.kernel_spec.env or {}).items()})
        driver_env.update({str(k): str(v) for k, v in self.driver_env.items()})
        driver_env.pop("KERNEL_LAUNCH_TOKEN", None)
        self._driver_env = driver_env
        self._timeout = self.effective_launch_timeout(env)
        self._driver_env["KERNEL_LAUNCH_TIMEOUT"] = f"{self._timeout:g}"  # the launcher's own deadline
        # The user's KERNEL_* parameter choices, checked against this kernelspec (400 if refused).
        spec_name = self.parent.kernel_name if isinstance(self.parent, AsyncKernelManager) else ""
        chosen = self.host.kernel_parameters.resolve(spec_name, self.kernel_spec.metadata, env)
        self._spec = SubmitSpec(
            spark_submit=os.path.join(spark_home, "bin", "spark-submit"),
            proxy_user=self.owner,
            name=f"jupyter-kernel-{self.kernel_id}",
            primary=self._resolve(self.launcher),
            queue=chosen.queue or self.queue or None,
            tags=["yarn-gateway", services.app_tag, f"kernel-{self.kernel_id}"],
            conf={**{str(k): str(v) for k, v in self.spark_conf.items()}, **chosen.conf},
            spark_opts=list(self.spark_opts),
            main_class=self.launcher_class or None,
            py_files=[self._resolve(p) for p in self.py_files],
            jars=[self._resolve(p) for p in self.jars],
            files=[self._resolve(p) for p in self.files],
        )
        if self.transport_encryption == "none" and services.require_transport_encryption:
            raise GatewayError(
                403, f"Kernel {self.kernel_id}: kernelspec {spec_name!r} turns CurveZMQ transport "
                "encryption off (transport_encryption 'none'), but this gateway requires encrypted kernels "
                "(YarnServices.require_transport_encryption). Ask your administrator to fix the kernelspec.",
                reason="Encryption required")
        self._argv_template = list(self.kernel_spec.argv)
        if not any(TRANSPORT_ENCRYPTION_FLAG in arg for arg in self._argv_template):
            self._argv_template += [TRANSPORT_ENCRYPTION_FLAG, "{transport_encryption}"]  # a kernelspec from before v2
        kwargs["cmd"] = [self._spec.spark_submit, "...", self._spec.primary]  # informational: built at launch
        return kwargs

    def effective_launch_timeout(self, env: dict[str, str]) -> float:
        """The client's KERNEL_LAUNCH_TIMEOUT (already capped by the registry), else ``launch_timeout``
        capped by the registry's ``max_launch_timeout``."""
        if env.get("KERNEL_LAUNCH_TIMEOUT"):
            return float(env["KERNEL_LAUNCH_TIMEOUT"])
        return min(self.launch_timeout, self.host.max_launch_timeout)

    def _submit_env(self, services: YarnServices) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
        env["SPARK_HOME"] = services.spark_home
        env["HADOOP_CONF_DIR"] = services.hadoop_conf_dir
        env["SPARK_CONF_DIR"] = services.effective_spark_conf_dir
        # The driver's Python is the kernelspec's business (driver_env), never the gateway's own:
        # spark-submit would carry these into the AM.
        for name in ("KERNEL_LAUNCH_TOKEN", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
            env.pop(name, None)
        if services.kerberos is not None:  # the gateway's ticket; the JVM needs krb5.conf as a -D option
            env.update(services.kerberos.submit_env())
        return env

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Submit the kernel to YARN and return its connection info once its launcher has reported.

        Runs spark-submit (``cmd`` is informational: the argv is built here from :meth:`pre_launch`'s
        spec) and waits, until the launch deadline, for the launcher's encrypted response while
        following the application in the RM. Raises :class:`~yarn_gateway.errors.GatewayError`
        naming the kernel and the application when spark-submit fails, the application ends (or sits
        in its queue) before the launcher reports, or the deadline passes; the application is killed
        then. Cancelled (gateway stop), it kills what it started and re-raises."""
        assert self._spec is not None, "pre_launch() runs first"
        services = self.host.yarn_services
        if services.kerberos is not None:  # no valid ticket: fail now (503 naming principal and keytab)
            await services.kerberos.ensure_valid()
        listener = await services.listener()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        token = secrets.token_urlsafe(32)
        response = listener.register(self.kernel_id, token)
        values = {
            "kernel_id": self.kernel_id, "response_address": listener.address,
            "public_key": listener.public_key_b64, "port_range": services.port_range,
            "spark_context_initialization_mode": self.spark_context_initialization_mode,
            "transport_encryption": self.transport_encryption,
        }
        self._spec.app_args = [_fill(arg, values) for arg in self._argv_template]
        workdir = tempfile.mkdtemp(prefix="yarngw-submit-")
        self._launching = True
        try:
            props = os.path.join(workdir, "kernel.properties")
            write_properties(props, {**self._driver_env, "KERNEL_LAUNCH_TOKEN": token},
                             os.path.join(services.effective_spark_conf_dir, "spark-defaults.conf"))
            argv = build_argv(self._spec, props)
            self.log.info("%s: submitting to YARN as %s", self._label(), self.owner)
            async with services.submit_slot():
                self._submitted = True
                submit_started = loop.time()
                result = await run_spark_submit(argv, self._submit_env(services), max(1.0, deadline - loop.time()),
                                                on_app_id=self._set_app_id)
            self._phase("spark_submit", loop.time() - submit_started)
            if result.returncode != 0:
                raise self._submit_failed(result)
            if self.app_id is None:
                found = await self._rm().find_by_tag(f"kernel-{self.kernel_id}")
                if found is None:
                    raise GatewayError(500, f"Kernel {self.kernel_id}: spark-submit ended without submitting an "
                                       f"application:\n{diagnose(result.output)}", reason="Kernel start failed")
                self._set_app_id(str(found["id"]))
            info = await self._await_launcher(response, deadline)
            self._check_encryption(info["connection_info"], services.require_transport_encryption)
        except BaseException as exc:
            await self._abandon(exc)
            raise
        finally:
            self._launching = False
            listener.unregister(self.kernel_id)
            shutil.rmtree(workdir, ignore_errors=True)
        conn = info["connection_info"]
        self.control_host = str(conn["ip"])
        self.control_port = int(info["control_port"])
        self.connection_key = str(conn["key"])
        kernel_event(self.log, "launcher connected", self.kernel_id, self.owner, app_id=self.app_id,
                     detail=f"from {info.get('hostname', self.control_host)}")
        result_info: KernelConnectionInfo = {
            "ip": conn["ip"], "transport": conn.get("transport", "tcp"),
            "signature_scheme": conn.get("signature_scheme", "hmac-sha256"),
            "key": str(conn["key"]).encode(),  # type: ignore[typeddict-item]  # jupyter_client wants bytes
            "shell_port": int(conn["shell_port"]), "iopub_port": int(conn["iopub_port"]),
            "stdin_port": int(conn["stdin_port"]), "control_port": int(conn["control_port"]),
            "hb_port": int(conn["hb_port"]), "kernel_name": conn.get("kernel_name", ""),
        }
        # Kept beside jupyter_client's connection info, which holds CurveZMQ keys only as a pair with
        # the secret key (the relay reads it through kernel_connection_info).
        self.curve_publickey = str(conn[CURVE_PUBLIC_FIELD]) if conn.get(CURVE_PUBLIC_FIELD) else None
        self.connection_info = result_info
        return result_info

    def _check_encryption(self, conn: dict[str, Any], required: bool) -> None:
        """Refuse a launcher that offers no CurveZMQ while the gateway requires it; note the downgrade
        when the kernelspec asked for encryption and the launcher could not (its libzmq lacks CURVE)."""
        if conn.get(CURVE_PUBLIC_FIELD):
            return
        if required:
            raise GatewayError(
                502, f"{self._label()}: its launcher offered no CurveZMQ transport encryption (the container's "
                "ZMQ library may lack CURVE support), and this gateway requires encrypted kernels; the application "
                "was stopped. Ask your administrator to check the cluster's Python/JVM ZMQ libraries.",
                reason="Encryption required")
        if self.transport_encryption == "curve":
            self.log.warning("%s: the launcher could not encrypt the kernel's ports (no CurveZMQ in the container); "
                             "its traffic crosses the cluster network in plain text", self._label())

    def _set_app_id(self, app_id: str) -> None:
        self.app_id = app_id
        kernel_event(self.log, "submitted", self.kernel_id, self.owner, app_id=app_id)
        self.host.metrics.event("submitted")
        # Checkpoint at once, so a gateway that dies now can still stop or recover this launch.
        self.host.provisioner_checkpoint(self.kernel_id)

    def _submit_failed(self, result: SubmitResult) -> GatewayError:
        text = "\n".join(result.output)
        detail = diagnose(result.output)
        if "is not allowed to impersonate" in text or "Unauthorized connection for super-user" in text:
            return GatewayError(403, f"Kernel {self.kernel_id}: Hadoop refused to let the gateway ({getpass.getuser()})"
                                f" run kernels as '{self.owner}':\n{detail}\nAsk your Hadoop administrator to allow "
                                "it (hadoop.proxyuser settings).", reason="Impersonation refused")
        if "to unknown queue" in text or "to non-leaf queue" in text:
            queue = self._spec.queue if self._spec is not None else None
            return GatewayError(400, f"Kernel {self.kernel_id}: YARN has no queue {queue or '(default)'!r} that "
                                f"takes applications:\n{detail}\nChoose one of the cluster's queues "
                                "(KERNEL_SPARK_YARN_QUEUE) or ask your Hadoop administrator.", reason="Unknown queue")
        if "Client cannot authenticate via" in text or "GSS initiate failed" in text:
            return GatewayError(503, f"Kernel {self.kernel_id}: the gateway could not authenticate to YARN with "
                                f"Kerberos:\n{detail}", reason="Kerberos failure")
        return GatewayError(500, f"Kernel {self.kernel_id}: spark-submit failed (exit {result.returncode}):\n{detail}",
                            reason="Kernel start failed")

    async def _await_launcher(self, response: asyncio.Future[dict[str, Any]], deadline: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        rm = self._rm()
        accepted_since: Optional[float] = None
        rm_down_since: Optional[float] = None
        # Launch phases (metrics), at launch_poll_interval resolution: ACCEPTED wait until YARN
        # shows the AM container allocated, then the launcher's callback.
        submitted = loop.time()
        allocated_at: Optional[float] = None
        unallocated_at = submitted
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise GatewayError(504, f"{self._label()}: the kernel's launcher did not call back within "
                                   f"{self._timeout:g} s; the application was killed. Its logs: yarn logs "
                                   f"-applicationId {self.app_id}", reason="Kernel start timed out")
            await asyncio.wait({response}, timeout=min(self.launch_poll_interval, remaining))
            if response.done():
                try:
                    info = response.result()
                    now = loop.time()
                    allocated = allocated_at if allocated_at is not None else unallocated_at
                    self._phase("accepted_wait", allocated - submitted)
                    self._phase("launcher_callback", now - allocated)
                    return info
                except LauncherResponseError as exc:
                    raise GatewayError(500, f"{self._label()}: the launcher's answer was refused: {exc.reason}",
                                       reason="Kernel start failed") from None
            assert self.app_id is not None
            try:
                app = await rm.app(self.app_id)
                rm_down_since = None
            except RMUnavailable as exc:
                # A failover or a restart of the RM: the launcher may still call back, so keep waiting
                # (within the launch deadline) for rm_outage_timeout before giving up.
                rm_down_since = rm_down_since if rm_down_since is not None else loop.time()
                if loop.time() - rm_down_since > self.rm_outage_timeout:
                    raise GatewayError(503, f"{self._label()}: the ResourceManager has been unreachable for "
                                       f"{loop.time() - rm_down_since:.0f} s: {exc}. Try again once YARN is back.",
                                       reason="YARN unreachable") from None
                continue
            except RMNotFound:
                raise GatewayError(500, f"{self._label()}: YARN no longer knows the application (was the "
                                   "ResourceManager restarted without recovery?); start the kernel again.",
                                   reason="Kernel start failed") from None
            except RMError as exc:  # refused (401/403) or an unexpected answer: waiting would not help
                raise GatewayError(502, f"{self._label()}: the ResourceManager would not report the application: "
                                   f"{exc}", reason="YARN error") from None
            state = str(app.get("state"))
            if allocated_at is None:
                if app.get("amHostHttpAddress") or state == "RUNNING":
                    allocated_at = loop.time()
                else:
                    unallocated_at = loop.time()
            if state in FINAL_STATES:
                diag = str(app.get("diagnostics") or "no diagnostics")
                raise GatewayError(500, f"{self._label()} ended {state}/{app.get('finalStatus')} before the kernel "
                                   f"started. YARN says: {_clean(diag)}", reason="Kernel start failed")
            # Waiting for the queue = ACCEPTED with no AM container yet. Once the AM container
            # exists (amHostHttpAddress), the app is starting, however slowly: not a queue problem.
            if state == "ACCEPTED" and not app.get("amHostHttpAddress"):
                accepted_since = accepted_since or loop.time()
                waited = loop.time() - accepted_since
                if waited > self.accepted_timeout:
                    queue = app.get("queue") or self.queue or "default"
                    raise GatewayError(503, f"{self._label()} waited {waited:.0f} s in YARN queue '{queue}' "
                                       f"without getting resources; it was killed. Try later or another queue. "
                                       f"YARN says: {_clean(str(app.get('diagnostics', '')))}",
                                       reason="Queue full")
            else:
                accepted_since = None

    async def _abandon(self, exc: BaseException) -> None:
        """A launch failed or was cancelled: make sure nothing is left running in YARN."""
        if self.app_id is None and self._submitted:
            # spark-submit was stopped (or failed) before it printed the id: the RM may have the
            # application all the same; it carries this kernel's tag.
            try:
                found = await asyncio.shield(self._rm().find_by_tag(f"kernel-{self.kernel_id}"))
            except Exception as find_exc:
                self.log.warning("%s: could not look for an application after a failed launch: %s",
                                 self._label(), find_exc)
                found = None
            if found is not None:
                self.app_id = str(found["id"])
        if self.app_id is None:
            return
        try:
            state = await asyncio.shield(self._rm().kill(self.app_id, wait=20))
            self.log.info("%s: launch abandoned (%s); application now %s", self._label(),
                          type(exc).__name__, state)
        except Exception as kill_exc:
            self.log.error("%s: could not kill the application after a failed launch: %s", self._label(), kill_exc)
            self.app_left_running = True  # its launch record stays, so that a later sweep kills it
        self._exit_code = 1

    # -- running ------------------------------------------------------------------------
    async def poll(self) -> Optional[int]:
        """The kernel's state, as jupyter_client's ``poll``: None while it may still run, an exit
        code once it has ended (then always that code again).

        None while launching, while the application is not in a final state, and while the RM
        cannot be reached (an outage is not an exit). 0 once the application is FINISHED (or was
        never submitted), 1 once it is FAILED or KILLED or the RM no longer knows it. The state comes
        from the registry-wide RM cache (one RM request for every kernel per interval), fresh from
        the RM at most every 0.5 s while a shutdown is in progress."""
        if self._exit_code is not None:
            return self._exit_code
        if self.app_id is None:
            return None if self._launching else 0
        rm = self._rm()
        try:
            if self._stopping and time.monotonic() - self._last_fresh > 0.5:
                self._last_fresh = time.monotonic()
                state: Optional[str] = str((await rm.app(self.app_id)).get("state"))
            else:
                state = await rm.cached_state(self.app_id)
        except RMError as exc:
            self.log.warning("%s: state unknown (%s)", self._label(), exc)
            return None
        if state is None or state in FINAL_STATES:
            self._exit_code = 0 if state == "FINISHED" else 1
            return self._exit_code
        return None

    async def wait(self) -> Optional[int]:
        """Return :meth:`poll`'s exit code once the application has ended: polls every 2 s (0.5 s
        while stopping). Never times out itself: callers bound it (jupyter_client does)."""
        while (code := await self.poll()) is None:  # noqa: ASYNC110 - YARN has no push notification
            await asyncio.sleep(0.5 if self._stopping else 2.0)
        return code

    async def _control(self, request: str, signum: Optional[int] = None, timeout: float = 10.0) -> None:
        if not self.control_port:
            raise ControlRequestError(self.kernel_id, request, "launcher not connected")
        await send_control(self.control_host, self.control_port, self.kernel_id, self.connection_key, request,
                           signum=signum, timeout=timeout)

    async def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` to the kernel process through the launcher's control port (0: a ping
        that only checks the launcher answers). GatewayError 502 if the launcher does not take it."""
        try:
            await self._control("ping" if signum == 0 else "signal", None if signum == 0 else signum)
        except ControlRequestError as exc:
            raise GatewayError(502, f"{self._label()}: could not deliver signal {signum} to the kernel: "
                               f"{exc.reason}", reason="Signal failed") from None

    async def shutdown_requested(self, restart: bool = False) -> None:
        """The kernel was sent a shutdown request: poll the RM more often from now on."""
        self._stopping = True

    async def terminate(self, restart: bool = False) -> None:
        """Ask the launcher, over its control port, to end the kernel cleanly (so the application
        ends FINISHED); if the launcher does not take the request, :meth:`kill`."""
        self._stopping = True
        try:
            await self._control("shutdown", timeout=5.0)
        except ControlRequestError as exc:
            self.log.info("%s: launcher did not take shutdown (%s); killing the application", self._label(),
                          exc.reason)
            await self.kill(restart)

    async def kill(self, restart: bool = False) -> None:
        """Kill the YARN application and wait (up to 30 s) for the RM to report it ended; then
        :meth:`poll` returns its code. Nothing to do before submission or once it has ended. A kill
        the RM refuses is logged and leaves the application running (``poll`` keeps following it)."""
        self._stopping = True
        if self.app_id is None or self._exit_code is not None:
            return
        try:
            state = await self._rm().kill(self.app_id, wait=30)
            self.log.info("%s killed (%s)", self._label(), state)
        except RMError as exc:
            self.log.error("%s: kill failed: %s", self._label(), exc)
            return
        self._exit_code = 0 if state == "FINISHED" else 1

    async def cleanup(self, restart: bool = False) -> None:
        """Forget the application in the RM cache and the control port (the kernel has ended)."""
        if self.app_id:
            self._rm().forget(self.app_id)
        self.control_port = 0

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, self.shutdown_wait)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return recommended

    async def get_provisioner_info(self) -> dict[str, Any]:
        """JSON-safe checkpoint: the base class's, less the connection info (its key is bytes, and
        the session record keeps the connection info itself), plus where the kernel runs."""
        info = await super().get_provisioner_info()
        info.pop("connection_info", None)
        info.update(app_id=self.app_id, owner=self.owner, control_host=self.control_host,
                    control_port=self.control_port)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """Restore a checkpoint (the base class first); the connection info, with the key the
        control port's MAC uses, is set afterwards from the session record."""
        await super().load_provisioner_info({"kernel_id": self.kernel_id, "connection_info": {}, **provisioner_info})
        self.app_id = provisioner_info.get("app_id")
        self.owner = provisioner_info.get("owner", "")
        self.control_host = provisioner_info.get("control_host", "")
        self.control_port = int(provisioner_info.get("control_port") or 0)
        self._exit_code = None


def _fill(arg: str, values: dict[str, str]) -> str:
    for key in ARG_KEYS:
        arg = arg.replace("{" + key + "}", values[key])
    return arg


#: A log4j line of a container's log ("26/12/02 21:28:39 ERROR ApplicationMaster: ..."), with its level.
_LOG_LINE = re.compile(r"^\d{2,4}[/-]\d\d[/-]\d\d[ T]\d\d:\d\d:\d\d\S* (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")


def _clean(text: str) -> str:
    """YARN's diagnostics as a user should see them: no Java stack, at most 8 lines.

    When an AM container exits non-zero, YARN appends the last 4 KiB of its stderr (twice) to
    its summary; what matters there is what the AM logged at ERROR (e.g. "User application
    exited with status 3"), which would otherwise drown among INFO lines and stack frames.
    """
    from ..errors import strip_java_stack

    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if (m := _LOG_LINE.match(ln)) is not None and m.group(1) in ("ERROR", "FATAL")]
    if errors:
        text = "\n".join(dict.fromkeys([lines[0], *errors]))
    return strip_java_stack(text, max_lines=8) or "no diagnostics"

