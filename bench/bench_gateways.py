"""Gateway targets: a gateway subprocess driven over REST + websocket.

One client implementation serves both gateways: tornado's HTTP client and
``websocket_connect`` speaking the legacy JSON text protocol, the way jupyter_server's
GatewayClient does. TCP_NODELAY is set on the client side of every websocket so that only
the server side differs between gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import psutil
from bench_common import (
    KERNEL_NAME,
    KERNEL_USERNAME,
    CellResult,
    KernelHandle,
    StreamSink,
    Target,
    TargetSkipped,
    free_port,
)
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

#: Large enough for any single kernel message the bench produces.
MAX_WS_MESSAGE = 256 * 1024 * 1024


def connection_file_of(pid: int) -> Optional[str]:
    """The connection file of the one ipykernel running below process ``pid`` (None if
    there is not exactly one)."""
    files = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            argv = proc.cmdline()
        except psutil.Error:
            continue
        if "ipykernel_launcher" in argv and "-f" in argv:
            files.append(argv[argv.index("-f") + 1])
    return files[0] if len(files) == 1 else None


class ManagedProcess:
    """A gateway subprocess whose whole process tree is stopped on :meth:`stop`."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.cmd, self.env, self.log_path = cmd, env, log_path
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.seen: dict[int, psutil.Process] = {}

    async def start(self) -> None:
        log = self.log_path.open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.cmd, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def remember_children(self) -> None:
        """Record the current descendants (kernels) so stop() can reap them even if the
        gateway dies first and they get reparented."""
        if not self.alive():
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def log_tail(self, n: int = 15) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        return ""

    async def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        self.remember_children()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        # Kernels the gateway failed to stop: only processes recorded as its descendants.
        for child in self.seen.values():
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        self.seen.clear()


class GatewayKernel(KernelHandle):
    """A kernel behind a gateway, reached through one websocket."""

    def __init__(self, target: GatewayTarget, kernel_id: str) -> None:
        self.target, self.kernel_id = target, kernel_id
        self.ws: Optional[WebSocketClientConnection] = None
        self.session = uuid.uuid4().hex

    async def connect(self) -> None:
        if self.ws is not None:
            return
        t = self.target
        url = f"{t.ws_base}/api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        req = HTTPRequest(url, headers=t.headers, connect_timeout=120, request_timeout=120)
        self.ws = await websocket_connect(req, max_message_size=MAX_WS_MESSAGE, ping_interval=None)
        if self.ws.stream is not None:
            self.ws.stream.set_nodelay(True)

    async def run_cell(
        self, code: str, on_stream: Optional[StreamSink] = None, wait_idle: bool = True
    ) -> CellResult:
        await self.connect()
        ws = self.ws
        assert ws is not None
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id, "username": KERNEL_USERNAME, "session": self.session,
                "msg_type": "execute_request", "version": "5.3", "date": "",
            },
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {
                "code": code, "silent": False, "store_history": False, "user_expressions": {},
                "allow_stdin": False, "stop_on_error": True,
            },
        }
        await ws.write_message(json.dumps(msg))
        status: Optional[str] = None
        t_reply = 0.0
        t_idle: Optional[float] = None
        n_msgs = n_stream = 0
        while status is None or (wait_idle and t_idle is None):
            raw = await ws.read_message()
            if raw is None:
                raise ConnectionError(f"websocket of kernel {self.kernel_id} closed: {ws.close_reason}")
            if isinstance(raw, bytes):
                continue  # only messages with buffers are binary in the legacy protocol
            m = json.loads(raw)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            n_msgs += 1
            msg_type = m["msg_type"]
            if msg_type == "stream":
                n_stream += 1
                if on_stream is not None:
                    on_stream(m["content"]["text"])
            elif msg_type == "execute_reply":
                status, t_reply = m["content"]["status"], time.perf_counter()
            elif msg_type == "status" and m["content"]["execution_state"] == "idle":
                t_idle = time.perf_counter()
        return CellResult(status, t_reply, t_idle, n_msgs, n_stream)

    async def disconnect(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    async def shutdown(self) -> None:
        await self.disconnect()
        with contextlib.suppress(Exception):
            await self.target.delete_kernel(self.kernel_id)


class GatewayTarget(Target):
    """A gateway started as a subprocess on 127.0.0.1 with a random token."""

    start_timeout = 60.0

    def __init__(self, workdir: Path, kernels_dir: Path) -> None:
        self.workdir, self.kernels_dir = workdir, kernels_dir
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {self.token}"}
        self.http = AsyncHTTPClient()
        self.process: Optional[ManagedProcess] = None
        self.kernel_ids: list[str] = []

    def command(self) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the gateway process."""
        raise NotImplementedError

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["JUPYTER_RUNTIME_DIR"] = str(self.workdir / "runtime")
        env["JUPYTER_DATA_DIR"] = str(self.workdir / "data")
        env["JUPYTER_CONFIG_DIR"] = str(self.workdir / "config")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = self.command()
        if not Path(cmd[0]).exists():
            raise TargetSkipped(f"{cmd[0]} does not exist")
        self.process = ManagedProcess(cmd, env, self.workdir / f"{self.key}.log")
        await self.process.start()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self.process.alive():
                raise TargetSkipped(f"{self.label} exited at startup:\n{self.process.log_tail()}")
            with contextlib.suppress(OSError, HTTPClientError):
                await self.request("GET", "/api", timeout=2)
                return
            if time.monotonic() > deadline:
                raise TargetSkipped(f"{self.label} not answering /api:\n{self.process.log_tail()}")
            await asyncio.sleep(0.1)

    async def request(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        resp = await self.http.fetch(
            HTTPRequest(self.base + path, method=method, headers=headers, body=data,
                        request_timeout=timeout, connect_timeout=timeout)
        )
        return json.loads(resp.body) if resp.body else None

    async def create_kernel(self) -> KernelHandle:
        model = await self.request(
            "POST", "/api/kernels", {"name": KERNEL_NAME, "env": {"KERNEL_USERNAME": KERNEL_USERNAME}}
        )
        self.kernel_ids.append(model["id"])
        if self.process is not None:
            self.process.remember_children()
        return GatewayKernel(self, model["id"])

    async def delete_kernel(self, kernel_id: str) -> None:
        if kernel_id in self.kernel_ids:
            self.kernel_ids.remove(kernel_id)
        await self.request("DELETE", f"/api/kernels/{kernel_id}")

    def server_pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def connection_file(self, kernel: KernelHandle) -> Optional[str]:
        """The connection file of the gateway's kernel, when it is the only one running."""
        return connection_file_of(self.process.pid) if self.process is not None and self.process.alive() else None

    async def teardown(self) -> None:
        if self.process is not None and self.process.alive():
            self.process.remember_children()
            for kernel_id in list(self.kernel_ids):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.delete_kernel(kernel_id), 20)
        if self.process is not None:
            await self.process.stop()


