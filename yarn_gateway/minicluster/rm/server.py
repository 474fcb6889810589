"""One ResourceManager web endpoint (active or standby) and the HA pair that owns the active flag.

Each endpoint has its own cluster timestamp (its start time): new application ids and the
``clusterId`` of rendered apps use the serving RM's timestamp, so ids issued after a failover
carry the new active's prefix while older apps keep theirs (reference §3, [inf]).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Optional

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from yarn_gateway.minicluster.rm import webapp as w
from yarn_gateway.minicluster.rm.core import RMCore
from yarn_gateway.minicluster.rm.private import AMRegisterHandler, FailoverHandler
from yarn_gateway.minicluster.rm.security import SecurityConfig

HADOOP_VERSION = "3.3.6"
_BUILD = f"{HADOOP_VERSION} from minicluster by yarn-gateway source checksum 00000000000000000000000000000000"


def make_app(rm: RMServer) -> tornado.web.Application:
    """The routes of one RM endpoint (Hadoop's plus the private ``/ws/v1/minicluster``)."""
    args = {"rm": rm}
    app_re = r"([^/]+)"
    return tornado.web.Application([
        (r"/isActive/?", w.IsActiveHandler, args),
        (r"/(?:cluster(?:/cluster)?/?)?", w.AboutHandler, args),
        (r"/ws/v1/cluster/?", w.ClusterInfoHandler, args),
        (r"/ws/v1/cluster/(?:info|cluster)/?", w.ClusterInfoHandler, args),
        (r"/ws/v1/cluster/metrics/?", w.MetricsHandler, args),
        (r"/ws/v1/cluster/scheduler/?", w.SchedulerHandler, args),
        (r"/ws/v1/cluster/apps/?", w.AppsHandler, args),
        (r"/ws/v1/cluster/apps/new-application/?", w.NewApplicationHandler, args),
        (rf"/ws/v1/cluster/apps/{app_re}/?", w.AppHandler, args),
        (rf"/ws/v1/cluster/apps/{app_re}/state/?", w.AppStateHandler, args),
        (rf"/ws/v1/cluster/apps/{app_re}/appattempts/?", w.AppAttemptsHandler, args),
        (rf"/ws/v1/minicluster/apps/{app_re}/(register|unregister)", AMRegisterHandler, args),
        (r"/ws/v1/minicluster/failover/?", FailoverHandler, args),
    ], log_function=_access_log)


def _access_log(handler: tornado.web.RequestHandler) -> None:
    """Access log at debug level (tests run many requests)."""
    logging.getLogger("yarn_gateway.minicluster.rm.access").debug(
        "%d %s %s", handler.get_status(), handler.request.method, handler.request.uri)


class HAGroup:
    """The RM endpoints of one cluster and which one is active."""

    def __init__(self, ha_enabled: bool) -> None:
        self.ha_enabled = ha_enabled
        self.servers: list[RMServer] = []
        self.active_id = ""

    def server(self, rm_id: str) -> Optional[RMServer]:
        return next((s for s in self.servers if s.rm_id == rm_id), None)

    def failover(self) -> str:
        """Make the next endpoint active (``yarn rmadmin -failover``); returns its rm id."""
        if len(self.servers) < 2:
            return self.active_id
        ids = [s.rm_id for s in self.servers]
        idx = ids.index(self.active_id) if self.active_id in ids else -1
        self.active_id = ids[(idx + 1) % len(ids)]
        return self.active_id


class RMServer:
    """A tornado HTTP server answering as one RM (``rm_id``) of ``group``."""

    def __init__(
        self,
        rm_id: str,
        core: RMCore,
        security: SecurityConfig,
        group: HAGroup,
        *,
        host: str = "localhost",
        bind_address: str = "127.0.0.1",
    ) -> None:
        self.rm_id = rm_id
        self.core = core
        self.security = security
        self.group = group
        self.host = host
        self.bind_address = bind_address
        last = max((s.cluster_ts for s in group.servers), default=0)
        self.cluster_ts: int = max(int(time.time() * 1000), last + 1)
        self.port = 0
        self._http: Optional[HTTPServer] = None
        self._sockets: list[socket.socket] = []
        group.servers.append(self)

    async def start(self, port: int = 0) -> None:
        self._sockets = bind_sockets(port, self.bind_address, family=socket.AF_INET)
        self.port = self._sockets[0].getsockname()[1]
        self._http = HTTPServer(make_app(self), xheaders=False)
        self._http.add_sockets(self._sockets)

    async def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def is_active(self) -> bool:
        return self.group.active_id == self.rm_id

    @property
    def ha_state(self) -> str:
        return "ACTIVE" if self.is_active else "STANDBY"

    def active_url(self) -> str:
        active = self.group.server(self.group.active_id)
        return active.url if active is not None else ""

    def failover(self) -> str:
        return self.group.failover()

    def cluster_info(self) -> dict[str, Any]:
        ha = self.group.ha_enabled
        return {
            "id": self.cluster_ts,
            "startedOn": self.cluster_ts,
            "state": "STARTED",
            "haState": self.ha_state,
            "rmStateStoreName": (
                "org.apache.hadoop.yarn.server.resourcemanager.recovery.ZKRMStateStore" if ha
                else "org.apache.hadoop.yarn.server.resourcemanager.recovery.NullRMStateStore"
            ),
            "resourceManagerVersion": HADOOP_VERSION,
            "resourceManagerBuildVersion": _BUILD,
            "resourceManagerVersionBuiltOn": "2023-06-18T08:22Z",
            "hadoopVersion": HADOOP_VERSION,
            "hadoopBuildVersion": _BUILD,
            "hadoopVersionBuiltOn": "2023-06-18T08:22Z",
            "haZooKeeperConnectionState": "CONNECTED" if ha else "ResourceManager HA is not enabled.",
        }
