"""The floor of the YARN launch benchmark: the same launch with no gateway.

spark-submit of the same Python launcher with the same options the gateway uses
(``yarn_gateway.yarn.spark_submit.build_argv``: cluster mode, ``--proxy-user``, private
properties file, ``--py-files launcher_protocol.py``), a ``ResponseListener`` in this
process decrypting the launcher's answer (PROTOCOL.md), then a plain jupyter_client
connection straight to the kernel's ZMQ ports: ``wait_for_ready`` and one execute.
Timed from before spark-submit to the first execute_reply and idle state.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
import uuid
from typing import Any, Optional

from jupyter_client.asynchronous import AsyncKernelClient
from yarn_bench_env import USER, ClusterThread

from yarn_gateway.kernels.install import find_launcher_file
from yarn_gateway.provisioners.response_listener import ResponseListener
from yarn_gateway.yarn.spark_submit import (
    SubmitSpec,
    build_argv,
    run_spark_submit,
    spark_defaults_path,
    write_properties,
)

#: Not the gateway's tag: its orphan sweeper must leave floor applications alone.
FLOOR_TAG = "yarn-bench-floor"


class FloorKernel:
    def __init__(self, kid: str, app_id: Optional[str], client: AsyncKernelClient, phases: dict[str, float]) -> None:
        self.kid = kid
        self.app_id = app_id
        self.client = client
        #: ``cluster`` (spark-submit to the launcher's response) and ``after_response`` seconds.
        self.phases = phases

    async def shutdown(self) -> None:
        try:
            self.client.shutdown()  # shutdown_request on control: the launcher ends, so does the app
            await asyncio.sleep(0.2)
        finally:
            self.client.stop_channels()


class Floor:
    def __init__(self, cluster: ClusterThread, mode: str = "lazy") -> None:
        self.cluster = cluster
        self.mode = mode
        self.listener = ResponseListener("127.0.0.1", "0..0", advertise_host="127.0.0.1")
        launcher = find_launcher_file("launch_ipykernel.py")
        proto = find_launcher_file("launcher_protocol.py")
        if launcher is None or proto is None:
            raise RuntimeError("the shipped Python launcher was not found")
        self.launcher, self.proto = launcher, proto

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
        for name in ("KERNEL_LAUNCH_TOKEN", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
            env.pop(name, None)
        env["SPARK_HOME"] = self.cluster.spark_home
        env["HADOOP_CONF_DIR"] = self.cluster.conf_dir
        return env

    async def launch(self, code: str = "1 + 1", timeout: float = 600) -> tuple[FloorKernel, float]:
        """Launch one kernel and run ``code``; returns it and the seconds to the first executed cell."""
        t0 = time.perf_counter()
        kid = str(uuid.uuid4())
        token = secrets.token_urlsafe(32)
        fut = self.listener.register(kid, token)
        spec = SubmitSpec(
            spark_submit=os.path.join(self.cluster.spark_home, "bin", "spark-submit"), proxy_user=USER,
            name=f"jupyter-kernel-{kid}", primary=self.launcher, tags=[FLOOR_TAG, f"kernel-{kid}"],
            conf={"spark.submit.deployMode": "cluster"}, py_files=[self.proto],
            app_args=["--kernel-id", kid, "--response-address", self.listener.address, "--public-key",
                      self.listener.public_key_b64, "--port-range", "0..0",
                      "--spark-context-initialization-mode", self.mode],
        )
        workdir = tempfile.mkdtemp(prefix="yarnbench-floor-")
        try:
            props = os.path.join(workdir, "kernel.properties")
            write_properties(props, {"KERNEL_USERNAME": USER, "KERNEL_LAUNCH_TOKEN": token},
                             spark_defaults_path(self.cluster.spark_home, os.environ))
            result = await run_spark_submit(build_argv(spec, props), self._env(), timeout)
            if result.returncode != 0:
                raise RuntimeError(f"floor spark-submit failed: {result.tail()}")
            info: dict[str, Any] = await asyncio.wait_for(fut, timeout)
            t_response = time.perf_counter()
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
        await _ready(client, timeout)
        status = await _execute(client, code, timeout)
        elapsed = time.perf_counter() - t0
        if status != "ok":
            raise RuntimeError(f"floor kernel {kid}: first cell {status}")
        phases = {"cluster": t_response - t0, "after_response": time.perf_counter() - t_response}
        return FloorKernel(kid, result.app_id, client, phases), elapsed


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
