"""``MiniCluster``: one or two RM endpoints, the scheduler and one NodeManager in this process.

Usage (on a running asyncio loop)::

    mc = MiniCluster(base_dir, ha=True, queues=[{"name": "default", "capacity": 100,
                                                   "maximum-am-resource-percent": 0.5}])
    await mc.start()
    mc.conf_dir        # HADOOP_CONF_DIR with yarn-site.xml, core-site.xml, capacity-scheduler.xml
    mc.rm_urls         # ["http://localhost:<port>", ...] in rm-id order
    mc.active_rm_url
    mc.failover()      # the standby becomes active; apps and ids survive
    mc.apps            # {application id: RMApp} for tests
    await mc.stop()    # kills every container

Defaults are YARN's: one queue ``default`` with ``maximum-am-resource-percent`` 0.1 (so with a
16 GB node only one 2 GB AM runs at a time beyond the first), ``yarn.resourcemanager.am.max-attempts`` 2.
State lives in the instance only; several clusters can run in one process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
from typing import Any, Optional

from yarn_gateway.minicluster.hadoop_conf import write_conf
from yarn_gateway.minicluster.nodemanager import NodeManager
from yarn_gateway.minicluster.rm.apps import NodeInfo, RMApp
from yarn_gateway.minicluster.rm.core import RMCore
from yarn_gateway.minicluster.rm.scheduler import CapacityScheduler, QueueConfig
from yarn_gateway.minicluster.rm.security import (
    AccessControlList,
    CookieSigner,
    ProxyUsers,
    SecurityConfig,
    SpnegoAcceptor,
)
from yarn_gateway.minicluster.rm.server import HAGroup, RMServer

log = logging.getLogger(__name__)


class MiniCluster:
    """A single-host YARN stand-in (development, demos, tests; never production)."""

    def __init__(
        self,
        base_dir: str,
        *,
        ha: bool = False,
        secure: bool = False,
        http_keytab: Optional[str] = None,
        http_principal: Optional[str] = None,
        queues: Optional[list[Any]] = None,
        proxyusers: Optional[dict[str, dict[str, str]]] = None,
        admin_acl: str = "",
        acl_enable: bool = False,
        node_memory_mb: int = 16384,
        node_vcores: int = 8,
        heartbeat_interval: float = 0.1,
        create_users: Optional[bool] = None,
        extra_yarn_site: Optional[dict[str, str]] = None,
        host: str = "localhost",
        max_attempts: int = 2,
        finishing_timeout: float = 10.0,
        rm_ports: Optional[list[int]] = None,
        nm_http_port: int = 0,
    ) -> None:
        if secure and not http_keytab:
            raise ValueError("a secure minicluster needs http_keytab (the HTTP/<host> service keytab)")
        self.base_dir = os.path.abspath(base_dir)
        self.ha = ha
        self.secure = secure
        self.http_keytab = http_keytab
        self.http_principal = http_principal
        self.queues = [QueueConfig.from_any(q) for q in (queues or [QueueConfig("default")])]
        self.proxyusers = dict(proxyusers or {})
        self.admin_acl = admin_acl
        self.acl_enable = acl_enable
        self.node_memory_mb = node_memory_mb
        self.node_vcores = node_vcores
        self.heartbeat_interval = heartbeat_interval
        self.run_as_app_user = os.geteuid() == 0
        self.create_users = self.run_as_app_user if create_users is None else create_users
        self.extra_yarn_site = dict(extra_yarn_site or {})
        self.host = host
        self.max_attempts = max_attempts
        self.finishing_timeout = finishing_timeout
        self.rm_ports = list(rm_ports or [])  # fixed ports for a CLI/demo; default: ephemeral
        self.nm_http_port = nm_http_port
        self.conf_dir = os.path.join(self.base_dir, "conf")
        self.admin_token = secrets.token_urlsafe(24)
        self.admin_token_file = os.path.join(self.conf_dir, "minicluster-admin.token")
        self.group = HAGroup(ha_enabled=ha)
        self.servers: list[RMServer] = []
        self.core: Optional[RMCore] = None
        self.nodemanager: Optional[NodeManager] = None
        self._heartbeat: Optional[asyncio.Task[None]] = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        os.makedirs(self.conf_dir, exist_ok=True)
        # Containers may run as other users: they must traverse base_dir (0711 = traverse only).
        os.chmod(self.base_dir, os.stat(self.base_dir).st_mode | 0o711)  # noqa: S103 - traverse only
        os.chmod(self.conf_dir, 0o755)  # noqa: S103 - clients as other users read it
        if self.run_as_app_user:
            self._warn_untraversable()
        self.nodemanager = NodeManager(
            self.base_dir, conf_dir=self.conf_dir, rm_urls=self._rm_urls_active_first,
            on_launched=self._on_launched, on_exit=self._on_exit, host=self.host,
            run_as_app_user=self.run_as_app_user, create_users=self.create_users,
        )
        await self.nodemanager.start(self.nm_http_port)
        scheduler = CapacityScheduler(self.queues, self.node_memory_mb, self.node_vcores)
        self.core = RMCore(scheduler, self.nodemanager.node, max_attempts=self.max_attempts,
                           finishing_timeout=self.finishing_timeout, rm_url=lambda: self.active_rm_url)
        self.core.nm = self.nodemanager
        proxy = ProxyUsers(self.proxyusers)
        await proxy.resolve()
        security = SecurityConfig(
            secure=self.secure, signer=CookieSigner(secrets.token_bytes(32)), proxyusers=proxy,
            acl_enable=self.acl_enable, admin_acl=AccessControlList(self.admin_acl),
            spnego=SpnegoAcceptor(self.http_keytab, self.http_principal) if self.http_keytab else None,
            admin_token=self.admin_token,
        )
        for i, rm_id in enumerate(["rm1", "rm2"] if self.ha else ["rm1"]):
            server = RMServer(rm_id, self.core, security, self.group, host=self.host)
            await server.start(self.rm_ports[i] if i < len(self.rm_ports) else 0)
            self.servers.append(server)
        self.group.active_id = "rm1"
        self._write_conf()
        self._heartbeat = asyncio.get_running_loop().create_task(self.core.run(self.heartbeat_interval))

    async def stop(self) -> None:
        """Stop scheduling, kill every container (waiting for them), close the RM endpoints."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            try:
                await self._heartbeat
            except asyncio.CancelledError:
                pass
            self._heartbeat = None
        if self.nodemanager is not None:
            await self.nodemanager.stop()
        for server in self.servers:
            await server.stop()

    async def __aenter__(self) -> MiniCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- public attributes -------------------------------------------------------------------
    @property
    def rm_urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def active_rm_url(self) -> str:
        server = self.group.server(self.group.active_id)
        return server.url if server is not None else ""

    @property
    def standby_rm_url(self) -> Optional[str]:
        return next((s.url for s in self.servers if not s.is_active), None)

    def failover(self) -> str:
        """Make the standby active (``yarn rmadmin -failover rm1 rm2``); returns the active rm id."""
        return self.group.failover()

    @property
    def apps(self) -> dict[str, RMApp]:
        core = self._core()
        return {app.app_id: app for app in core.apps.values()}

    @property
    def node(self) -> NodeInfo:
        assert self.nodemanager is not None, "start() first"
        return self.nodemanager.node

    def _core(self) -> RMCore:
        if self.core is None:
            raise RuntimeError("MiniCluster not started")
        return self.core

    # -- internals ---------------------------------------------------------------------------
    def _rm_urls_active_first(self) -> list[str]:
        active = self.active_rm_url
        return [active] + [u for u in self.rm_urls if u != active]

    def _on_launched(self, cid: str) -> None:
        self._core().container_launched(cid)

    def _on_exit(self, cid: str, code: int, detail: str) -> None:
        self._core().container_exited(cid, code, detail)

    def _warn_untraversable(self) -> None:
        path = os.path.dirname(self.base_dir)
        while path and path != os.path.dirname(path):
            mode = os.stat(path).st_mode
            if not mode & stat.S_IXOTH:
                log.warning("%s is not traversable by other users: containers running as app users "
                            "cannot reach %s", path, self.base_dir)
                return
            path = os.path.dirname(path)

    def _write_conf(self) -> None:
        assert self.nodemanager is not None
        yarn: dict[str, object] = {
            "yarn.resourcemanager.webapp.address": self.servers[0].address,
            # No RPC server exists: placeholders so tools find a value.
            "yarn.resourcemanager.address": f"{self.host}:8032",
            "yarn.resourcemanager.scheduler.class":
                "org.apache.hadoop.yarn.server.resourcemanager.scheduler.capacity.CapacityScheduler",
            "yarn.acl.enable": "true" if self.acl_enable else "false",
            "yarn.admin.acl": self.admin_acl,
            "yarn.resourcemanager.am.max-attempts": self.max_attempts,
            "yarn.scheduler.minimum-allocation-mb": 1024,
            "yarn.scheduler.maximum-allocation-mb": self.node_memory_mb,
            "yarn.scheduler.maximum-allocation-vcores": self.node_vcores,
            "yarn.nodemanager.resource.memory-mb": self.node_memory_mb,
            "yarn.nodemanager.resource.cpu-vcores": self.node_vcores,
            "yarn.nodemanager.webapp.address": self.nodemanager.node.http_address,
            "yarn.nodemanager.local-dirs": self.nodemanager.local_dir,
            "yarn.nodemanager.log-dirs": self.nodemanager.log_root,
            "yarn.http.policy": "HTTP_ONLY",
            "minicluster.admin.token.file": self.admin_token_file,
            "minicluster.heartbeat-interval-ms": int(self.heartbeat_interval * 1000),
        }
        if self.ha:
            yarn.update({
                "yarn.resourcemanager.ha.enabled": "true",
                "yarn.resourcemanager.ha.rm-ids": ",".join(s.rm_id for s in self.servers),
                "yarn.resourcemanager.cluster-id": "minicluster",
            })
            for i, s in enumerate(self.servers):
                yarn[f"yarn.resourcemanager.webapp.address.{s.rm_id}"] = s.address
                yarn[f"yarn.resourcemanager.hostname.{s.rm_id}"] = self.host
                yarn[f"yarn.resourcemanager.address.{s.rm_id}"] = f"{self.host}:{8032 + i}"
        if self.secure:
            yarn["yarn.resourcemanager.webapp.spnego-principal"] = self.http_principal or "*"
            yarn["yarn.resourcemanager.webapp.spnego-keytab-file"] = self.http_keytab or ""
        yarn.update(self.extra_yarn_site)
        core: dict[str, object] = {
            "hadoop.security.authentication": "kerberos" if self.secure else "simple",
            "hadoop.http.authentication.type": "kerberos" if self.secure else "simple",
            "hadoop.http.authentication.simple.anonymous.allowed": "false" if self.secure else "true",
        }
        if self.secure:
            core["hadoop.http.authentication.kerberos.principal"] = self.http_principal or "*"
            core["hadoop.http.authentication.kerberos.keytab"] = self.http_keytab or ""
        for svc, rule in self.proxyusers.items():
            for key in ("hosts", "users", "groups"):
                if key in rule:
                    core[f"hadoop.proxyuser.{svc}.{key}"] = rule[key]
        cs: dict[str, object] = {"yarn.scheduler.capacity.root.queues": ",".join(q.name for q in self.queues)}
        for q in self.queues:
            prefix = f"yarn.scheduler.capacity.root.{q.name}"
            cs[f"{prefix}.capacity"] = q.capacity
            cs[f"{prefix}.maximum-capacity"] = q.maximum_capacity
            cs[f"{prefix}.maximum-am-resource-percent"] = q.max_am_resource_percent
        write_conf(os.path.join(self.conf_dir, "yarn-site.xml"), yarn)
        write_conf(os.path.join(self.conf_dir, "core-site.xml"), core)
        write_conf(os.path.join(self.conf_dir, "capacity-scheduler.xml"), cs)
        for name in ("yarn-site.xml", "core-site.xml", "capacity-scheduler.xml"):
            os.chmod(os.path.join(self.conf_dir, name), 0o644)
        fd = os.open(self.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.admin_token)
