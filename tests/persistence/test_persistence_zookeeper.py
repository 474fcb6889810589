"""Issue 15, item 4: the ZooKeeper session store refuses an open ACL unless told, creates its
nodes with the configured (digest) ACL, and trusts only records sealed with the gateway's key.

A real ZooKeeper (a JVM) per test; YARN kernels on the stand-in YARN (helpers.stub_yarn), the
real gateway in-process, restarted in-process.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

from helpers.fake_rm import FakeRM
from helpers.stub_yarn import StubYarn
from yarn_gateway.kernels.housekeeping import sweep
from yarn_gateway.kernels.record_mac import seal
from yarn_gateway.kernels.store import StoreConfigError

pytestmark = [pytest.mark.zookeeper, pytest.mark.jvm]
SPEC = "stub_yarn"
ROOT = "/yarn-gateway/test"
CREDS = "yarngw:" + "s3cret-" * 3


def _client(zookeeper: Any, auth: bool) -> KazooClient:
    zk = KazooClient(hosts=zookeeper.hosts, timeout=10, auth_data=[("digest", CREDS)] if auth else None)
    zk.start(10)
    return zk


def _close(*clients: KazooClient) -> None:
    for zk in clients:
        zk.stop()
        zk.close()


def _zk_config(zookeeper: Any, tmp_path: Any, **store: Any) -> dict[str, Any]:
    return {"SessionKeeper": {"store": "zookeeper", "sweep_interval": 0.0},
            "ZooKeeperStore": {"hosts": zookeeper.hosts, "root": ROOT, "record_key_file": str(tmp_path / "zk.key"),
                               **store}}


def _digest(tmp_path: Any) -> dict[str, Any]:
    path = tmp_path / "zk-credentials"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(CREDS + "\n")
    return {"acl_scheme": "digest", "digest_credentials_file": str(path)}


async def _run(gw: Any, kid: str, code: str, user: str = "alice") -> str:
    ws = await gw.client(user).connect(kid)
    try:
        return (await ws.execute(code)).text
    finally:
        ws.close()


async def _start(gw: Any, user: str = "alice") -> str:
    r = await gw.client(user).request("POST", "api/kernels", {"name": SPEC}, timeout=60)
    assert r.code == 201, r.body
    return str(r.body["id"])


async def test_an_open_acl_is_refused_unless_explicitly_allowed(zookeeper: Any, make_gateway: Any,
                                                                tmp_path: Any) -> None:
    with pytest.raises(StoreConfigError) as err:
        await make_gateway(_zk_config(zookeeper, tmp_path))
    assert str(err.value).startswith("ZooKeeperStore.acl_scheme is not set: session records (they hold every "
                                     "kernel's key) would be readable and writable by anyone")
    assert "allow_open_acl = True" in str(err.value)
    zk = _client(zookeeper, auth=False)
    try:
        assert not zk.exists(ROOT)  # refused before anything was created
        gw = await make_gateway(_zk_config(zookeeper, tmp_path, allow_open_acl=True))
        await gw.registry.sessions._get_store()
        assert zk.get_acls(f"{ROOT}/sessions")[0] == OPEN_ACL_UNSAFE  # as asked for, explicitly
        kid = await gw.client("alice").start_kernel()
        assert await _run(gw, kid, "1 + 2") == "3"
    finally:
        _close(zk)


async def test_digest_acl_nodes_are_private_and_only_sealed_records_are_trusted(
        zookeeper: Any, make_gateway: Any, stub: StubYarn, fake_rm: FakeRM, tmp_path: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    anyone, gateway = _client(zookeeper, auth=False), _client(zookeeper, auth=True)
    try:
        # What an earlier version left: open nodes, and a record without a MAC (owner bob).
        legacy = str(uuid.uuid4())
        anyone.ensure_path(f"{ROOT}/sessions", acl=OPEN_ACL_UNSAFE)
        anyone.create(f"{ROOT}/sessions/{legacy}", json.dumps(
            {"version": 1, "kernel_id": legacy, "owner": "bob", "name": SPEC, "gateway_id": "default",
             "env": {"KERNEL_USERNAME": "bob"}, "connection_info": None, "state": "launching"}).encode(),
            acl=OPEN_ACL_UNSAFE)
        stub.scenario(launch=True)
        cfg = {**stub.config(), **_zk_config(zookeeper, tmp_path, **_digest(tmp_path))}
        first = await make_gateway(cfg)
        kid = await _start(first)
        assert await _run(first, kid, "x = 'kept'; x") == "'kept'"
        await sweep(first.registry.sessions)  # takes the sweep lock: a lock node
        node = f"{ROOT}/sessions/{kid}"
        ours = [make_digest_acl(*CREDS.split(":"), all=True)]
        for path in (ROOT, f"{ROOT}/sessions", f"{ROOT}/locks", f"{ROOT}/locks/sweep", node,
                     f"{ROOT}/sessions/{legacy}"):
            acls, _ = gateway.get_acls(path)
            assert [(a.id.scheme, a.id.id, a.perms) for a in acls] == [
                (a.id.scheme, a.id.id, a.perms) for a in ours], path
        for call in (lambda: anyone.get(node), lambda: anyone.get_children(f"{ROOT}/sessions"),
                     lambda: anyone.set(node, b"{}"), lambda: anyone.get(f"{ROOT}/sessions/{legacy}")):
            with pytest.raises(NoAuthError):
                call()
        data, _ = gateway.get(node)
        assert json.loads(data)["mac"].startswith("hmac-sha256:")
        # A holder of the ZooKeeper credentials without the record key forges a record for bob.
        forged_id = str(uuid.uuid4())
        inner = dict(json.loads(data)["record"], kernel_id=forged_id, owner="bob", started_by="bob")
        inner["env"] = {**inner["env"], "KERNEL_USERNAME": "bob"}
        gateway.create(f"{ROOT}/sessions/{forged_id}", seal(secrets.token_bytes(32), inner))
        await first.app.stop_server()

        second = await make_gateway(cfg)
        assert [m["id"] for m in (await second.client("alice").request("GET", "api/kernels")).body] == [kid]
        assert (await second.client("bob").request("GET", "api/kernels")).body == []
        assert (await second.client("bob").request("GET", f"api/kernels/{forged_id}")).code == 404
        assert await _run(second, kid, "x") == "'kept'"  # recovered through ZooKeeper
        new = await _start(second)
        assert await _run(second, new, "'still' + ' fine'") == "'still fine'"
        log = capfd.readouterr().err
        assert f"ZooKeeper node {ROOT}/sessions had an open ACL" in log
        assert f"Ignoring session record {ROOT}/sessions/{legacy}: it was written by a yarn-gateway version " \
               "before session-record MACs" in log
        assert f"Ignoring session record {ROOT}/sessions/{forged_id}: its MAC does not verify" in log
        assert gateway.exists(f"{ROOT}/sessions/{legacy}") and gateway.exists(f"{ROOT}/sessions/{forged_id}")
        for k in (kid, new):
            assert (await second.client("alice").request("DELETE", f"api/kernels/{k}")).code == 204
    finally:
        _close(anyone, gateway)


async def test_digest_credentials_must_be_private(zookeeper: Any, make_gateway: Any, tmp_path: Any) -> None:
    cfg = _zk_config(zookeeper, tmp_path, **_digest(tmp_path))
    os.chmod(tmp_path / "zk-credentials", 0o644)
    with pytest.raises(StoreConfigError, match=r"digest_credentials_file: .* is accessible by group or others"):
        await make_gateway(cfg)
    os.chmod(tmp_path / "zk-credentials", 0o600)
    gw = await make_gateway(cfg)
    kid = await gw.client("alice").start_kernel()
    assert await _run(gw, kid, "4 + 4") == "8"
