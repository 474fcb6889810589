"""The daemon as administrators run it: CLI, config file, signals, TLS, authenticator choices."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets.config import Config

from helpers.gwclient import GatewayClient
from helpers.jupyter_server import free_port
from helpers.waiting import wait_until
from yarn_gateway.app import YarnGatewayApp


def _run(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yarn_gateway", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_help_lists_options() -> None:
    out = _run("--help").stdout
    for opt in ("--ip", "--port", "--config", "--token", "--certfile", "--keyfile", "generate-config"):
        assert opt in out


def test_generate_config_writes_a_loadable_commented_file(tmp_path: Any) -> None:
    path = tmp_path / "yarn_gateway_config.py"
    r = _run("generate-config", f"--output={path}")
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    assert "# c.YarnGatewayApp.port = 8888" in text and "c.KernelRegistry.launch_timeout" in text
    assert "c.TokenAuthenticator.token_file" in text and "c.AccessPolicy.admin_users" in text
    # Uncomment two settings and load it back.
    text = text.replace("# c.YarnGatewayApp.port = 8888", "c.YarnGatewayApp.port = 9999")
    text = text.replace("# c.KernelRegistry.launch_timeout = 60.0", "c.KernelRegistry.launch_timeout = 7.5")
    path.write_text(text)
    app = YarnGatewayApp()
    app.initialize([f"--config={path}"])
    assert app.port == 9999 and app.config.KernelRegistry.launch_timeout == 7.5
    # The command line wins over the file; refuses to overwrite without --force.
    app2 = YarnGatewayApp()
    app2.initialize([f"--config={path}", "--port=1234"])
    assert app2.port == 1234
    assert _run("generate-config", f"--output={path}").returncode != 0
    assert _run("generate-config", f"--output={path}", "--force").returncode == 0


async def _wait_http(url: str, headers: dict[str, str], proc: subprocess.Popen[Any], **kw: Any) -> int:
    async def answer() -> int | None:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            r = await AsyncHTTPClient().fetch(HTTPRequest(url, headers=headers, request_timeout=2, **kw),
                                              raise_error=False)
        except OSError:
            return None
        return r.code if r.code != 599 else None

    code: int = await wait_until(answer, 10, f"the gateway answered {url}", interval=0.1)
    return code


async def test_token_from_environment_and_graceful_sigterm(tmp_path: Any) -> None:
    port = free_port()
    env = dict(os.environ, YARN_GATEWAY_TOKEN="env-token-123")
    pid_file = tmp_path / "yarn-gateway.pid"
    proc = subprocess.Popen([sys.executable, "-m", "yarn_gateway", f"--port={port}", f"--pid-file={pid_file}",
                             "--AccessPolicy.local_kernel_users=*"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert await _wait_http(url + "api", {"Authorization": "token env-token-123"}, proc) == 200
        c = GatewayClient(url, "env-token-123")
        assert (await c.request("GET", "api", token="nope")).code == 401
        kid = await c.start_kernel()
        assert pid_file.read_text().strip() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, out
        assert "Received SIGTERM" in out and "Stopped" in out and f"Kernel {kid} shut down" in out
        assert "env-token-123" not in out  # the token is never logged
        assert not pid_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_none_authenticator_refused_off_loopback() -> None:
    r = _run("--authenticator=none", "--ip=0.0.0.0", "--port=0")
    assert r.returncode != 0
    assert "only allowed when listening on loopback" in (r.stdout + r.stderr)


def test_token_authenticator_requires_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "YARN_GATEWAY_TOKEN"}
    r = _run("--port=0", env=env)
    assert r.returncode != 0 and "token authentication needs" in (r.stdout + r.stderr)


async def test_none_authenticator_on_loopback(make_gateway: Any) -> None:
    gw = await make_gateway({"YarnGatewayApp": {"authenticator_class": "none"}, "NoneAuthenticator": {"user": "dev"}})
    r = await GatewayClient(gw.url).request("GET", "api/kernels")
    assert r.code == 200 and r.body == []


async def test_token_file_changes_apply_without_restart(make_gateway: Any, token_file: str) -> None:
    gw = await make_gateway()
    carol = GatewayClient(gw.url, "carol-token-xyz")
    assert (await carol.request("GET", "api/kernels")).code == 401
    import hashlib

    with open(token_file, "a") as f:  # hashed form works too
        f.write(f"carol sha256:{hashlib.sha256(b'carol-token-xyz').hexdigest()}\n")
    os.utime(token_file, (1, 1))  # a different mtime than before, even within one second
    assert (await carol.request("GET", "api/kernels")).code == 200
    os.chmod(token_file, 0o666)
    os.utime(token_file, (2, 2))
    assert (await carol.request("GET", "api/kernels")).code == 401  # refuses a world-writable file


async def test_tls(tmp_path: Any, token_file: str) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    c = Config()
    c.YarnGatewayApp.port = 0
    c.YarnGatewayApp.certfile = str(cert)
    c.YarnGatewayApp.keyfile = str(key)
    c.TokenAuthenticator.token_file = token_file
    app = YarnGatewayApp(config=c)
    port = await app.start_server()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        r = await AsyncHTTPClient().fetch(HTTPRequest(f"https://127.0.0.1:{port}/api", ssl_options=ctx,
                                                      headers={"Authorization": "token alice-token-0123456789"}))
        assert r.code == 200
        with pytest.raises(ConnectionResetError):  # plain HTTP is not served on the TLS port
            await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/api", request_timeout=5)
    finally:
        await app.stop_server()


async def test_install_kernelspecs_is_self_contained(tmp_path: Any, make_gateway: Any) -> None:
    import json

    dest = tmp_path / "kernels"
    r = _run("install-kernelspecs", f"--dest={dest}", "--python=/opt/cluster/python3", "--queue=analytics")
    assert r.returncode == 0, r.stderr
    spec_dir = dest / "spark_python_yarn_cluster"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    config = spec["metadata"]["kernel_provisioner"]["config"]
    assert config["launcher"] == str(spec_dir / "launch_ipykernel.py")
    assert config["py_files"] == [str(spec_dir / "launcher_protocol.py")]
    assert (spec_dir / "launch_ipykernel.py").is_file() and (spec_dir / "launcher_protocol.py").is_file()
    assert config["driver_env"]["PYSPARK_PYTHON"] == "/opt/cluster/python3" and config["queue"] == "analytics"
    assert _run("install-kernelspecs", f"--dest={dest}").returncode != 0  # refuses to overwrite
    assert _run("install-kernelspecs", f"--dest={dest}", "--force").returncode == 0
    gw = await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [str(dest)]}})
    specs = (await gw.client().request("GET", "api/kernelspecs")).body["kernelspecs"]
    from yarn_gateway.kernels.install import YARN_SPECS

    assert sorted(specs) == sorted(n.lower() for n in YARN_SPECS)  # jupyter_client lower-cases names
    assert specs["spark_python_yarn_cluster"]["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == (
        "yarn-provisioner")
