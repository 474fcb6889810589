"""Fixtures for the minicluster RM/NM tests: real servers on 127.0.0.1, real processes.

Clusters live under a fresh dir in /tmp (not pytest's 0700 tmp_path) so containers that run
as other Unix users (when the tests run as root) can traverse to their working dirs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from typing import Any, Callable, Optional

import pytest
import requests

from yarn_gateway.minicluster.cluster import MiniCluster


class Rest:
    """Blocking HTTP against one RM, always run in a thread (the RM shares the test's loop)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return await asyncio.to_thread(requests.request, method, self.url + path, **kw)

    async def submit(
        self,
        command: str = "/bin/sleep 30",
        *,
        user: Optional[str] = "alice",
        queue: Optional[str] = None,
        memory: int = 1024,
        name: str = "test-app",
        tags: Optional[list[str]] = None,
        app_type: str = "SPARK",
        max_attempts: int = 1,
        env: Optional[dict[str, str]] = None,
        local_resources: Optional[dict[str, str]] = None,
        params: Optional[dict[str, str]] = None,
    ) -> str:
        q = dict(params or {})
        if user:
            q["user.name"] = user
        r = await self.request("POST", "/ws/v1/cluster/apps/new-application", params=q)
        assert r.status_code == 200, r.text
        app_id = r.json()["application-id"]
        body: dict[str, Any] = {
            "application-id": app_id,
            "application-name": name,
            "am-container-spec": {
                "commands": {"command": command + " 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"},
                "environment": {"entry": [{"key": k, "value": v} for k, v in (env or {}).items()]},
                "local-resources": {"entry": [
                    {"key": k, "value": {"resource": f"file://{v}", "type": "FILE", "visibility": "APPLICATION",
                                         "size": 0, "timestamp": 0}}
                    for k, v in (local_resources or {}).items()]},
            },
            "max-app-attempts": max_attempts,
            "resource": {"memory": memory, "vCores": 1},
            "application-type": app_type,
            "application-tags": {"tag": tags or []},
        }
        if queue:
            body["queue"] = queue
        r = await self.request("POST", "/ws/v1/cluster/apps", params=q, json=body)
        assert r.status_code == 202, r.text
        assert r.headers["Location"].endswith("/ws/v1/cluster/apps/" + app_id)
        assert r.content == b""
        return app_id

    async def app(self, app_id: str) -> dict[str, Any]:
        r = await self.request("GET", f"/ws/v1/cluster/apps/{app_id}")
        assert r.status_code == 200, r.text
        return r.json()["app"]

    async def wait_state(self, app_id: str, *states: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            app = await self.app(app_id)
            if app["state"] in states:
                return app
            if time.monotonic() > deadline:
                raise AssertionError(f"{app_id} is {app['state']}, not {states}: {app['diagnostics']}")
            await asyncio.sleep(0.05)

    async def am_call(self, mc: MiniCluster, app_id: str, action: str, body: dict[str, Any],
                      token: Optional[str] = None) -> requests.Response:
        """What B's ApplicationMaster wrapper does (token from the container env)."""
        app = mc.apps[app_id]
        tok = token if token is not None else app.attempts[-1].token
        return await self.request("POST", f"/ws/v1/minicluster/apps/{app_id}/{action}", json=body,
                                  headers={"X-Minicluster-Am-Token": tok})


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def make_cluster() -> Any:
    clusters: list[MiniCluster] = []
    dirs: list[str] = []

    async def factory(**kw: Any) -> MiniCluster:
        base = tempfile.mkdtemp(prefix="minicluster-test-")
        os.chmod(base, 0o711)
        dirs.append(base)
        mc = MiniCluster(base, **kw)
        await mc.start()
        clusters.append(mc)
        return mc

    yield factory
    for mc in clusters:
        await mc.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def cluster(make_cluster: Any) -> MiniCluster:
    return await make_cluster()


AM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "am_script_rm.py")


class FakeAM:
    """Submits an app whose container runs am_script_rm.py (localized as a local resource)."""

    def __init__(self, api: Rest, mc: MiniCluster, mode: str = "SUCCEEDED", spawn: bool = False) -> None:
        self.api, self.mc, self.mode, self.spawn = api, mc, mode, spawn
        tag = uuid.uuid4().hex[:8]
        self.go_register = os.path.join(mc.base_dir, f"go-{tag}-register")
        self.go_unregister = os.path.join(mc.base_dir, f"go-{tag}-unregister")

    async def submit(self, **kw: Any) -> str:
        cmd = f"/usr/bin/python3 am.py {self.mode} {self.go_register} {self.go_unregister}"
        if self.spawn:
            cmd += " spawn"
        return await self.api.submit(cmd, local_resources={"am.py": AM_SCRIPT}, **kw)

    def allow_register(self) -> None:
        open(self.go_register, "w").close()

    def allow_unregister(self) -> None:
        open(self.go_unregister, "w").close()


@pytest.fixture
def fake_am() -> type[FakeAM]:
    return FakeAM


@pytest.fixture
def rest() -> type[Rest]:
    return Rest


@pytest.fixture
def wait() -> Callable[..., Any]:
    return wait_until
