"""How the minicluster's spark-submit talks and fails: RM REST session, Spark-style output.

``RmSession`` plays the part of Hadoop's ``YarnClient`` behind a failover proxy: it tries
each RM web address of yarn-site.xml in turn (a standby's 307 is followed, a dead RM
skipped), authenticates like Hadoop (``user.name`` when simple, SPNEGO when Kerberos) and
impersonates with ``doAs``. Failures become ``SubmitFailure``, printed the way the JVM
prints an uncaught exception from spark-submit (``Exception in thread "main" ...``).
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

import requests

from yarn_gateway.minicluster.hadoop_conf import rm_webapp_urls

ARGS_FRAMES = (
    "org.apache.spark.deploy.SparkSubmitArguments.error(SparkSubmitArguments.scala:650)",
    "org.apache.spark.deploy.SparkSubmitArguments.validateSubmitArguments(SparkSubmitArguments.scala:281)",
    "org.apache.spark.deploy.SparkSubmit.doSubmit(SparkSubmit.scala:86)",
    "org.apache.spark.deploy.SparkSubmit.main(SparkSubmit.scala)",
)
CLIENT_FRAMES = (
    "org.apache.spark.deploy.yarn.Client.run(Client.scala:1342)",
    "org.apache.spark.deploy.yarn.YarnClusterApplication.start(Client.scala:1764)",
    "org.apache.spark.deploy.SparkSubmit.org$apache$spark$deploy$SparkSubmit$$runMain(SparkSubmit.scala:1034)",
    "org.apache.spark.deploy.SparkSubmit.main(SparkSubmit.scala)",
)
IPC_FRAMES = (
    "org.apache.hadoop.ipc.Client.getRpcResponse(Client.java:1612)",
    "org.apache.hadoop.ipc.Client.call(Client.java:1558)",
    "org.apache.hadoop.ipc.ProtobufRpcEngine2$Invoker.invoke(ProtobufRpcEngine2.java:242)",
    "org.apache.spark.deploy.yarn.Client.submitApplication(Client.scala:205)",
)
KERBEROS_FAILURE = "Client cannot authenticate via:[TOKEN, KERBEROS]"


def log(level: str, logger: str, msg: str) -> None:
    """One log4j line in Spark's default layout ``yy/MM/dd HH:mm:ss LEVEL Class: msg`` on stderr."""
    sys.stderr.write(f"{time.strftime('%y/%m/%d %H:%M:%S')} {level} {logger}: {msg}\n")
    sys.stderr.flush()


def java_exception(cls: str, message: str, frames: tuple[str, ...], cause: Optional[str] = None) -> None:
    """What the JVM prints for an exception escaping ``main``."""
    lines = [f'Exception in thread "main" {cls}: {message}'] + [f"\tat {f}" for f in frames]
    if cause:
        lines.append(f"Caused by: {cause}")
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


class SubmitFailure(Exception):
    """spark-submit fails: print as the JVM would and exit 1."""

    def __init__(self, cls: str, message: str, frames: tuple[str, ...] = CLIENT_FRAMES,
                 cause: Optional[str] = None, before: Optional[list[tuple[str, str, str]]] = None) -> None:
        super().__init__(message)
        self.cls, self.message, self.frames, self.cause = cls, message, frames, cause
        self.before = before or []  # log lines (level, logger, msg) printed first

    def print(self) -> None:
        for level, logger, msg in self.before:
            log(level, logger, msg)
        java_exception(self.cls, self.message, self.frames, self.cause)


class NotFound(Exception):
    """The RM does not know the application (``ApplicationNotFoundException``)."""


