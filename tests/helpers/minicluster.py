"""A real MiniCluster on its own event loop in a thread, with a fake SPARK_HOME, for tests.

Its own thread keeps the cluster's event loop independent of the gateway's (as two
hosts would be). Containers may run as other Unix users, so the base directory is made
under /tmp with mode 0711 (pytest's own tmp dirs are 0700).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
import threading
from typing import Any, Optional


class ClusterThread:
    def __init__(self, **kwargs: Any) -> None:
        from yarn_gateway.minicluster.cli import container_properties
        from yarn_gateway.minicluster.cluster import MiniCluster
        from yarn_gateway.minicluster.spark_home import install_fake_spark_home

        self.base = tempfile.mkdtemp(prefix="yarngw-mc-", dir="/tmp")
        os.chmod(self.base, 0o711)
        extra = dict(container_properties())
        extra.update(kwargs.pop("extra_yarn_site", {}) or {})
        self.mc = MiniCluster(self.base, extra_yarn_site=extra, **kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="minicluster")
        self.thread.start()
        self.run(self.mc.start(), 60)
        self.conf_dir = self.mc.conf_dir
        self.spark_home = install_fake_spark_home(os.path.join(self.base, "spark-home"), self.conf_dir)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        async def _call() -> Any:
            return fn(*args)

        return self.run(_call())

    @property
    def apps(self) -> dict[str, Any]:
        return dict(self.call(lambda: dict(self.mc.apps)))

    def app_json(self, app_id: str) -> dict[str, Any]:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.mc.active_rm_url}/ws/v1/cluster/apps/{app_id}", timeout=10) as r:
            return json.loads(r.read())["app"]  # type: ignore[no-any-return]

    def container_log(self, app_id: str, name: str) -> str:
        paths = glob.glob(os.path.join(self.base, "nm-logs", app_id, "*", name))
        out = []
        for p in sorted(paths):
            with open(p, encoding="utf-8", errors="replace") as f:
                out.append(f.read())
        return "".join(out)

    def gateway_config(self, port_range: str = "0..0", **yarn: Any) -> dict[str, Any]:
        """Config sections for make_gateway() that point a gateway at this cluster."""
        return {
            "YarnServices": {"hadoop_conf_dir": self.conf_dir, "spark_home": self.spark_home,
                             "port_range": port_range, "response_ip": "127.0.0.1",
                             "response_advertise_host": "127.0.0.1", "rm_poll_interval": 1.0, **yarn},
        }

    def close(self, timeout: Optional[float] = 60) -> None:
        async def stop_and_drain() -> None:
            await self.mc.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                await asyncio.wait(others, timeout=15)

        try:
            self.run(stop_and_drain(), timeout or 60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            shutil.rmtree(self.base, ignore_errors=True)
