"""SPNEGO authentication of users, the signed cookie, impersonation and kernelspec ACLs (real KDC)."""

from __future__ import annotations

import time
from typing import Any, Optional

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from helpers.gwclient import GatewayClient
from yarn_gateway.auth.kerberos import KerberosAuthenticator

pytestmark = pytest.mark.kerberos

SECRET = "ab" * 32


class NegotiateClient(GatewayClient):
    """A test client that sends a fresh SPNEGO token (or a fixed cookie) with every request."""

    def __init__(self, base_url: str, krb: Any, ccache: Optional[str], cookie: Optional[str] = None) -> None:
        super().__init__(base_url)
        self.krb, self.ccache, self.cookie = krb, ccache, cookie

    def headers(self, token: Optional[str] = None) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.cookie:
            h["Cookie"] = f"yarn_gateway_auth={self.cookie}"
        elif self.ccache:
            h["Authorization"] = self.krb.negotiate_header(self.ccache)
        return h


async def _gateway(make_gateway: Any, krb: Any, **extra: Any) -> Any:
    cfg = krb.gateway_auth_config(cookie_secret=SECRET)
    for section, values in extra.items():
        cfg.setdefault(section, {}).update(values)
    gw = await make_gateway(cfg)
    gw.url = f"http://localhost:{gw.port}/"
    return gw