def jvm_krb5_conf(env: Mapping[str, str]) -> str:
    """The krb5.conf a JVM started with this environment uses (it ignores KRB5_CONFIG)."""
    opts = " ".join(env.get(k, "") for k in ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"))
    found = re.findall(r"-Djava\.security\.krb5\.conf=(\S+)", opts)
    return found[-1] if found else "/etc/krb5.conf"


def _local_host() -> str:
    host = socket.gethostname()
    try:
        return f"{host}/{socket.gethostbyname(host)}"
    except OSError:
        return f"{host}/127.0.0.1"


def kerberos_failure(rpc_address: str) -> SubmitFailure:
    """Hadoop IPC's failure when the caller holds no usable Kerberos ticket."""
    inner = f"java.io.IOException: org.apache.hadoop.security.AccessControlException: {KERBEROS_FAILURE}"
    return SubmitFailure(
        "java.io.IOException",
        f"DestHost:destPort {rpc_address} , LocalHost:localPort {_local_host()}:0. Failed on local exception: {inner}",
        IPC_FRAMES, cause=inner,
        before=[("WARN", "Client", "Exception encountered while connecting to the server : "
                 f"org.apache.hadoop.security.AccessControlException: {KERBEROS_FAILURE}")],
    )


class RmSession:
    """REST calls to the active RM as the submitting user (optionally impersonating)."""

    def __init__(self, urls: list[str], *, secure: bool, login_user: str, proxy_user: Optional[str],
                 rpc_address: str) -> None:
        if not urls:
            raise SubmitFailure("java.lang.IllegalArgumentException",
                                "no ResourceManager address in yarn-site.xml (yarn.resourcemanager.webapp.address)")
        self.urls = urls
        self.secure = secure
        self.login_user = login_user
        self.proxy_user = proxy_user
        self.rpc_address = rpc_address
        self.http = requests.Session()
        self.current = 0
        if secure:
            from requests_kerberos import OPTIONAL, HTTPKerberosAuth

            self.http.auth = HTTPKerberosAuth(mutual_authentication=OPTIONAL)

    @classmethod
    def from_conf(cls, hconf: Mapping[str, str], env: dict[str, str], sconf: Mapping[str, str], *,
                  proxy_user: Optional[str], login_user: str) -> RmSession:
        urls = rm_webapp_urls(hconf)
        host = urlsplit(urls[0]).hostname if urls else "localhost"
        rpc = hconf.get("yarn.resourcemanager.address") or f"{host}:8032"
        secure = hconf.get("hadoop.security.authentication", "simple").lower() == "kerberos"
        if secure:
            login_user = kerberos_login(env, sconf, rpc)
        return cls(urls, secure=secure, login_user=login_user, proxy_user=proxy_user, rpc_address=rpc)

    @property
    def effective_user(self) -> str:
        """The user the application runs as (short name)."""
        return self.proxy_user or self.login_user.split("/")[0].split("@")[0]

    @property
    def base_url(self) -> str:
        return self.urls[self.current]

    def call(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> requests.Response:
        """One REST call, failing over between RMs; raises SubmitFailure/NotFound on errors."""
        params: dict[str, str] = {}
        if not self.secure:
            params["user.name"] = self.login_user
        if self.proxy_user:
            params["doAs"] = self.proxy_user
        last_error: Optional[Exception] = None
        for _round in range(3):
            for _ in range(len(self.urls)):
                url = self.urls[self.current] + path
                try:
                    resp = self.http.request(method, url, params=params, json=body, timeout=30)
                except requests.ConnectionError as e:
                    last_error = e
                    if len(self.urls) > 1:
                        self.current = (self.current + 1) % len(self.urls)
                        log("INFO", "ConfiguredRMFailoverProxyProvider", f"Failing over to rm{self.current + 1}")
                    continue
                return self._check(resp)
            time.sleep(1.0)
        raise SubmitFailure(
            "java.net.ConnectException",
            f"Call From {_local_host()} to {self.rpc_address} failed on connection exception: "
            f"java.net.ConnectException: Connection refused; For more details see:  "
            f"http://wiki.apache.org/hadoop/ConnectionRefused", IPC_FRAMES, cause=str(last_error))

    def _check(self, resp: requests.Response) -> requests.Response:
        if resp.status_code < 300:
            return resp
        if resp.status_code == 401 and self.secure:
            raise kerberos_failure(self.rpc_address)
        remote: dict[str, Any] = {}
        try:
            remote = resp.json().get("RemoteException") or {}
        except ValueError:
            pass
        if resp.status_code == 404 and remote:
            raise NotFound(remote.get("message", ""))
        java_class = remote.get("javaClassName") or "java.io.IOException"
        message = remote.get("message") or resp.text.strip()[:500] or f"HTTP {resp.status_code}"
        raise SubmitFailure(f"org.apache.hadoop.ipc.RemoteException({java_class})", message, IPC_FRAMES)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def kerberos_login(env: dict[str, str], sconf: Mapping[str, str], rpc_address: str) -> str:
    """Set up Kerberos like the spark-submit JVM would; return the principal or fail like Hadoop.

    ``--principal/--keytab`` log in from the keytab into a private cache; otherwise the
    ticket cache of KRB5CCNAME (the JVM default is /tmp/krb5cc_<uid>) must hold a TGT.
    """
    os.environ["KRB5_CONFIG"] = jvm_krb5_conf(env)
    os.environ.setdefault("KRB5CCNAME", f"FILE:/tmp/krb5cc_{os.getuid()}")
    principal, keytab = sconf.get("spark.kerberos.principal"), sconf.get("spark.kerberos.keytab")
    if principal and keytab:
        fd, cache = tempfile.mkstemp(prefix="krb5cc_spark_submit_")
        os.close(fd)
        atexit.register(_remove_quietly, cache)
        os.environ["KRB5CCNAME"] = f"FILE:{cache}"
        done = subprocess.run(["kinit", "-kt", keytab, principal], env=dict(os.environ), capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise SubmitFailure("org.apache.hadoop.security.KerberosAuthException",
                                f"failure to login: for principal: {principal} from keytab {keytab} "
                                f"javax.security.auth.login.LoginException: {done.stderr.strip()}",
                                IPC_FRAMES)
        log("INFO", "Client", f"Kerberos credentials: principal = {principal}, keytab = {keytab}")
    import gssapi

    try:
        creds = gssapi.Credentials(usage="initiate")
        if creds.lifetime is not None and creds.lifetime <= 0:
            raise kerberos_failure(rpc_address)
        return str(creds.name)
    except gssapi.exceptions.GSSError:
        raise kerberos_failure(rpc_address) from None
