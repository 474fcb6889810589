"""Session records in ZooKeeper (kazoo), for active/active gateways.

Records are znodes ``<root>/sessions/<kernel_id>`` holding the sealed record (see
:mod:`.record_mac`); the one-instance-at-a-time jobs (orphan sweep, culling) take kazoo
locks under ``<root>/locks/``. Every kazoo call is blocking and runs in the executor.

Records hold every kernel's key, so the nodes must not be open to anyone who can reach
ZooKeeper. With ``acl_scheme = 'digest'`` every node the gateway creates (records, locks,
the root's path) is readable and writable only by holders of the digest credentials (from
``digest_credentials_file``); with ``'sasl'`` (Kerberos, needs the ``pure-sasl`` and
``kerberos`` Python packages) only by ``sasl_principal``, authenticated from the process's
default credential cache (``KRB5CCNAME``; not KerberosLogin's private cache). An open ACL
(``world:anyone``) is refused unless ``allow_open_acl``. At start, nodes of ours found with
an open ACL (made by an earlier version) are given the configured one.

Ancestors of ``root`` that do not exist yet are created with the configured ACL too: gateway
clusters with other credentials need their parent created beforehand (or another root).
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from traitlets import Bool, Enum, Float, Unicode

from ..utils import run_blocking
from .private_files import PrivateFileError, read_private
from .session_record import SessionRecord
from .store import KERNEL_ID, SessionStore, StoreConfigError

_CREDENTIALS_MAX = 4096


def world_access(acls: list[Any]) -> bool:
    """Whether a znode's ACL list lets anyone (scheme ``world``) do anything."""
    return any(getattr(acl.id, "scheme", "") == "world" and acl.perms for acl in acls)


