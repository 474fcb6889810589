"""The ResourceManager client's typed errors, against the real ResourceManager (and a dead endpoint)."""

from __future__ import annotations

import socket

import pytest

from helpers.yarn_cluster import YarnCluster
from yarn_gateway.yarn.rm_client import RMClient, RMError, RMNotFound, RMRefused, RMUnavailable

pytestmark = pytest.mark.jvm

UNKNOWN = "application_1000000000000_0001"


async def test_unknown_application_is_rm_not_found(cluster: YarnCluster) -> None:
    rm = RMClient([cluster.rm_url], timeout=10)
    with pytest.raises(RMNotFound) as info:
        await rm.app(UNKNOWN)
    assert info.value.status == 404
    assert "answered 404" in str(info.value) and "Exception" not in str(info.value).split(":")[0]
    assert await rm.cached_state(UNKNOWN) is None  # unknown to YARN: a state of None, not an error
    with pytest.raises(RMNotFound):
        await rm.kill(UNKNOWN, wait=0)
    # A known application still answers (the session swap keeps normal calls working).
    apps = await rm.list_tagged("no-such-tag-anywhere")
    assert apps == []


async def test_bad_request_is_a_plain_rm_error(cluster: YarnCluster) -> None:
    rm = RMClient([cluster.rm_url], timeout=10)
    with pytest.raises(RMError) as info:
        await rm.app("not-an-application-id")
    assert type(info.value) is RMError and info.value.status == 400, (type(info.value), info.value.status)


async def test_no_resource_manager_is_rm_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: connection refused
        rm = RMClient([dead], timeout=5)
        with pytest.raises(RMUnavailable) as info:
            await rm.app(UNKNOWN)
    assert info.value.status is None and dead in str(info.value)
    assert not isinstance(info.value, (RMNotFound, RMRefused))
