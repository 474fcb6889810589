"""A real MIT KDC (k5test) for the whole Kerberos test area, plus a Kerberized real YARN and gateway helpers.

One realm per session: MIT Kerberos reads KRB5_CONFIG per context, but switching realms
inside one process is asking for trouble. The process-wide ``KRB5CCNAME`` points at a
cache that does not exist, so nothing works by accident from an ambient ticket: every
client names its cache explicitly.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

REALM_PORTBASE = 61480
GW_PRINCIPAL = "yarngw/localhost"
HTTP_PRINCIPAL = "HTTP/localhost"
USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw", "admin": "adminpw"}


@dataclass
class Krb:
    realm: Any  # k5test.K5Realm
    name: str
    krb5_conf: str
    http_keytab: str
    gw_keytab: str
    tmpdir: str

    def princ(self, p: str) -> str:
        return f"{p}@{self.name}"

    def user_ccache(self, user: str, lifetime: Optional[str] = None) -> str:
        """A fresh ticket cache for ``user`` (kinit with the password)."""
        path = os.path.join(self.tmpdir, f"cc_{user}_{os.urandom(4).hex()}")
        flags = ["-l", lifetime] if lifetime else None
        self.realm.kinit(self.princ(user), USERS[user], flags=flags,
                         env=dict(self.realm.env, KRB5CCNAME=f"FILE:{path}"))
        return path

    def negotiate_header(self, ccache: str, host: str = "localhost") -> str:
        import spnego

        ctx = spnego.client(username=spnego.KerberosCCache(ccache=f"FILE:{ccache}"), hostname=host,
                            service="HTTP", protocol="negotiate")
        token = ctx.step()
        assert token
        return "Negotiate " + base64.b64encode(token).decode()

    def keytab_for(self, principal: str, name: str) -> str:
        path = os.path.join(self.tmpdir, name)
        self.realm.addprinc(self.princ(principal))
        self.realm.extract_keytab(self.princ(principal), path)
        return path

    def gateway_login_config(self, keytab: Optional[str] = None, principal: str = GW_PRINCIPAL) -> dict[str, Any]:
        return {"KerberosLogin": {"keytab": keytab or self.gw_keytab, "principal": self.princ(principal),
                                  "krb5_conf": self.krb5_conf}}

    def gateway_auth_config(self, **extra: Any) -> dict[str, Any]:
        return {"YarnGatewayApp": {"authenticator_class": "kerberos"},
                "KerberosAuthenticator": {"keytab": self.http_keytab, **extra}}


@pytest.fixture(scope="session")
def krb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Krb]:
    k5test = pytest.importorskip("k5test")
    realm = k5test.K5Realm(portbase=REALM_PORTBASE, get_creds=False, create_user=False, create_host=False,
                           krb5_conf={"libdefaults": {"rdns": "false", "dns_canonicalize_hostname": "false"}})
    tmp = str(tmp_path_factory.mktemp("krb"))
    names = ("KRB5_CONFIG", "KRB5CCNAME", "KRB5_KTNAME", "KRB5_CLIENT_KTNAME", "KRB5RCACHEDIR")
    saved = {k: os.environ.get(k) for k in names}
    try:
        for user, pw in USERS.items():
            realm.addprinc(f"{user}@{realm.realm}", pw)
        http_kt = os.path.join(tmp, "http.keytab")
        realm.addprinc(f"{HTTP_PRINCIPAL}@{realm.realm}")
        realm.extract_keytab(f"{HTTP_PRINCIPAL}@{realm.realm}", http_kt)
        gw_kt = os.path.join(tmp, "yarngw.keytab")
        realm.addprinc(f"{GW_PRINCIPAL}@{realm.realm}")
        realm.extract_keytab(f"{GW_PRINCIPAL}@{realm.realm}", gw_kt)
        os.environ["KRB5_CONFIG"] = realm.env["KRB5_CONFIG"]  # in-process acceptors (gateway, RM)
        os.environ["KRB5RCACHEDIR"] = realm.env.get("KRB5RCACHEDIR", tmp)
        os.environ["KRB5CCNAME"] = f"FILE:{os.path.join(tmp, 'no-such-cache')}"
        os.environ["KRB5_KTNAME"] = f"FILE:{os.path.join(tmp, 'no-such-keytab')}"
        os.environ.pop("KRB5_CLIENT_KTNAME", None)
        yield Krb(realm, realm.realm, realm.env["KRB5_CONFIG"], http_kt, gw_kt, tmp)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        realm.stop()


@pytest.fixture(scope="session")
def secure_cluster(krb: Krb) -> Iterator[Any]:
    """A real Kerberized YARN (SPNEGO on the RM's REST API, tickets on RPC); yarngw may impersonate alice and bob."""
    from devcluster.kdc import service_keytab
    from helpers.yarn_cluster import YarnCluster

    spec = service_keytab(krb.realm, os.path.join(krb.tmpdir, "yarn-services.keytab"))
    mc = YarnCluster.start("kerberos", submitter="yarngw", proxy_users="alice,bob", kerberos=spec)
    yield mc
    mc.close()


@pytest.fixture
def secure_config(krb: Krb) -> Callable[..., dict[str, Any]]:
    """Gateway config for ``secure_cluster``: Kerberos users, keytab login, SPNEGO to the RM."""
    from helpers.yarn_specs import PORT_RANGE

    def make(mc: Any, **login: Any) -> dict[str, Any]:
        lo, hi = PORT_RANGE
        cfg: dict[str, Any] = mc.gateway_config(port_range=f"{lo}..{hi}", rm_auth="kerberos",
                                                max_concurrent_submits=2)
        cfg["KernelRegistry"] = {"launch_timeout": 180.0, "shutdown_wait_time": 20.0}
        cfg.update(krb.gateway_auth_config())
        cfg.update(krb.gateway_login_config(**login))
        return cfg

    return make
