"""What all YARN kernels of one gateway share: response listener, RM client, submit cap.

Built once per gateway (the kernel registry owns it) and started on first use, so a
gateway with only local kernelspecs never needs a Hadoop configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Optional

import requests
from traitlets import Bool, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from yarn_gateway_launchers.launcher_protocol import SIGNATURE_SCHEMES

from ..errors import GatewayError
from ..yarn.hadoop_conf import load_hadoop_conf, rm_webapp_urls
from ..yarn.rm_client import RMClient
from .response_listener import ResponseListener

if TYPE_CHECKING:
    from ..kerberos import KerberosLogin
    from ..metrics import GatewayMetrics


class PseudoAuth(requests.auth.AuthBase):
    """Hadoop's "simple" HTTP authentication: ``user.name=<user>`` on every request.

    (yarn-api-client's ``SimpleAuth`` fetches a cookie first, with a request that has no
    timeout and fails on a missing cookie; Hadoop accepts the parameter on every call.)
    """

    def __init__(self, user: str) -> None:
        self.user = user

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.prepare_url(request.url, {"user.name": self.user})
        return request


class YarnServices(LoggingConfigurable):
    """Gateway-wide YARN settings and shared clients."""

    hadoop_conf_dir = Unicode(
        config=True, help="HADOOP_CONF_DIR for spark-submit and for RM addresses (default: $HADOOP_CONF_DIR, "
        "then $YARN_CONF_DIR, then /etc/hadoop/conf).",
    )

    @default("hadoop_conf_dir")
    def _hadoop_conf_dir_default(self) -> str:
        return os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR") or "/etc/hadoop/conf"

    spark_home = Unicode(config=True, help="SPARK_HOME whose bin/spark-submit submits kernels (default: $SPARK_HOME).")

    @default("spark_home")
    def _spark_home_default(self) -> str:
        return os.environ.get("SPARK_HOME", "")

    spark_conf_dir = Unicode(
        config=True, help="SPARK_CONF_DIR whose spark-defaults.conf and spark-env.sh every kernel's spark-submit "
        "uses (default: $SPARK_CONF_DIR, else <spark_home>/conf). spark-defaults.conf is copied into each launch's "
        "private properties file, before the kernelspec's and the request's settings.",
    )

    @default("spark_conf_dir")
    def _spark_conf_dir_default(self) -> str:
        return os.environ.get("SPARK_CONF_DIR", "")

    @property
    def effective_spark_conf_dir(self) -> str:
        return self.spark_conf_dir or os.path.join(self.spark_home, "conf")

    rm_endpoints = List(
        Unicode(), config=True,
        help="ResourceManager web addresses with scheme (HA: all of them). Default: from yarn-site.xml.",
    )
    rm_auth = Unicode(
        "simple", config=True,
        help="How the gateway authenticates to the RM REST API: 'simple' (?user.name=<gateway user>), "
        "'kerberos' (SPNEGO with the gateway's ticket) or 'none'.",
    )
    rm_poll_interval = Float(5.0, config=True, help="Seconds between refreshes of running kernels' YARN states.")
    rm_timeout = Float(30.0, config=True, help="Seconds for one RM REST call.")
    gateway_id = Unicode(
        "default", config=True,
        help="Names this gateway cluster in YARN tags (yarn-gateway-<id>); gateways sharing kernels share it.",
    )
    port_range = Unicode(
        "0..0", config=True,
        help="Ports ('lo..hi') for the response listener and every port a launcher opens; '0..0' = any.",
    )
    require_transport_encryption = Bool(
        True, config=True,
        help="Refuse YARN kernels whose ZMQ ports are not CurveZMQ-encrypted: a kernelspec with "
        "transport_encryption 'none' (403 at start) and a launcher that offers no CurveZMQ key (the launch "
        "fails and the application is stopped). Turn off only on a trusted cluster network.")
    response_ip = Unicode("0.0.0.0", config=True, help="Address the response listener binds.")
    response_advertise_host = Unicode(
        "", config=True, help="Host name launchers use to reach the listener (default: this host's FQDN)."
    )
    response_port = Int(0, config=True, help="Fixed listener port (0: a free port inside port_range).")
    kernel_signature_schemes = List(
        Unicode(), ["hmac-sha256"], config=True,
        help="Jupyter message signature schemes a launcher may choose for its kernel (any of hmac-sha256, "
        "hmac-sha384, hmac-sha512); a launch whose launcher reports another one (hmac-md5, ...) fails.",
    )

    @validate("kernel_signature_schemes")
    def _check_signature_schemes(self, proposal: Any) -> list[str]:
        value = list(proposal["value"])
        if not value or any(s not in SIGNATURE_SCHEMES for s in value):
            raise TraitError(f"YarnServices.kernel_signature_schemes must be a non-empty list of "
                             f"{', '.join(SIGNATURE_SCHEMES)}; got {value!r}")
        return value
    max_concurrent_submits = Int(4, config=True, help="spark-submit processes allowed at once; others queue.")
    max_queued_submits = Int(
        0, config=True,
        help="Launches allowed to wait for a spark-submit slot when all max_concurrent_submits are busy; one more "
        "is refused at once with 429 and Retry-After. 0 = unlimited (launches wait, up to their launch timeout).",
    )
    submit_retry_after = Int(10, config=True, help="Seconds a 429 for a full submit queue asks clients to wait.")

    def __init__(self, metrics: Optional[GatewayMetrics] = None, kerberos: Optional[KerberosLogin] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Where RM calls are counted (the gateway's metrics; None: not counted).
        self.metrics = metrics
        self._listener: Optional[ResponseListener] = None
        self._rm: Optional[RMClient] = None
        self._lock = asyncio.Lock()
        self._submits: Optional[asyncio.Semaphore] = None
        self.submits_waiting = 0
        self.submits_running = 0
        #: The gateway's keytab login (when KerberosLogin.keytab is configured).
        self.kerberos = kerberos

    @property
    def app_tag(self) -> str:
        return f"yarn-gateway-{self.gateway_id}".lower()

    async def listener(self) -> ResponseListener:
        async with self._lock:
            if self._listener is None:
                listener = ResponseListener(
                    self.response_ip, self.port_range, self.response_port,
                    advertise_host=self.response_advertise_host or None,
                    signature_schemes=tuple(self.kernel_signature_schemes),
                )
                await listener.start()
                self._listener = listener
            return self._listener

    def rm(self) -> RMClient:
        if self._rm is None:
            endpoints = list(self.rm_endpoints) or rm_webapp_urls(load_hadoop_conf(self.hadoop_conf_dir))
            if not endpoints:
                raise GatewayError(503, "No ResourceManager is configured: set YarnServices.rm_endpoints or "
                                   f"a yarn-site.xml in {self.hadoop_conf_dir}.", reason="YARN not configured")
            metrics = self.metrics
            self._rm = RMClient(endpoints, auth_factory=self._auth, timeout=self.rm_timeout,
                                observer=metrics.observe_rm if metrics is not None else None,
                                poll_interval=self.rm_poll_interval, live_tag=self.app_tag)
        return self._rm

    def _auth(self) -> Any:
        if self.rm_auth == "simple":
            return PseudoAuth(getpass.getuser())
        if self.rm_auth == "kerberos" and self.kerberos is not None:
            self.kerberos.check_ticket()  # a named error (KerberosTicketError), not "no active RM"
            return self.kerberos.requests_auth()  # SPNEGO from the gateway's own cache
        if self.rm_auth == "kerberos":
            from requests_kerberos import OPTIONAL, HTTPKerberosAuth

            return HTTPKerberosAuth(mutual_authentication=OPTIONAL)
        return None

    @contextlib.asynccontextmanager
    async def submit_slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_concurrent_submits`` spark-submit slots."""
        if self._submits is None:
            self._submits = asyncio.Semaphore(self.max_concurrent_submits)
        self._check_queue(self._submits)
        self.submits_waiting += 1
        try:
            await self._submits.acquire()
        finally:
            self.submits_waiting -= 1
        self.submits_running += 1
        try:
            yield
        finally:
            self.submits_running -= 1
            self._submits.release()

    def _check_queue(self, submits: asyncio.Semaphore) -> None:
        """429 when every slot is busy and ``max_queued_submits`` launches already wait."""
        cap = self.max_queued_submits
        if cap > 0 and submits.locked() and self.submits_waiting >= cap:
            raise GatewayError(
                429,
                f"{self.submits_waiting} kernel launches are already waiting for one of the "
                f"{self.max_concurrent_submits} spark-submit slots (at most {cap} may wait: "
                f"YarnServices.max_queued_submits); try again in {self.submit_retry_after} s.",
                reason="Too many launches",
                headers={"Retry-After": str(self.submit_retry_after)},
            )

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
