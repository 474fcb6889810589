"""The floor of the YARN launch benchmark: the same launch with no gateway.

For each language, spark-submit of the launcher the gateway's kernelspec names, with the
options the gateway uses: the kernelspec's provisioner config (launcher, ``--class``,
``--py-files``/``--jars``/``--files``, ``spark_conf``), the same kernel parameters under
the same bounds (driver and executor sizes), ``yarn_gateway.yarn.spark_submit.build_argv``
(cluster mode, ``--proxy-user``, a private properties file that starts from
``<spark_conf_dir>/spark-defaults.conf``) and the same submit environment. A
``ResponseListener`` in this process decrypts the launcher's callback (PROTOCOL.md), then a
plain jupyter_client connection goes straight to the kernel's ZMQ ports: kernel_info until
iopub is live, then the first cell. Timed from before spark-submit; the phases are
recorded: spark-submit printed the application id, spark-submit exited, the callback
arrived, connected, first cell done, and (polled from the RM every 0.1 s, beside the
launch) the application became RUNNING.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from typing import Any, Optional

from jupyter_client.asynchronous import AsyncKernelClient
from yarn_bench_env import SPECS, USER, YarnCluster, log

from yarn_gateway.app import builtin_kernelspec_dir
from yarn_gateway.kernels.install import find_launcher_file
from yarn_gateway.kernels.params import KernelParameters
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway.yarn.spark_submit import SubmitSpec, build_argv, run_spark_submit, write_properties

#: Not the gateway's tag: its orphan sweeper must leave floor applications alone.
FLOOR_TAG = "yarn-bench-floor"
LAUNCH_TIMEOUT = 600.0


class FloorKernel:
    def __init__(self, kid: str, app_id: Optional[str], client: AsyncKernelClient, phases: dict[str, float],
                 running: Optional[asyncio.Task[None]]) -> None:
        self.kid = kid
        self.app_id = app_id
        self.client = client
        #: Seconds from before spark-submit: app_id, submit_exit, callback, connected, first_cell, running.
        self.phases = phases
        self._running = running

    async def wait_running(self, timeout: float = 120) -> None:
        """Until the RM said RUNNING (lazy mode: often after the first cell) or gave up."""
        if self._running is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._running), timeout)
            except asyncio.TimeoutError:
                self._running.cancel()

    async def shutdown(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
        try:
            self.client.shutdown()  # shutdown_request on control: the launcher ends, so does the app
            await asyncio.sleep(0.2)
        finally:
            self.client.stop_channels()


class Floor:
    def __init__(self, cluster: YarnCluster, spark_home: str, bounds: dict[str, Any], mode: str = "lazy") -> None:
        self.cluster = cluster
        self.spark_home = spark_home
        self.mode = mode
        self.params = KernelParameters(bounds=bounds)
        self.listener = ResponseListener("127.0.0.1", "0..0", advertise_host="127.0.0.1")

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()

    def _env(self) -> dict[str, str]:
        """The gateway's submit environment (YarnProvisioner._submit_env)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
        for name in ("KERNEL_LAUNCH_TOKEN", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
            env.pop(name, None)
        env["SPARK_HOME"] = self.spark_home
        env["HADOOP_CONF_DIR"] = self.cluster.conf_dir
        env["SPARK_CONF_DIR"] = self.cluster.spark_conf_dir
        return env

    def submit_spec(self, lang: str, kid: str) -> tuple[SubmitSpec, list[str]]:
        """The SubmitSpec the gateway builds for kernelspec ``SPECS[lang]`` (and its argv template)."""
        name = SPECS[lang]
        spec_dir = os.path.join(builtin_kernelspec_dir(), name)
        with open(os.path.join(spec_dir, "kernel.json")) as f:
            kernelspec: dict[str, Any] = json.load(f)
        cfg = kernelspec["metadata"]["kernel_provisioner"]["config"]

        def resolve(path: str) -> str:
            for cand in (path if os.path.isabs(path) else os.path.join(spec_dir, path), find_launcher_file(path)):
                if cand and os.path.exists(cand):
                    return cand
            raise RuntimeError(f"{name}: launcher file {path!r} not found (make scala-launcher for Scala)")

        chosen = self.params.resolve(name, kernelspec["metadata"], {})
        spec = SubmitSpec(
            spark_submit=os.path.join(self.spark_home, "bin", "spark-submit"), proxy_user=USER,
            name=f"jupyter-kernel-{kid}", primary=resolve(cfg["launcher"]), queue=chosen.queue or cfg.get("queue"),
            tags=[FLOOR_TAG, f"kernel-{kid}"],
            conf={**{str(k): str(v) for k, v in cfg.get("spark_conf", {}).items()}, **chosen.conf},
            spark_opts=list(cfg.get("spark_opts", [])), main_class=cfg.get("launcher_class") or None,
            py_files=[resolve(p) for p in cfg.get("py_files", [])], jars=[resolve(p) for p in cfg.get("jars", [])],
            files=[resolve(p) for p in cfg.get("files", [])],
        )
        return spec, list(kernelspec["argv"])

    async def _follow(self, app_id: str, t0: float, phases: dict[str, float]) -> None:
        """Poll the RM until the application is RUNNING (or ended): phases["running"]."""
        while True:
            try:
                app = await asyncio.to_thread(self.cluster.app_json, app_id)
            except Exception:  # not known yet right after the submit, or a slow answer
                app = {}
            state = app.get("state")
            if state == "ACCEPTED":
                phases.setdefault("accepted", time.perf_counter() - t0)
            if state == "RUNNING":
                phases["running"] = time.perf_counter() - t0
                return
            if state in ("FINISHED", "FAILED", "KILLED"):
                log(f"floor {app_id}: {state} before RUNNING")
                return
            await asyncio.sleep(0.1)

    async def launch(self, lang: str, code: str, timeout: float = LAUNCH_TIMEOUT) -> tuple[FloorKernel, float]:
        """Launch one kernel and run ``code``; returns it and the seconds to the first executed cell."""
        t0 = time.perf_counter()
        kid = str(uuid.uuid4())
        token = secrets.token_urlsafe(32)
        fut = self.listener.register(kid, token)
        spec, template = self.submit_spec(lang, kid)
        values = {"kernel_id": kid, "response_address": self.listener.address,
                  "public_key": self.listener.public_key_b64, "port_range": "0..0",
                  "spark_context_initialization_mode": self.mode}
        spec.app_args = [_fill(a, values) for a in template]
        phases: dict[str, float] = {}
        follow: list[asyncio.Task[None]] = []

        def on_app_id(app_id: str) -> None:
            phases["app_id"] = time.perf_counter() - t0
            follow.append(asyncio.ensure_future(self._follow(app_id, t0, phases)))

        workdir = tempfile.mkdtemp(prefix="yarnbench-floor-")
        try:
            props = os.path.join(workdir, "kernel.properties")
            write_properties(props, {"KERNEL_USERNAME": USER, "KERNEL_LAUNCH_TIMEOUT": f"{timeout:g}",
                                     "KERNEL_LAUNCH_TOKEN": token},
                             os.path.join(self.cluster.spark_conf_dir, "spark-defaults.conf"))
            result = await run_spark_submit(build_argv(spec, props), self._env(), timeout, on_app_id=on_app_id)
            phases["submit_exit"] = time.perf_counter() - t0
            if result.returncode != 0:
                raise RuntimeError(f"floor spark-submit failed: {result.tail()}")
            info: dict[str, Any] = await asyncio.wait_for(fut, timeout)
            phases["callback"] = time.perf_counter() - t0
        except BaseException:
            for task in follow:
                task.cancel()
            raise
        finally:
            self.listener.unregister(kid)
            shutil.rmtree(workdir, ignore_errors=True)
        conn = info["connection_info"]
        client = AsyncKernelClient()
        ports: dict[str, Any] = {p: int(conn[p]) for p in ("shell_port", "iopub_port", "stdin_port", "control_port",
                                                            "hb_port")}
        info_dict: dict[str, Any] = {"ip": conn["ip"], "transport": conn.get("transport", "tcp"),
                                     "key": str(conn["key"]).encode(),
                                     "signature_scheme": conn.get("signature_scheme", "hmac-sha256"), **ports}
        client.load_connection_info(info_dict)  # type: ignore[arg-type]
        client.start_channels()
        fk = FloorKernel(kid, result.app_id, client, phases, follow[0] if follow else None)
        try:
            await _ready(client, timeout)
            phases["connected"] = time.perf_counter() - t0
            status = await _execute(client, code, timeout)
        except BaseException:
            await fk.shutdown()
            raise
        elapsed = time.perf_counter() - t0
        phases["first_cell"] = elapsed
        if status != "ok":
            await fk.shutdown()
            raise RuntimeError(f"floor kernel {kid} ({lang}): first cell {status}")
        return fk, elapsed


def _fill(arg: str, values: dict[str, str]) -> str:
    """The gateway's kernelspec argv substitution (YarnProvisioner)."""
    for key, value in values.items():
        arg = arg.replace("{" + key + "}", value)
    return arg


async def _reply_and_idle(client: AsyncKernelClient, msg_id: str, timeout: float,
                          iopub_wait: Optional[float] = None) -> tuple[str, bool]:
    """The shell reply's status for ``msg_id``, and whether its idle state arrived on iopub
    (waiting at most ``iopub_wait`` for it, or ``timeout`` when None)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await client.get_shell_msg(timeout=max(0.01, deadline - loop.time()))
        if msg["parent_header"].get("msg_id") == msg_id:
            status = str(msg["content"].get("status"))
            break
    idle_deadline = loop.time() + (iopub_wait if iopub_wait is not None else timeout)
    while loop.time() < idle_deadline:
        try:
            m = await client.get_iopub_msg(timeout=max(0.001, idle_deadline - loop.time()))
        except Exception:  # queue.Empty: no idle within the wait
            break
        if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"):
            return status, True
    return status, False


async def _ready(client: AsyncKernelClient, timeout: float) -> None:
    """kernel_info until its idle state is seen on iopub too (ZMQ's slow-joiner problem),
    without jupyter_client's fixed iopub flush delay of wait_for_ready()."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        _status, seen = await _reply_and_idle(client, client.kernel_info(), timeout, iopub_wait=0.1)
        if seen:
            return
    raise TimeoutError("floor kernel: iopub never connected")


async def _execute(client: AsyncKernelClient, code: str, timeout: float) -> str:
    status, _seen = await _reply_and_idle(client, client.execute(code), timeout)
    return status
