"""Session records: what a gateway needs to reconnect to a running kernel after a restart.

A record is a JSON object (see :func:`make_record`) holding the owner, the kernelspec,
the connection info (with the kernel's HMAC key: records are secrets — files are 0600,
ZooKeeper nodes carry ACLs), the provisioner's checkpoint (YARN application id, control
port) and timestamps. It is written as soon as the application id is known, updated when
the kernel connects, and removed when the kernel ends.

:class:`SessionStore` is the contract; :class:`DirectoryStore` keeps one file per kernel
(atomic write-then-rename, safe on a shared filesystem for active/passive pairs);
:class:`~yarn_gateway.kernels.zkstore.ZooKeeperStore` is for active/active gateways.
A record that cannot be read (truncated, corrupt) is skipped with a log line naming the
file; it never stops a gateway from starting or recovering the other kernels.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from ..utils import run_blocking

RECORD_VERSION = 1


def make_record(**fields: Any) -> dict[str, Any]:
    """A record with the fields every store understands (``kernel_id`` is required)."""
    if not fields.get("kernel_id"):
        raise ValueError("a session record needs a kernel_id")
    now = time.time()
    rec: dict[str, Any] = {"version": RECORD_VERSION, "created": now, "updated": now}
    rec.update(fields)
    return rec


def valid_record(rec: Any) -> bool:
    return (isinstance(rec, dict) and rec.get("version") == RECORD_VERSION and isinstance(rec.get("kernel_id"), str)
            and isinstance(rec.get("owner"), str))


class SessionStore(LoggingConfigurable):
    """Where session records live. All methods are coroutines and never block the loop."""

    kind = "base"

    async def put(self, record: dict[str, Any]) -> None:
        """Create or replace the record of ``record['kernel_id']``."""
        raise NotImplementedError

    async def get(self, kernel_id: str) -> Optional[dict[str, Any]]:
        """The record of ``kernel_id``, or None (also for an unreadable record)."""
        raise NotImplementedError

    async def remove(self, kernel_id: str) -> None:
        """Forget ``kernel_id`` (no error if unknown)."""
        raise NotImplementedError

    async def all(self) -> list[dict[str, Any]]:
        """Every readable record; unreadable ones are logged and skipped."""
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Try to become the one instance doing ``name`` (sweep, cull); yields whether we are."""
        yield True
        raise NotImplementedError  # pragma: no cover - subclasses override

    async def start(self) -> None:
        """Connect (if needed)."""

    async def stop(self) -> None:
        """Disconnect (if needed)."""


class DirectoryStore(SessionStore):
    """One ``<kernel_id>.json`` file per kernel in ``directory`` (mode 0700, files 0600)."""

    kind = "directory"

    directory = Unicode(config=True, help="Directory of session records (shared filesystem for active/passive).")

    @default("directory")
    def _directory_default(self) -> str:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return os.path.join(base, "yarn-gateway", "sessions")

    def _path(self, kernel_id: str) -> str:
        if not kernel_id or "/" in kernel_id or kernel_id.startswith("."):
            raise ValueError(f"bad kernel id {kernel_id!r}")
        return os.path.join(self.directory, f"{kernel_id}.json")

    async def start(self) -> None:
        await run_blocking(os.makedirs, self.directory, 0o700, True)

    def _write(self, record: dict[str, Any]) -> None:
        path = self._path(record["kernel_id"])
        tmp = f"{path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    def _read(self, path: str) -> Optional[dict[str, Any]]:
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.log.warning("Skipping unreadable session record %s: %s", path, exc)
            return None
        if not valid_record(rec):
            self.log.warning("Skipping session record %s: not a yarn-gateway record (version %r)", path,
                             rec.get("version") if isinstance(rec, dict) else None)
            return None
        return rec

    def _all(self) -> list[dict[str, Any]]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(".json"):
                rec = self._read(os.path.join(self.directory, name))
                if rec is not None:
                    out.append(rec)
        return out

    async def put(self, record: dict[str, Any]) -> None:
        record = dict(record, updated=time.time())
        await run_blocking(self._write, record)

    async def get(self, kernel_id: str) -> Optional[dict[str, Any]]:
        return await run_blocking(self._read, self._path(kernel_id))

    async def remove(self, kernel_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await run_blocking(os.remove, self._path(kernel_id))

    async def all(self) -> list[dict[str, Any]]:
        return await run_blocking(self._all)

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        path = os.path.join(self.directory, f".{name}.lock")

        def acquire() -> Optional[int]:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            return fd

        fd = await run_blocking(acquire)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
