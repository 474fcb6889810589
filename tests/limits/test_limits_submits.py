"""The spark-submit queue cap: YarnServices.max_queued_submits answers 429 with Retry-After."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from traitlets.config import Config

from helpers.stub_spark import StubSpark
from yarn_gateway.errors import GatewayError
from yarn_gateway.provisioners.services import YarnServices

SPEC = "spark_python_yarn_cluster"


def services(**cfg: Any) -> YarnServices:
    c = Config()
    for k, v in cfg.items():
        setattr(c.YarnServices, k, v)
    return YarnServices(config=c)


async def test_submit_slot_refuses_beyond_the_queue_cap_and_admits_below() -> None:
    svc = services(max_concurrent_submits=1, max_queued_submits=1, submit_retry_after=7)
    release = asyncio.Event()

    async def hold() -> None:
        async with svc.submit_slot():
            await release.wait()

    running = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    assert (svc.submits_running, svc.submits_waiting) == (1, 1)
    with pytest.raises(GatewayError) as info:
        async with svc.submit_slot():
            pass
    err = info.value
    assert err.status == 429 and err.headers == {"Retry-After": "7"}
    assert "1 kernel launches are already waiting for one of the 1 spark-submit slots" in err.message
    assert "YarnServices.max_queued_submits" in err.message and svc.submits_waiting == 1
    release.set()
    await asyncio.gather(running, waiting)
    async with svc.submit_slot():  # nobody waits now: admitted
        assert svc.submits_running == 1


async def test_unlimited_queue_by_default() -> None:
    svc = services(max_concurrent_submits=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with svc.submit_slot():
            await release.wait()

    tasks = [asyncio.ensure_future(hold()) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert (svc.submits_running, svc.submits_waiting) == (1, 5)
    release.set()
    await asyncio.gather(*tasks)


async def _burst(gw: Any, n: int) -> list[Any]:
    body = {"name": SPEC, "env": {}}
    return list(await asyncio.gather(*(gw.client("alice").request("POST", "api/kernels", body) for _ in range(n))))


async def test_gateway_answers_429_with_retry_after_when_the_queue_is_full(make_gateway: Any, tmp_path: Any) -> None:
    stub = StubSpark(tmp_path, sleep=2.0)
    gw = await make_gateway(stub.config(max_concurrent_submits=1, max_queued_submits=1, submit_retry_after=12))
    replies = await _burst(gw, 3)
    by_code = sorted(replies, key=lambda r: r.code)
    assert [r.code for r in by_code] == [429, 500, 500], [(r.code, r.body) for r in replies]
    refused = by_code[0]
    assert refused.headers.get("Retry-After") == "12"
    assert refused.body["reason"] == "Too many launches"
    assert "1 kernel launches are already waiting" in refused.body["message"]
    assert "at most 1 may wait" in refused.body["message"]
    assert len(stub.argvs()) == 2  # the refused launch never ran spark-submit
    assert gw.registry.kernels == {}


async def test_gateway_queues_launches_below_the_cap(make_gateway: Any, tmp_path: Any) -> None:
    stub = StubSpark(tmp_path, sleep=1.0)
    gw = await make_gateway(stub.config(max_concurrent_submits=1, max_queued_submits=2))
    replies = await _burst(gw, 3)
    assert [r.code for r in replies] == [500, 500, 500], [(r.code, r.body) for r in replies]  # all reached the stub
    assert len(stub.argvs()) == 3
