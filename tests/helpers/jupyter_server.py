"""Run a real jupyter_server (2.x) subprocess as a desktop would: --gateway-url=<our gateway>."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Optional

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from helpers.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterServer:
    """``jupyter server --gateway-url=...`` on loopback with its own token and private dirs."""

    def __init__(self, gateway_url: str, auth_token: str, workdir: str, *, kernel_username: Optional[str] = None,
                 extra_args: Optional[list[str]] = None, extra_env: Optional[Mapping[str, str]] = None) -> None:
        self.port = free_port()
        self.token = "desktop-token"
        self.url = f"http://127.0.0.1:{self.port}/"
        self.workdir = workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "KERNEL_"))}
        env.update(JUPYTER_CONFIG_DIR=os.path.join(workdir, "config"), JUPYTER_DATA_DIR=os.path.join(workdir, "data"),
                   JUPYTER_RUNTIME_DIR=os.path.join(workdir, "runtime"), KERNEL_LAUNCH_TIMEOUT="120")
        if kernel_username:
            env["KERNEL_USERNAME"] = kernel_username
        env.update(extra_env or {})
        self.env = env
        self.args = [
            sys.executable, "-m", "jupyter_server", f"--gateway-url={gateway_url}",
            f"--GatewayClient.auth_token={auth_token}", f"--IdentityProvider.token={self.token}",
            "--ip=127.0.0.1", f"--port={self.port}", "--no-browser", "--allow-root",
            f"--ServerApp.root_dir={workdir}", "--GatewayClient.request_timeout=180",
            *(extra_args or []),
        ]
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = os.path.join(workdir, "jupyter_server.log")

    async def start(self, timeout: float = 60) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        self._log = log
        proc = self.proc

        async def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited: {self.read_log()[-3000:]}")
            try:
                r = await AsyncHTTPClient().fetch(HTTPRequest(self.url + "api/status",
                                                             headers={"Authorization": f"token {self.token}"},
                                                             request_timeout=2), raise_error=False)
                return r.code == 200
            except OSError:
                return False

        await wait_until(answers, timeout, interval=0.2, what=lambda: (
            f"jupyter server answers {self.url}api/status; its log:\n{self.read_log()[-3000:]}"))

    def read_log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            proc = self.proc
            try:
                await wait_until(lambda: proc.poll() is not None, 5, "jupyter server exited on SIGTERM", interval=0.1)
            except AssertionError:
                proc.kill()
        if getattr(self, "_log", None):
            self._log.close()
