"""Session records in ZooKeeper (kazoo), for active/active gateways.

Records are znodes ``<root>/sessions/<kernel_id>`` holding the record's JSON; the
one-instance-at-a-time jobs (orphan sweep, culling) take kazoo locks under
``<root>/locks/``. Every kazoo call is blocking and runs in the executor. With
``acl_scheme = 'sasl'`` (Kerberos on) nodes are readable and writable only by the
gateway's principal; with ``'digest'`` only by holders of ``digest_credentials``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Optional

from traitlets import Float, Unicode

from ..utils import run_blocking
from .store import SessionStore, valid_record


class ZooKeeperStore(SessionStore):
    """See the module docstring."""

    kind = "zookeeper"

    hosts = Unicode("127.0.0.1:2181", config=True, help="ZooKeeper connection string (host:port,...).")
    root = Unicode("/yarn-gateway/default", config=True, help="Root znode of this gateway cluster.")
    acl_scheme = Unicode("", config=True, help="'' (open), 'digest' or 'sasl' (Kerberos).")
    digest_credentials = Unicode("", config=True, help="user:password for the digest scheme (keep it secret).")
    sasl_principal = Unicode("", config=True, help="Principal allowed on the nodes with the sasl scheme.")
    timeout = Float(15.0, config=True, help="Seconds to connect to ZooKeeper.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._zk: Any = None
        self._acl: Optional[list[Any]] = None

    async def start(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.security import make_acl, make_digest_acl

        auth: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {}
        if self.acl_scheme == "digest":
            user, _, pw = self.digest_credentials.partition(":")
            self._acl = [make_digest_acl(user, pw, all=True)]
            auth = [("digest", self.digest_credentials)]
        elif self.acl_scheme == "sasl":
            self._acl = [make_acl("sasl", self.sasl_principal, all=True)]
            kwargs["sasl_options"] = {"mechanism": "GSSAPI", "service": "zookeeper"}
        zk = KazooClient(hosts=self.hosts, timeout=self.timeout, auth_data=auth or None, **kwargs)
        await run_blocking(zk.start, self.timeout)
        await run_blocking(zk.ensure_path, f"{self.root}/sessions", self._acl)
        await run_blocking(zk.ensure_path, f"{self.root}/locks", self._acl)
        self._zk = zk

    async def stop(self) -> None:
        if self._zk is not None:
            zk, self._zk = self._zk, None
            await run_blocking(zk.stop)
            await run_blocking(zk.close)

    def _node(self, kernel_id: str) -> str:
        if not kernel_id or "/" in kernel_id:
            raise ValueError(f"bad kernel id {kernel_id!r}")
        return f"{self.root}/sessions/{kernel_id}"

    def _put(self, record: dict[str, Any]) -> None:
        from kazoo.exceptions import NodeExistsError

        data = json.dumps(record).encode()
        node = self._node(record["kernel_id"])
        try:
            self._zk.create(node, data, acl=self._acl)
        except NodeExistsError:
            self._zk.set(node, data)

    def _get(self, kernel_id: str) -> Optional[dict[str, Any]]:
        from kazoo.exceptions import NoNodeError

        node = self._node(kernel_id)
        try:
            data, _ = self._zk.get(node)
        except NoNodeError:
            return None
        try:
            rec = json.loads(data)
        except ValueError as exc:
            self.log.warning("Skipping unreadable session record %s: %s", node, exc)
            return None
        if not valid_record(rec):
            self.log.warning("Skipping session record %s: not a yarn-gateway record", node)
            return None
        return rec

    def _all(self) -> list[dict[str, Any]]:
        out = []
        for kid in sorted(self._zk.get_children(f"{self.root}/sessions")):
            rec = self._get(kid)
            if rec is not None:
                out.append(rec)
        return out

    def _remove(self, kernel_id: str) -> None:
        from kazoo.exceptions import NoNodeError

        with contextlib.suppress(NoNodeError):
            self._zk.delete(self._node(kernel_id))

    async def put(self, record: dict[str, Any]) -> None:
        import time

        await run_blocking(self._put, dict(record, updated=time.time()))

    async def get(self, kernel_id: str) -> Optional[dict[str, Any]]:
        return await run_blocking(self._get, kernel_id)

    async def remove(self, kernel_id: str) -> None:
        await run_blocking(self._remove, kernel_id)

    async def all(self) -> list[dict[str, Any]]:
        return await run_blocking(self._all)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        lock = self._zk.Lock(f"{self.root}/locks/{name}")
        got = await run_blocking(lock.acquire, False)
        try:
            yield bool(got)
        finally:
            if got:
                await run_blocking(lock.release)