class EnterpriseGatewayTarget(GatewayTarget):
    """Jupyter Enterprise Gateway 3.3.0 from its own virtualenv (``make bench-venvs``)."""

    key = "eg"
    label = "Enterprise Gateway 3.3.0"

    def __init__(self, workdir: Path, kernels_dir: Path, venv: Path) -> None:
        super().__init__(workdir, kernels_dir)
        self.venv = venv

    def command(self) -> tuple[list[str], dict[str, str]]:
        exe = self.venv / "bin" / "jupyter-enterprisegateway"
        if not exe.exists():
            raise TargetSkipped(f"{exe} missing: run `make bench-venvs`")
        env = self.base_env()
        # kernels_dir is <prefix>/share/jupyter/kernels; JUPYTER_PATH wants <prefix>/share/jupyter.
        env["JUPYTER_PATH"] = str(self.kernels_dir.parent)
        env["EG_AUTH_TOKEN"] = self.token
        cmd = [
            str(exe), "--ip=127.0.0.1", f"--port={self.port}",
            "--EnterpriseGatewayApp.port_retries=0",
            "--EnterpriseGatewayApp.list_kernels=True",
            f"--EnterpriseGatewayApp.default_kernel_name={KERNEL_NAME}",
            "--KernelSpecManager.ensure_native_kernel=False",
        ]
        return cmd, env


class YarnGatewayTarget(GatewayTarget):
    """This project's gateway, from the bench interpreter's virtualenv.

    ``curve``: the gateway runs with ``KernelManager.transport_encryption = "required"`` and
    ``kernels_dir`` holds the ipykernel 7 kernelspec declaring ``supported_encryption``: its
    relay then reaches the kernel through libzmq's CurveZMQ (``relay/zmq_channel.py``)."""

    key = "yarn-gateway"
    label = "yarn-gateway"

    def __init__(self, workdir: Path, kernels_dir: Path, exe: Path, curve: bool = False) -> None:
        super().__init__(workdir, kernels_dir)
        self.exe = exe
        self.curve = curve
        if curve:
            self.key, self.label = "yarn-gateway-curve", "yarn-gateway, CurveZMQ"

    def command(self) -> tuple[list[str], dict[str, str]]:
        if not self.exe.exists():
            raise TargetSkipped(f"{self.exe} missing (is yarn-gateway installed in this venv?)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "yarn_gateway_config.py"
        config.write_text(
            f"c.YarnGatewayApp.kernelspec_dirs = [{str(self.kernels_dir)!r}]\n"
            f"c.YarnGatewayApp.default_kernel_name = {KERNEL_NAME!r}\n"
            f"c.TokenAuthenticator.shared_token_user = {KERNEL_USERNAME!r}\n"
            f"c.AccessPolicy.local_kernel_users = {{{KERNEL_USERNAME!r}}}\n"  # bench_python is a local kernelspec
            + ('c.KernelManager.transport_encryption = "required"\n' if self.curve else "")
        )
        cmd = [
            str(self.exe), "--ip=127.0.0.1", f"--port={self.port}", f"--token={self.token}",
            f"--config={config}",
        ]
        return cmd, self.base_env()