class ZooKeeperStore(SessionStore):
    """See the module docstring."""

    kind = "zookeeper"

    hosts = Unicode("127.0.0.1:2181", config=True, help="ZooKeeper connection string (host:port,...).")
    root = Unicode("/yarn-gateway/default", config=True, help="Root znode of this gateway cluster.")
    acl_scheme = Enum(
        ["", "digest", "sasl"], "", config=True,
        help="""ACL of the znodes the gateway creates: 'digest' (digest_credentials_file), 'sasl' (Kerberos:
        sasl_principal) or '' (open: world:anyone may read every kernel's key and write records; refused
        unless allow_open_acl). Default: '' (the gateway does not start until one is chosen).""",
    )
    allow_open_acl = Bool(
        False, config=True,
        help="Accept acl_scheme '' (an open ACL: anyone who reaches ZooKeeper reads every kernel's key). "
        "Only for a ZooKeeper nobody else can reach. Default: False (refused).",
    )
    digest_credentials_file = Unicode(
        "", config=True,
        help="File holding 'user:password' for acl_scheme 'digest' (mode 0600, owned by the gateway's user). "
        "Every gateway sharing the store uses the same credentials.",
    )
    digest_credentials = Unicode(
        "", config=True,
        help="user:password for the digest scheme, inline (prefer digest_credentials_file: configuration files "
        "are often readable by others).",
    )
    sasl_principal = Unicode(
        "", config=True,
        help="The principal (as ZooKeeper names it, e.g. 'yarngw/host@REALM' or 'yarngw' with realm and host "
        "stripped) allowed on the nodes with acl_scheme 'sasl'. kazoo authenticates (GSSAPI) from the process's "
        "default credential cache (KRB5CCNAME in the gateway's environment), not from KerberosLogin's private one.",
    )
    timeout = Float(15.0, config=True, help="Seconds to connect to ZooKeeper.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._zk: Any = None
        self._acl: Optional[list[Any]] = None
        self._auth: list[tuple[str, str]] = []

    # -- configuration ------------------------------------------------------------------------
    def credentials(self) -> str:
        """The digest credentials (blocking); StoreConfigError if missing or unsafe."""
        if self.digest_credentials_file:
            try:
                raw = read_private(self.digest_credentials_file, _CREDENTIALS_MAX)
            except FileNotFoundError:
                raise StoreConfigError(f"ZooKeeperStore.digest_credentials_file {self.digest_credentials_file} "
                                       "does not exist") from None
            except PrivateFileError as exc:
                raise StoreConfigError(f"ZooKeeperStore.digest_credentials_file: {exc}") from None
            creds = raw.decode("utf-8", "replace").strip()
            where = self.digest_credentials_file
        else:
            creds, where = self.digest_credentials, "ZooKeeperStore.digest_credentials"
        user, sep, password = creds.partition(":")
        if not creds:
            raise StoreConfigError("ZooKeeperStore.acl_scheme is 'digest' but no credentials are configured: set "
                                   "ZooKeeperStore.digest_credentials_file to a file (mode 0600) holding user:password")
        if not sep or not user or not password or any(c.isspace() for c in user):
            raise StoreConfigError(f"{where} must hold user:password (one line)")
        return creds

    def _check_config(self) -> None:
        from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

        if self.acl_scheme == "":
            if not self.allow_open_acl:
                raise StoreConfigError(
                    f"ZooKeeperStore.acl_scheme is not set: session records (they hold every kernel's key) would be "
                    f"readable and writable by anyone who can reach ZooKeeper {self.hosts}. Set acl_scheme = "
                    "'digest' with digest_credentials_file, or 'sasl' with sasl_principal (Kerberos); "
                    "or allow_open_acl = True to accept an open ACL.")
            self._acl, self._auth = list(OPEN_ACL_UNSAFE), []
        elif self.acl_scheme == "digest":
            creds = self.credentials()
            user, _, password = creds.partition(":")
            self._acl, self._auth = [make_digest_acl(user, password, all=True)], [("digest", creds)]
        else:
            if not self.sasl_principal:
                raise StoreConfigError("ZooKeeperStore.acl_scheme is 'sasl' but sasl_principal is empty: name the "
                                       "gateway's principal as ZooKeeper sees it")
            if importlib.util.find_spec("puresasl") is None:
                raise StoreConfigError("ZooKeeperStore.acl_scheme 'sasl' needs the pure-sasl and kerberos Python "
                                       "packages (pip install pure-sasl kerberos)")
            self._acl, self._auth = [make_acl("sasl", self.sasl_principal, all=True)], []

    # -- connection ---------------------------------------------------------------------------
    async def start(self) -> None:
        from kazoo.client import KazooClient

        await super().start()  # prepare(): the ACL and the record key
        kwargs: dict[str, Any] = {}
        if self.acl_scheme == "sasl":
            kwargs["sasl_options"] = {"mechanism": "GSSAPI", "service": "zookeeper"}
        zk = KazooClient(hosts=self.hosts, timeout=self.timeout, auth_data=self._auth or None,
                         default_acl=self._acl, **kwargs)
        await run_blocking(zk.start, self.timeout)
        try:
            await run_blocking(self._ensure_nodes, zk)
        except BaseException:
            await run_blocking(zk.stop)
            await run_blocking(zk.close)
            raise
        self._zk = zk

    def _ensure_nodes(self, zk: Any) -> None:
        from kazoo.exceptions import NoAuthError

        paths = [self.root, f"{self.root}/sessions", f"{self.root}/locks"]
        try:
            for path in paths[1:]:
                zk.ensure_path(path, self._acl)
            if self.acl_scheme == "" or self._acl is None:
                return
            children = [f"{paths[1]}/{kid}" for kid in zk.get_children(paths[1])]
            for path in paths + children:
                acls, _stat = zk.get_acls(path)
                if world_access(acls):
                    zk.set_acls(path, self._acl)
                    self.log.warning("ZooKeeper node %s had an open ACL (world:anyone, made by an earlier "
                                     "yarn-gateway or by hand): set to the configured %s ACL", path, self.acl_scheme)
        except NoAuthError:
            raise StoreConfigError(
                f"ZooKeeper {self.hosts}: the gateway may not use {self.root} with its {self.acl_scheme or 'open'} "
                "credentials (the nodes exist with another ACL): use the credentials they were made with, or "
                "another ZooKeeperStore.root") from None

    async def stop(self) -> None:
        if self._zk is not None:
            zk, self._zk = self._zk, None
            await run_blocking(zk.stop)
            await run_blocking(zk.close)

    # -- records ------------------------------------------------------------------------------
    def _node(self, kernel_id: str) -> str:
        if not kernel_id or "/" in kernel_id or "\0" in kernel_id:
            raise ValueError(f"bad kernel id {kernel_id!r}")
        return f"{self.root}/sessions/{kernel_id}"

    def _put(self, record: SessionRecord) -> None:
        from kazoo.exceptions import NodeExistsError

        data = self._seal(record)
        node = self._node(record["kernel_id"])
        try:
            self._zk.create(node, data, acl=self._acl)
        except NodeExistsError:
            self._zk.set(node, data)

    def _get(self, kernel_id: str) -> tuple[Optional[SessionRecord], Optional[str]]:
        from kazoo.exceptions import NoAuthError, NoNodeError

        node = self._node(kernel_id)
        try:
            data, stat = self._zk.get(node)
        except NoNodeError:
            return None, None
        except NoAuthError:
            return None, self._reject(kernel_id, node, "the gateway may not read it (its ACL is another one)")
        if stat.dataLength > self.max_record_bytes:
            return None, self._reject(kernel_id, node, f"it is {stat.dataLength} bytes, more than "
                                      f"SessionStore.max_record_bytes ({self.max_record_bytes})")
        return self._open(kernel_id, bytes(data or b""), node)

    def _all(self) -> tuple[list[SessionRecord], dict[str, str]]:
        out, rejected = [], {}
        for kid in sorted(self._zk.get_children(f"{self.root}/sessions")):
            if not KERNEL_ID.fullmatch(kid):
                rejected[kid] = self._reject(kid, f"{self.root}/sessions/{kid}", "its name is not a kernel id")
                continue
            rec, reason = self._get(kid)
            if rec is not None:
                out.append(rec)
            elif reason is not None:
                rejected[kid] = reason
        return out, rejected

    def _remove(self, kernel_id: str) -> None:
        from kazoo.exceptions import NoNodeError

        with contextlib.suppress(NoNodeError):
            self._zk.delete(self._node(kernel_id))

    async def put(self, record: SessionRecord) -> None:
        record = record.copy()
        record["updated"] = time.time()
        await run_blocking(self._put, record)

    async def get(self, kernel_id: str) -> Optional[SessionRecord]:
        rec, reason = await run_blocking(self._get, kernel_id)
        self._note(kernel_id, reason)
        return rec

    async def remove(self, kernel_id: str) -> None:
        await run_blocking(self._remove, kernel_id)
        self.rejected.pop(kernel_id, None)

    async def all(self) -> list[SessionRecord]:
        records, self.rejected = await run_blocking(self._all)
        return records

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        lock = self._zk.Lock(f"{self.root}/locks/{name}")
        got = await run_blocking(lock.acquire, False)
        try:
            yield bool(got)
        finally:
            if got:
                await run_blocking(lock.release)