async def test_spnego_then_cookie_and_401s(make_gateway: Any, krb: Any) -> None:
    gw = await _gateway(make_gateway, krb)
    alice = NegotiateClient(gw.url, krb, krb.user_ccache("alice"))
    r = await alice.request("GET", "api/kernelspecs")
    assert r.code == 200, r.body
    www = r.headers.get("WWW-Authenticate", "")
    assert www.startswith("Negotiate ") and len(www) > 20  # mutual authentication token
    set_cookie = r.headers["Set-Cookie"]
    assert "yarn_gateway_auth=" in set_cookie and "HttpOnly" in set_cookie and "Secure" not in set_cookie
    cookie = set_cookie.split(";", 1)[0].split("=", 1)[1]
    by_cookie = NegotiateClient(gw.url, krb, None, cookie=cookie)
    kid = await by_cookie.start_kernel("python_local")
    assert gw.registry.kernels[kid].owner == "alice"
    ws = await by_cookie.connect(kid)  # the websocket upgrade accepts the cookie too
    assert (await ws.execute("1+1")).text == "2"
    ws.close()

    # No credentials: 401 + Negotiate challenge on every endpoint, and on the websocket.
    anon = NegotiateClient(gw.url, krb, None)
    for method, path in [("GET", "api"), ("GET", "api/kernelspecs"), ("GET", "api/kernelspecs/python_local"),
                         ("GET", "api/kernels"), ("POST", "api/kernels"), ("GET", f"api/kernels/{kid}"),
                         ("DELETE", f"api/kernels/{kid}"), ("POST", f"api/kernels/{kid}/interrupt"),
                         ("GET", "api/health"), ("GET", "kernelspecs/python_local/logo-64x64.png"),
                         ("GET", "no/such/path")]:
        r = await anon.request(method, path)
        assert r.code == 401, (method, path, r.code)
        assert r.headers["WWW-Authenticate"] == "Negotiate"
    with pytest.raises(HTTPClientError) as err:
        await websocket_connect(HTTPRequest(gw.url.replace("http", "ws") + f"api/kernels/{kid}/channels"))
    assert err.value.code == 401

    # A forged cookie (alice's MAC, admin's name), an expired one, a garbage token: 401.
    signer = KerberosAuthenticator(cookie_secret=SECRET, keytab=krb.http_keytab)
    _user, expiry, mac = cookie.split(".")
    forged = ".".join([signer.make_cookie("admin").split(".")[0], expiry, mac])
    expired = signer.make_cookie("alice", now=time.time() - 2 * signer.cookie_max_age)
    assert signer.read_cookie(cookie) == "alice"
    for bad in (forged, expired, cookie[:-4] + "AAAA"):
        r = await NegotiateClient(gw.url, krb, None, cookie=bad).request("GET", "api/kernels")
        assert r.code == 401, bad
    with pytest.raises(HTTPClientError) as err:
        await websocket_connect(HTTPRequest(gw.url.replace("http", "ws") + f"api/kernels/{kid}/channels",
                                            headers={"Cookie": f"yarn_gateway_auth={forged}"}))
    assert err.value.code == 401
    r = await anon.request("GET", "api/kernels", raw=None)
    bogus = GatewayClient(gw.url)
    bogus.headers = lambda token=None: {"Authorization": "Negotiate AAAAAAAA"}  # type: ignore[method-assign]
    assert (await bogus.request("GET", "api/kernels")).code == 401
    assert (await by_cookie.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_impersonation_policy(make_gateway: Any, krb: Any) -> None:
    gw = await _gateway(make_gateway, krb)
    alice = NegotiateClient(gw.url, krb, krb.user_ccache("alice"))
    r = await alice.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_USERNAME": "bob"}})
    assert r.code == 403 and "may not start a kernel as 'bob'" in r.body["message"]
    assert not gw.registry.kernels
    admin = NegotiateClient(gw.url, krb, krb.user_ccache("admin"))
    kid = await admin.start_kernel("python_local", env={"KERNEL_USERNAME": "bob"})
    assert gw.registry.kernels[kid].owner == "bob"
    assert (await alice.request("GET", f"api/kernels/{kid}")).code == 404  # not alice's
    bob = NegotiateClient(gw.url, krb, krb.user_ccache("bob"))
    assert (await bob.request("GET", f"api/kernels/{kid}")).code == 200
    assert (await admin.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_kernelspec_acls_users_and_groups(make_gateway: Any, krb: Any) -> None:
    acls = {"python_local": {"allow_users": ["alice"], "allow_groups": ["analysts"], "deny_groups": ["contractors"]}}
    gw = await _gateway(make_gateway, krb, AccessPolicy={
        "kernelspec_acls": acls, "os_groups": False, "local_kernel_users": {"alice", "bob", "carol", "admin"},
        "user_groups": {"carol": ["analysts"], "admin": ["analysts", "contractors"]}})
    alice = NegotiateClient(gw.url, krb, krb.user_ccache("alice"))
    bob = NegotiateClient(gw.url, krb, krb.user_ccache("bob"))
    carol = NegotiateClient(gw.url, krb, krb.user_ccache("carol"))
    admin = NegotiateClient(gw.url, krb, krb.user_ccache("admin"))

    assert "python_local" in (await alice.request("GET", "api/kernelspecs")).body["kernelspecs"]
    assert (await alice.request("GET", "api/kernelspecs/python_local")).code == 200
    kid = await alice.start_kernel("python_local")

    r = await bob.request("GET", "api/kernelspecs")
    assert r.code == 200 and "python_local" not in r.body["kernelspecs"]
    r = await bob.request("GET", "api/kernelspecs/python_local")
    assert r.code == 403 and "allow_users" in r.body["message"] and "'bob'" in r.body["message"]
    r = await bob.request("POST", "api/kernels", {"name": "python_local"})
    assert r.code == 403 and "kernelspec_acls['python_local']" in r.body["message"]

    assert (await carol.request("GET", "api/kernelspecs/python_local")).code == 200  # via group analysts
    r = await admin.request("GET", "api/kernelspecs/python_local")  # deny group wins over allow group
    assert r.code == 403 and "deny_groups lists group 'contractors'" in r.body["message"]
    # An admin impersonating bob does not give bob a kernelspec bob may not use.
    r = await admin.request("POST", "api/kernels", {"name": "python_local", "env": {"KERNEL_USERNAME": "bob"}})
    assert r.code == 403
    assert set(gw.registry.kernels) == {kid}
    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_principal_mapping_rules(make_gateway: Any, krb: Any) -> None:
    krb.realm.addprinc(krb.princ("carol/admin"), "carolpw")
    gw = await _gateway(make_gateway, krb)
    cc = krb.user_ccache("carol")
    import os

    admin_cc = os.path.join(krb.tmpdir, "cc_carol_admin")
    krb.realm.kinit(krb.princ("carol/admin"), "carolpw", env=dict(krb.realm.env, KRB5CCNAME=f"FILE:{admin_cc}"))
    r = await NegotiateClient(gw.url, krb, admin_cc).request("GET", "api/kernels")
    assert r.code == 403 and "carol/admin@KRBTEST.COM" in r.body["message"]  # not mapped by default
    gw2 = await _gateway(make_gateway, krb, KerberosAuthenticator={
        "auth_to_local": [r"(.+)/admin@KRBTEST\.COM => \1"]})
    assert (await NegotiateClient(gw2.url, krb, admin_cc).request("GET", "api/kernels")).code == 200
    assert (await NegotiateClient(gw2.url, krb, cc).request("GET", "api/kernels")).code == 200
    a = KerberosAuthenticator(keytab=krb.http_keytab, local_realms={"EXAMPLE.COM"})
    assert a.map_principal("alice@EXAMPLE.COM", "KRBTEST.COM") == "alice"
    assert a.map_principal("alice@KRBTEST.COM", "KRBTEST.COM") is None  # only the listed realms


async def test_tls_spnego_sets_secure_cookie(make_gateway: Any, krb: Any, tmp_path: Any) -> None:
    import asyncio
    import ssl

    from tornado.httpclient import AsyncHTTPClient

    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    proc = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0
    gw = await _gateway(make_gateway, krb, YarnGatewayApp={"certfile": cert, "keyfile": key})
    ctx = ssl.create_default_context(cafile=cert)
    url = f"https://localhost:{gw.port}/api/kernels"
    r = await AsyncHTTPClient().fetch(HTTPRequest(url, ssl_options=ctx), raise_error=False)
    assert r.code == 401 and r.headers["WWW-Authenticate"] == "Negotiate"
    hdr = {"Authorization": krb.negotiate_header(krb.user_ccache("alice"))}
    r = await AsyncHTTPClient().fetch(HTTPRequest(url, headers=hdr, ssl_options=ctx), raise_error=False)
    assert r.code == 200
    assert "Secure" in r.headers["Set-Cookie"] and "HttpOnly" in r.headers["Set-Cookie"]
