"""Fixtures: the real gateway app in-process on an ephemeral loopback port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Callable

import pytest
from traitlets.config import Config

from helpers.gwclient import GatewayClient
from helpers.yarn_cluster import YarnCluster
from yarn_gateway.app import YarnGatewayApp

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "admin": "admin-token-0123456789"}


class RunningGateway:
    def __init__(self, app: YarnGatewayApp, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"

    def client(self, user: str = "alice") -> GatewayClient:
        return GatewayClient(self.url, TOKENS[user])

    @property
    def registry(self) -> Any:
        return self.app.registry


@pytest.fixture
def token_file(tmp_path: Any) -> str:
    path = tmp_path / "tokens"
    path.write_text("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture
def sessions_dir(tmp_path: Any) -> Any:
    return tmp_path / "sessions"


@pytest.fixture
async def make_gateway(token_file: str, sessions_dir: Any) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    started: list[YarnGatewayApp] = []

    async def make(extra: dict[str, Any] | None = None) -> RunningGateway:
        c = Config()
        c.YarnGatewayApp.port = 0
        c.YarnGatewayApp.ip = "127.0.0.1"
        c.TokenAuthenticator.token_file = token_file
        c.AccessPolicy.admin_users = {"admin"}
        # Local kernels (python_local) are off by default: the tests' users may use them.
        c.AccessPolicy.local_kernel_users = set(TOKENS)
        c.YarnGatewayApp.default_kernel_name = "python_local"
        c.KernelRegistry.launch_timeout = 60.0
        c.DirectoryStore.directory = str(sessions_dir)
        for section, values in (extra or {}).items():
            for k, v in values.items():
                setattr(getattr(c, section), k, v)
        app = YarnGatewayApp(config=c)
        port = await app.start_server()
        started.append(app)
        return RunningGateway(app, port)

    yield make
    for app in started:
        await app.stop_server()


@pytest.fixture(scope="session")
def yarn_cluster() -> Iterator[YarnCluster]:
    """The session's simple-mode real YARN (one RM, one NM): queues default and small."""
    cluster = YarnCluster.start("simple")
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def ha_cluster() -> Iterator[YarnCluster]:
    """The session's real YARN with two ResourceManagers and ZooKeeper (started when first asked for)."""
    cluster = YarnCluster.start("ha")
    yield cluster
    cluster.close()


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[RunningGateway]]) -> RunningGateway:
    return await make_gateway()
