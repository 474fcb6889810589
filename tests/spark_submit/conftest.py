"""Fixtures for the minicluster's spark-submit and ApplicationMaster tests."""

from __future__ import annotations

import glob
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AM_PY = os.path.join(REPO, "yarn_gateway", "minicluster", "am.py")


def cluster_env() -> str:
    return os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")


@pytest.fixture
def cluster_python() -> str:
    """The cluster-side interpreter with pyspark (skip when `make cluster-env` has not run)."""
    py = os.path.join(cluster_env(), "bin", "python")
    pyspark = glob.glob(os.path.join(cluster_env(), "lib", "python3*", "site-packages", "pyspark"))
    if not os.access(py, os.X_OK) or not pyspark:
        pytest.skip("cluster env with pyspark missing (run `make cluster-env`)")
    return py


class AmRecorder:
    """A stand-in for the RM's private AM endpoints: records every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any], str]] = []
        self.event = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                outer.posts.append((self.path, body, self.headers.get("X-Minicluster-Am-Token", "")))
                outer.event.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.posts]


@pytest.fixture
def am_recorder() -> Iterator[AmRecorder]:
    rec = AmRecorder()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


class ClusterThread:
    """A real MiniCluster on its own event loop in a thread, plus a fake SPARK_HOME for it."""

    def __init__(self, **kwargs: Any) -> None:
        import asyncio
        import tempfile

        from yarn_gateway.minicluster.cli import container_properties
        from yarn_gateway.minicluster.cluster import MiniCluster
        from yarn_gateway.minicluster.spark_home import install_fake_spark_home

        # Containers may run as other users: the base dir must be traversable, pytest's is 0700.
        self.base = tempfile.mkdtemp(prefix="sparksubmit-mc-", dir="/tmp")
        os.chmod(self.base, 0o711)
        kwargs.setdefault("extra_yarn_site", container_properties())
        self.mc = MiniCluster(self.base, **kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.mc.start(), self.loop).result(60)
        self.conf_dir = self.mc.conf_dir
        self.spark_home = install_fake_spark_home(os.path.join(self.base, "spark-home"), self.conf_dir)

    @property
    def rm_url(self) -> str:
        return self.mc.active_rm_url

    def active_rm_url_is(self, index: int) -> bool:
        return self.mc.active_rm_url == self.mc.rm_urls[index]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_HOME")}
        env.update(HADOOP_CONF_DIR=self.conf_dir, SPARK_HOME=self.spark_home)
        env.update(extra)
        return env

    def container_log(self, app_id: str, name: str) -> str:
        paths = glob.glob(os.path.join(self.base, "nm-logs", app_id, "*", name))
        return "".join(open(p, encoding="utf-8", errors="replace").read() for p in sorted(paths))

    def close(self) -> None:
        import asyncio
        import shutil

        async def stop_and_drain() -> None:
            await self.mc.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(others, timeout=15) if others else None

        try:
            asyncio.run_coroutine_threadsafe(stop_and_drain(), self.loop).result(60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def minicluster() -> Iterator[ClusterThread]:
    """An insecure minicluster where root may impersonate alice (and nobody else)."""
    mc = ClusterThread(proxyusers={"root": {"users": "alice", "hosts": "*"}})
    yield mc
    mc.close()
