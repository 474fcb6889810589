"""The gateway as a real daemon process (so tests can kill -9 and restart it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any, Optional

from helpers.gwclient import GatewayClient
from helpers.jupyter_server import free_port
from helpers.waiting import wait_until


class GatewayProcess:
    def __init__(self, workdir: str, config: dict[str, dict[str, Any]], token_file: str,
                 port: Optional[int] = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, f"gateway_{self.port}.py")
        lines = [f"c.YarnGatewayApp.port = {self.port}", "c.YarnGatewayApp.ip = '127.0.0.1'",
                 f"c.TokenAuthenticator.token_file = {token_file!r}", "c.AccessPolicy.admin_users = {'admin'}",
                 # Local kernels are off by default: the tests' users may use them.
                 "c.AccessPolicy.local_kernel_users = {'alice', 'bob', 'admin'}",
                 "c.YarnGatewayApp.default_kernel_name = 'python_local'"]
        for section, values in config.items():
            for key, value in values.items():
                lines.append(f"c.{section}.{key} = {value!r}")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, f"gateway_{self.port}.log")

    async def start(self, timeout: float = 60) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "yarn_gateway", f"--config={self.config_path}"],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        client = GatewayClient(self.url, "admin-token-0123456789")
        proc = self.proc

        async def answers() -> bool:
            assert proc.poll() is None, self.read_log()[-3000:]
            try:
                return (await client.request("GET", "api", timeout=2)).code == 200
            except OSError:
                return False

        await wait_until(answers, timeout, interval=0.1,
                         what=lambda: f"the gateway answers GET {self.url}api; its log:\n{self.read_log()[-3000:]}")

    def read_log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    async def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait, 30)

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 60)

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            await self.terminate()
