"""``yarn-gateway check``: the YARN-side checks (spark-submit, HADOOP_CONF_DIR, ResourceManager,
the gateway's Kerberos login, launcher port range, response listener).

The Kerberos login is tried for real (``kinit -kt`` into a throwaway cache), and that
cache then authenticates the RM probes when ``YarnServices.rm_auth`` is 'kerberos', so
a check run proves what a launch will need.
"""

from __future__ import annotations

import base64
import getpass
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

import requests

from ..kerberos import read_tgt
from ..utils import isoformat_z
from ..yarn.hadoop_conf import load_hadoop_conf, read_conf, rm_webapp_urls
from .checks import FAIL, OK, WARN, Check

if TYPE_CHECKING:
    from ..app import YarnGatewayApp
    from ..provisioners.services import YarnServices

#: One launch binds the response listener here and the launcher's five kernel ports on a node.
MIN_FREE_PORTS = 6
MAX_PROBED_PORTS = 2048


def keytab_principals(keytab: str, krb5_conf: str = "") -> tuple[list[str], str]:
    """The principals in ``keytab`` (via ``klist -k``), and an error text ('' if none)."""
    env = dict(os.environ, **({"KRB5_CONFIG": krb5_conf} if krb5_conf else {}))
    try:
        out = subprocess.run(["klist", "-k", keytab], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"cannot run klist: {exc}"
    if out.returncode != 0:
        return [], (out.stderr.strip().splitlines() or ["klist failed"])[-1]
    lines = out.stdout.splitlines()
    start = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("----")), len(lines))
    return [ln.split()[-1] for ln in lines[start:] if ln.split()], ""


