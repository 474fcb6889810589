"""`make run` (yarn_gateway.devrun): minicluster + gateway, YARN kernels for a newcomer, Ctrl-C stops both."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from typing import Any

import psutil
import pytest

from helpers.gwclient import GatewayClient
from helpers.jupyter_server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]


async def test_make_run_serves_yarn_kernels_and_stops_cleanly(tmp_path: Any) -> None:
    port = free_port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "SPARK_HOME", "YARN_GATEWAY_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "yarn_gateway.devrun", f"--state-dir={state}", f"--port={port}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("listening on" in ln for ln in lines):
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 90)
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert f"--gateway-url=http://127.0.0.1:{port}" in text
        token = (state / "token").read_text().strip()
        assert oct((state / "token").stat().st_mode & 0o777) == "0o600"
        m = re.search(r"minicluster ResourceManager: (\S+)", text)
        assert m, text
        client = GatewayClient(f"http://127.0.0.1:{port}/", token)
        specs = (await client.request("GET", "api/kernelspecs")).body
        assert specs["default"] == "spark_python_yarn_cluster"
        kid = await client.start_kernel("spark_python_yarn_cluster")
        ws = await client.connect(kid)
        res = await ws.execute("sc.sparkUser()", timeout=120)
        assert res.text.strip("'") == psutil.Process().username()
        ws.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, out
    assert "Stopped" in out
    # Nothing left behind: no container process of the minicluster survives.
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(state) in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, [p.info["cmdline"] for p in leftovers]
