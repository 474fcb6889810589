"""Admin commands with Kerberos (real KDC): `kernels list --kerberos` and `check` of a keytab login."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from typing import Any, Optional

import pytest

from helpers.gwclient import GatewayClient
from yarn_gateway.app import builtin_kernelspec_dir

pytestmark = pytest.mark.kerberos


class _Negotiate(GatewayClient):
    def __init__(self, base_url: str, krb: Any, ccache: str) -> None:
        super().__init__(base_url)
        self.krb, self.ccache = krb, ccache

    def headers(self, token: Optional[str] = None) -> dict[str, str]:
        return {"Authorization": self.krb.negotiate_header(self.ccache)}


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}, **extra}


async def _kernels_cli(url: str, ccache: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "yarn_gateway", "kernels", *args, f"--url={url}", "--kerberos",
        "--principal-host=localhost",
        env=_env(KRB5CCNAME=f"FILE:{ccache}"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kerberos_admin_kernels_cli(make_gateway: Any, krb: Any) -> None:
    gw = await make_gateway(krb.gateway_auth_config())
    alice_cc, admin_cc = krb.user_ccache("alice"), krb.user_ccache("admin")
    kid = await _Negotiate(gw.url, krb, alice_cc).start_kernel("python_local")
    rc, out, err = await _kernels_cli(gw.url, admin_cc, "list", "--json")
    assert rc == 0, err
    assert [(m["id"], m["owner"]) for m in json.loads(out)] == [(kid, "alice")]
    rc, out, err = await _kernels_cli(gw.url, alice_cc, "show", kid)
    assert rc == 0 and kid in out, err
    rc, _out, err = await _kernels_cli(gw.url, os.path.join(krb.tmpdir, "no-such-cache"), "list")
    assert rc == 1 and err.startswith("error: authentication failed:"), err
    rc, out, err = await _kernels_cli(gw.url, admin_cc, "kill", kid)
    assert rc == 0 and out.strip() == f"Killed kernel {kid}", err
    assert gw.registry.kernels == {}


def _check(tmp_path: Any, krb: Any, principal: str) -> tuple[int, str]:
    specs = tmp_path / "kernels"
    shutil.copytree(os.path.join(builtin_kernelspec_dir(), "python_local"), specs / "python_local")
    cfg = {**krb.gateway_login_config(principal=principal), **krb.gateway_auth_config()}
    cfg["YarnGatewayApp"].update(kernelspec_dirs=[str(specs)], port=0)
    cfg["DirectoryStore"] = {"directory": str(tmp_path / "sessions")}
    path = tmp_path / "gw.py"
    path.write_text("".join(f"c.{s}.{k} = {v!r}\n" for s, kv in cfg.items() for k, v in kv.items()))
    proc = subprocess.run([sys.executable, "-m", "yarn_gateway", "check", f"--config={path}"], env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout


def test_kerberos_admin_check_keytab_login(tmp_path: Any, krb: Any) -> None:
    rc, out = _check(tmp_path, krb, "yarngw/localhost")
    assert rc == 0, out
    assert f"OK kerberos-login: {krb.princ('yarngw/localhost')} from {krb.gw_keytab}" in out
    assert f"OK http-keytab: {krb.http_keytab}: {krb.princ('HTTP/localhost')}" in out


def test_kerberos_admin_check_wrong_principal(tmp_path: Any, krb: Any) -> None:
    rc, out = _check(tmp_path, krb, "somebody-else/localhost")
    assert rc == 1, out
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL kerberos-login: kinit -kt"), out
