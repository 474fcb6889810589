"""Per-user and global kernel limits through the real gateway (local kernels: fast)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from yarn_gateway.kernels.session_record import new_record
from yarn_gateway.kernels.store import DirectoryStore


def limits(**values: Any) -> dict[str, Any]:
    return {"KernelLimits": values}


async def start(gw: Any, user: str, env: dict[str, str] | None = None) -> Any:
    return await gw.client(user).request("POST", "api/kernels", {"name": "python_local", "env": env or {}})


async def stop(gw: Any, user: str, kid: str) -> None:
    assert (await gw.client(user).request("DELETE", f"api/kernels/{kid}")).code == 204


async def test_per_user_limit_refuses_at_the_limit_and_allows_below(make_gateway: Any) -> None:
    gw = await make_gateway(limits(max_kernels_per_user=2))
    first, second = await start(gw, "alice"), await start(gw, "alice")
    assert (first.code, second.code) == (201, 201)
    r = await start(gw, "alice")
    assert r.code == 403, r.body
    assert r.body["message"] == ("alice has 2 of 2 kernels allowed per user (KernelLimits.max_kernels_per_user); "
                                 "shut one down first.")
    assert r.body["reason"] == "Kernel limit reached" and len(gw.registry.kernels) == 2
    assert (await start(gw, "bob")).code == 201  # another user is below the limit
    await stop(gw, "alice", first.body["id"])
    again = await start(gw, "alice")  # below the limit again
    assert again.code == 201
    for kid, user in ((second.body["id"], "alice"), (again.body["id"], "alice")):
        await stop(gw, user, kid)


async def test_global_limit_and_admins_are_not_exempt_by_default(make_gateway: Any) -> None:
    gw = await make_gateway(limits(max_kernels=2))
    a, b = await start(gw, "alice"), await start(gw, "bob")
    assert (a.code, b.code) == (201, 201)
    r = await start(gw, "admin")
    assert r.code == 403
    assert "The gateway runs 2 of 2 kernels allowed in total (KernelLimits.max_kernels)" in r.body["message"]
    await stop(gw, "bob", b.body["id"])
    c = await start(gw, "admin")
    assert c.code == 201
    await stop(gw, "alice", a.body["id"])
    await stop(gw, "admin", c.body["id"])


async def test_exempt_admins_when_configured(make_gateway: Any) -> None:
    gw = await make_gateway(limits(max_kernels=1, max_kernels_per_user=1, exempt_admins=True))
    a = await start(gw, "alice")
    assert a.code == 201
    assert (await start(gw, "bob")).code == 403  # a non-admin still is limited
    admin_kids = []
    for _ in range(2):
        r = await start(gw, "admin")
        assert r.code == 201, r.body
        admin_kids.append(r.body["id"])
    for kid in [a.body["id"], *admin_kids]:
        await stop(gw, "admin", kid)


async def test_kernels_count_against_their_owner_when_an_admin_impersonates(make_gateway: Any) -> None:
    gw = await make_gateway(limits(max_kernels_per_user=1))
    a = await start(gw, "alice")
    r = await start(gw, "admin", {"KERNEL_USERNAME": "alice"})
    assert r.code == 403 and r.body["message"].startswith("alice has 1 of 1 kernels allowed per user")
    as_bob = await start(gw, "admin", {"KERNEL_USERNAME": "bob"})
    assert as_bob.code == 201
    await stop(gw, "alice", a.body["id"])
    await stop(gw, "admin", as_bob.body["id"])


async def test_kernels_being_launched_count(make_gateway: Any) -> None:
    gw = await make_gateway(limits(max_kernels_per_user=2))
    replies = await asyncio.gather(*(start(gw, "alice") for _ in range(5)))
    codes = sorted(r.code for r in replies)
    assert codes == [201, 201, 403, 403, 403], [(r.code, r.body) for r in replies]
    for r in replies:
        if r.code == 201:
            await stop(gw, "alice", r.body["id"])


async def test_kernels_recorded_by_another_gateway_count(make_gateway: Any, sessions_dir: Any) -> None:
    gw = await make_gateway({**limits(max_kernels_per_user=1, max_kernels=3),
                             "SessionKeeper": {"recover_on_start": False, "sweep_interval": 0.0}})
    # What another active/active instance sharing the store writes for its YARN kernels.
    store = DirectoryStore(directory=str(sessions_dir))
    await store.start()
    others = [str(uuid.uuid4()) for _ in range(2)]
    for kid, owner in zip(others, ("alice", "carol")):
        await store.put(new_record(kernel_id=kid, name="spark_python_yarn_cluster", owner=owner, started_by=owner,
                                    gateway_id="default", provisioner="YarnProvisioner", provisioner_info={},
                                    env={"KERNEL_USERNAME": owner}, connection_info=None, state="running"))
    r = await start(gw, "alice")
    assert r.code == 403 and r.body["message"].startswith("alice has 1 of 1 kernels allowed per user")
    b = await start(gw, "bob")  # 2 recorded + 1 new = 3: at the global limit, allowed
    assert b.code == 201
    r = await start(gw, "admin")
    assert r.code == 403 and "runs 3 of 3 kernels allowed in total" in r.body["message"]
    # Records of a different gateway cluster (another gateway_id) do not count.
    await store.remove(others[0])
    await store.put(new_record(kernel_id=others[0], name="x", owner="alice", started_by="alice",
                                gateway_id="elsewhere", provisioner="YarnProvisioner", state="running"))
    a = await start(gw, "alice")
    assert a.code == 201, a.body
    await stop(gw, "alice", a.body["id"])
    await stop(gw, "bob", b.body["id"])
