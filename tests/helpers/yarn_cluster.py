"""The test suite's view of a real dev cluster (devcluster): what tests ask of YARN.

One simple-mode cluster serves the whole session (``yarn_cluster`` in
``helpers.gateway_fixtures``); the Kerberos and HA areas start their own. Clusters live
under /tmp at a fixed place per mode and port base, so ``YARNGW_KEEP_CLUSTER=1`` lets a
developer reuse a running one across pytest runs; otherwise each is stopped (by PID,
containers included) when the session ends.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from devcluster import Cluster, ClusterSpec
from helpers.waiting import wait_until_sync

#: Port bases of the suite's clusters (make run uses 20000). YARNGW_TEST_PORT_BASE moves them all,
#: so two test sessions on one machine never share a cluster.
_OFFSETS = {"simple": 0, "kerberos": 1000, "ha": 2000}


def default_port_base(mode: str) -> int:
    return int(os.environ.get("YARNGW_TEST_PORT_BASE", "21000")) + _OFFSETS[mode]


def keep_cluster() -> bool:
    return os.environ.get("YARNGW_KEEP_CLUSTER", "").lower() in ("1", "true", "yes")


class YarnCluster:
    """A running dev cluster plus the helpers tests use (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.conf_dir = cluster.conf_dir
        self.spark_conf_dir = cluster.spark_conf_dir
        self.spark_home = cluster.spark_home
        self.base = cluster.base

    @classmethod
    def start(cls, mode: str = "simple", port_base: Optional[int] = None, **spec: Any) -> YarnCluster:
        base = port_base or default_port_base(mode)
        spec.setdefault("proxy_users", "alice,bob")
        cluster = Cluster(ClusterSpec(base_dir=f"/tmp/yarngw-devcluster-{mode}-{base}", mode=mode, port_base=base,
                                      **spec))
        cluster.start()
        return cls(cluster)

    def close(self) -> None:
        if not keep_cluster():
            self.cluster.destroy()

    @property
    def rm_url(self) -> str:
        return self.cluster.rm_url

    def app_json(self, app_id: str) -> dict[str, Any]:
        return self.cluster.app(app_id)

    def apps_of(self, user: Optional[str] = None, states: str = "") -> list[dict[str, Any]]:
        params = {}
        if user:
            params["user"] = user
        if states:
            params["states"] = states
        return self.cluster.apps(**params)

    def live_apps(self, user: Optional[str] = None, tag: Optional[str] = None) -> list[dict[str, Any]]:
        """Applications that are not finished (NEW ... RUNNING), optionally of one user / with one tag."""
        live = self.apps_of(user, "NEW,NEW_SAVING,SUBMITTED,ACCEPTED,RUNNING")
        if tag:
            live = [a for a in live if tag in str(a.get("applicationTags", "")).split(",")]
        return live

    def kill_live_apps(self, tag: str = "yarn-gateway") -> list[str]:
        """Kill what a test left running (the cluster is shared); return the ids killed."""
        import requests

        killed = []
        for app in self.live_apps(tag=tag):
            url = f"{self.rm_url}/ws/v1/cluster/apps/{app['id']}/state"
            requests.put(url, json={"state": "KILLED"}, params={"user.name": self.cluster.spec.submitter},
                         timeout=10)
            killed.append(str(app["id"]))
        return killed

    def wait_app(self, app_id: str, states: set[str], timeout: float = 90) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def in_state() -> Optional[dict[str, Any]]:
            nonlocal last
            last = self.app_json(app_id)
            return last if last["state"] in states else None

        app: dict[str, Any] = wait_until_sync(in_state, timeout, interval=0.5,
                                              what=lambda: f"{app_id} in {sorted(states)} (still {last.get('state')})")
        return app

    def container_log(self, app_id: str, name: str) -> str:
        return self.cluster.container_log(app_id, name)

    def yarn(self, command: str, *args: str, **kw: Any) -> Any:
        return self.cluster.yarn(command, *args, **kw)

    def application_status(self, app_id: str, env: Optional[dict[str, str]] = None) -> dict[str, str]:
        """``yarn application -status <id>`` (the real Hadoop CLI) as {field: value}."""
        out = self.yarn("application", "-status", app_id, env=env)
        assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-2000:]
        report = {}
        for line in out.stdout.splitlines():
            key, sep, value = line.partition(" : ")
            if sep:
                report[key.strip()] = value.strip()
        assert report.get("Application-Id") == app_id, out.stdout
        return report

    def running_with_tag(self, tag: str) -> dict[str, tuple[str, str]]:
        """``yarn application -list -appStates RUNNING -appTags <tag>`` (the real CLI; Hadoop 3.3's
        ``-status`` prints no tags): {application id: (user, state)}."""
        out = self.yarn("application", "-list", "-appStates", "RUNNING", "-appTags", tag)
        assert out.returncode == 0, out.stdout[-1000:] + out.stderr[-2000:]
        rows = [line.split() for line in out.stdout.splitlines() if line.startswith("application_")]
        # Application-Id, Application-Name, Application-Type, User, Queue, State, Final-State, Progress, Tracking-URL
        return {row[0]: (row[3], row[5]) for row in rows}

    def gateway_config(self, port_range: str = "0..0", **yarn: Any) -> dict[str, Any]:
        """Config sections for make_gateway() that point a gateway at this cluster."""
        return {
            "YarnServices": {"hadoop_conf_dir": self.conf_dir, "spark_home": self.spark_home,
                             "spark_conf_dir": self.spark_conf_dir, "port_range": port_range,
                             "response_ip": "127.0.0.1", "response_advertise_host": "127.0.0.1",
                             "rm_poll_interval": 1.0, **yarn},
            # Small kernels for a 2-core machine: a 768m driver and one 512m executor unless a test asks.
            "KernelParameters": {"bounds": {"spark.driver.memory": {"max": "768m"},
                                            "spark.executor.memory": {"max": "512m"},
                                            "spark.executor.instances": {"max": 1}}},
        }


def container_user() -> str:
    """The Unix account YARN containers run as here (the NodeManager's: DefaultContainerExecutor)."""
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