class YarnChecks:
    """The YARN-side checks of one configuration (call :meth:`close` afterwards)."""

    def __init__(self, app: YarnGatewayApp) -> None:
        from ..kerberos import KerberosLogin
        from ..provisioners.services import YarnServices

        self.app = app
        self.services: YarnServices = YarnServices(parent=app, log=app.log)
        self.login = KerberosLogin(parent=app, log=app.log)
        self._tmp = ""
        self.ccache = ""  # the throwaway cache of a successful keytab login

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""

    # -- spark-submit / HADOOP_CONF_DIR -----------------------------------------------------------
    def spark_submit(self) -> Iterator[Check]:
        home = self.services.spark_home
        if not home:
            yield Check(FAIL, "spark-submit", "SPARK_HOME is not set (YarnServices.spark_home or $SPARK_HOME)")
            return
        path = os.path.join(home, "bin", "spark-submit")
        if not os.path.isfile(path):
            yield Check(FAIL, "spark-submit", f"{path} does not exist (YarnServices.spark_home={home})")
        elif not os.access(path, os.X_OK):
            yield Check(FAIL, "spark-submit", f"{path} is not executable")
        else:
            yield Check(OK, "spark-submit", path)

    def hadoop_conf(self) -> Iterator[Check]:
        d = self.services.hadoop_conf_dir
        if not os.path.isdir(d):
            yield Check(FAIL, "hadoop-conf", f"HADOOP_CONF_DIR {d} does not exist or is not a directory "
                        "(YarnServices.hadoop_conf_dir)")
            return
        if not os.access(d, os.R_OK | os.X_OK):
            yield Check(FAIL, "hadoop-conf", f"HADOOP_CONF_DIR {d} is not readable")
            return
        site = os.path.join(d, "yarn-site.xml")
        try:
            with open(site, "rb"):
                pass
            props = read_conf(site)
        except OSError as exc:
            yield Check(FAIL, "hadoop-conf", f"{site}: {exc.strerror}")
            return
        except ParseError as exc:
            yield Check(FAIL, "hadoop-conf", f"{site} is not valid XML: {exc}")
            return
        yield Check(OK, "hadoop-conf", f"{d} (yarn-site.xml: {len(props)} properties)")

    # -- Kerberos ------------------------------------------------------------------------------------
    def kerberos_login(self) -> Iterator[Check]:
        login = self.login
        if not login.enabled:
            return
        keytab = login.keytab
        if not os.path.isfile(keytab) or not os.access(keytab, os.R_OK):
            yield Check(FAIL, "kerberos-login", f"KerberosLogin.keytab {keytab!r} is missing or unreadable")
            return
        principal = login.principal.replace("_HOST", socket.getfqdn().lower())
        self._tmp = tempfile.mkdtemp(prefix="yarngw-check-")
        cache = os.path.join(self._tmp, "krb5cc")
        env = dict(os.environ, KRB5CCNAME=f"FILE:{cache}", KRB5_CONFIG=login.krb5_conf)
        argv = [login.kinit, "-kt", keytab] + ([principal] if principal else [])
        try:
            out = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            yield Check(FAIL, "kerberos-login", f"cannot run {login.kinit}: {exc}")
            return
        if out.returncode != 0:
            why = ((out.stderr or out.stdout).strip().splitlines() or [f"exit {out.returncode}"])[-1]
            yield Check(FAIL, "kerberos-login", f"kinit -kt {keytab} {principal or '(keytab default)'}: {why}")
            return
        tgt = read_tgt(cache)
        if tgt is None:
            yield Check(FAIL, "kerberos-login", "kinit left no ticket-granting ticket")
            return
        self.ccache = cache
        until = isoformat_z(datetime.fromtimestamp(tgt.end, timezone.utc))
        yield Check(OK, "kerberos-login", f"{tgt.principal} from {keytab} (ticket valid until {until})")

    # -- ResourceManager ------------------------------------------------------------------------------
    def rm_endpoints(self) -> list[str]:
        if self.services.rm_endpoints:
            return [str(e).rstrip("/") for e in self.services.rm_endpoints]
        try:
            return [e.rstrip("/") for e in rm_webapp_urls(load_hadoop_conf(self.services.hadoop_conf_dir))]
        except (OSError, ParseError):
            return []

    def _rm_auth(self, endpoint: str) -> tuple[Optional[Any], dict[str, str], dict[str, str]]:
        """(requests auth, query params, headers) for one probe, as the gateway would authenticate."""
        mode = self.services.rm_auth
        if mode == "simple":
            return None, {"user.name": getpass.getuser()}, {}
        if mode == "kerberos" and self.ccache:
            import spnego

            host = urlsplit(endpoint).hostname or ""
            ctx = spnego.client(username=spnego.KerberosCCache(ccache=f"FILE:{self.ccache}"), hostname=host,
                                service="HTTP", protocol="negotiate")
            token = ctx.step() or b""
            return None, {}, {"Authorization": "Negotiate " + base64.b64encode(token).decode()}
        if mode == "kerberos":
            from requests_kerberos import OPTIONAL, HTTPKerberosAuth

            return HTTPKerberosAuth(mutual_authentication=OPTIONAL), {}, {}
        return None, {}, {}

    def resource_manager(self) -> Iterator[Check]:
        endpoints = self.rm_endpoints()
        if not endpoints:
            yield Check(FAIL, "rm", "no ResourceManager configured (YarnServices.rm_endpoints or "
                        f"yarn.resourcemanager.webapp.address in {self.services.hadoop_conf_dir}/yarn-site.xml)")
            return
        active = 0
        for ep in endpoints:
            check = self._probe(ep)
            active += check.status == OK and check.detail.startswith("active")
            yield check
        if not active:
            yield Check(FAIL, "rm", f"no active ResourceManager among {', '.join(endpoints)}")

    def _probe(self, ep: str) -> Check:
        name = f"rm {ep}"
        timeout = min(float(self.services.rm_timeout), 10.0)
        try:
            auth, params, headers = self._rm_auth(ep)
            resp = requests.get(f"{ep}/ws/v1/cluster/info", params=params, headers=headers, auth=auth,
                                timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            return Check(FAIL, name, f"unreachable ({type(exc).__name__})")
        except Exception as exc:  # spnego errors: no usable ticket
            return Check(FAIL, name, f"cannot authenticate (YarnServices.rm_auth={self.services.rm_auth}): {exc}")
        if resp.status_code in (301, 302, 307):
            return Check(OK, name, f"standby (redirects to {resp.headers.get('Location', '?')})")
        if resp.status_code in (401, 403):
            return Check(FAIL, name, f"refused the gateway's credentials (HTTP {resp.status_code}; "
                         f"YarnServices.rm_auth={self.services.rm_auth})")
        try:
            info = resp.json()["clusterInfo"]
        except (ValueError, KeyError, TypeError):
            return Check(FAIL, name, f"HTTP {resp.status_code}: not a ResourceManager answer")
        state = str(info.get("haState") or "ACTIVE").lower()
        version = info.get("resourceManagerVersion") or info.get("hadoopVersion") or "?"
        if state == "active":
            return Check(OK, name, f"active (version {version})")
        return Check(OK, name, f"{state} (noted; version {version})")

    # -- ports ------------------------------------------------------------------------------------------
    def port_range(self) -> Iterator[Check]:
        from yarn_gateway_launchers.launcher_protocol import parse_port_range

        spec = self.services.port_range
        try:
            lo, hi = parse_port_range(spec)
        except ValueError as exc:
            yield Check(FAIL, "port-range", f"YarnServices.port_range: {exc}")
            return
        if (lo, hi) == (0, 0):
            yield Check(OK, "port-range", "0..0 (any port)")
            return
        host = self._bind_host()
        ports = range(lo, min(hi, lo + MAX_PROBED_PORTS - 1) + 1)
        free = sum(_can_bind(host, p) for p in ports)
        detail = f"{spec}: {free} of {len(ports)} probed ports free on {host or '*'}"
        if free == 0:
            yield Check(FAIL, "port-range", detail)
        elif free < MIN_FREE_PORTS:
            yield Check(WARN, "port-range", detail + f" (fewer than {MIN_FREE_PORTS})")
        else:
            yield Check(OK, "port-range", detail)

    def _bind_host(self) -> str:
        try:
            ipaddress.ip_address(self.services.response_ip)
            return str(self.services.response_ip)
        except ValueError:
            return "0.0.0.0"  # probing only; the response-listener check reports the bad address

    def response_listener(self) -> Iterator[Check]:
        ip = self.services.response_ip
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            yield Check(FAIL, "response-listener", f"YarnServices.response_ip {ip!r} is not an IP address")
            return
        port = int(self.services.response_port)
        if not _can_bind(ip, port):
            yield Check(FAIL, "response-listener", f"cannot bind {ip}:{port} (YarnServices.response_ip/response_port)")
            return
        advertise = self.services.response_advertise_host
        wildcard = ip in ("0.0.0.0", "::")
        host = advertise or (socket.getfqdn() if wildcard else ip)
        try:
            socket.getaddrinfo(host, None)
        except OSError as exc:
            yield Check(WARN, "response-listener", f"launchers are told to reach {host!r}, which does not resolve "
                        f"here ({exc}); set YarnServices.response_advertise_host")
            return
        yield Check(OK, "response-listener", f"binds {ip}:{port or 'any'}; launchers reach {host}")


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_yarn(app: YarnGatewayApp, yarn_specs: list[str]) -> Iterator[Check]:
    """Every YARN-side check (the Kerberos login even without YARN kernelspecs)."""
    checks = YarnChecks(app)
    try:
        yield from checks.kerberos_login()
        if not yarn_specs:
            yield Check(OK, "yarn", "no YARN kernelspecs: spark-submit, HADOOP_CONF_DIR and RM checks skipped")
            return
        yield from checks.spark_submit()
        yield from checks.hadoop_conf()
        yield from checks.resource_manager()
        yield from checks.port_range()
        yield from checks.response_listener()
    finally:
        checks.close()
