"""Session records: what a gateway needs to reconnect to a running kernel after a restart.

A record is a JSON object (:class:`~.session_record.SessionRecord`) holding the owner, the kernelspec,
the connection info (with the kernel's HMAC key: records are secrets — files are 0600 in
a directory only the gateway's user may write, ZooKeeper nodes carry ACLs), the
provisioner's checkpoint (YARN application id, control port) and timestamps. It is
written as soon as the application id is known, updated when the kernel connects, and
removed when the kernel ends.

Records are authenticated (:mod:`.record_mac`): a store seals every record it writes with
the gateway's record key and trusts on read only those whose MAC verifies, that are no
larger than ``max_record_bytes`` and that name the kernel they are stored under.

:class:`SessionStore` is the contract; :class:`DirectoryStore` keeps one file per kernel
(atomic write-then-rename, safe on a shared filesystem for active/passive pairs);
:class:`~yarn_gateway.kernels.zkstore.ZooKeeperStore` is for active/active gateways.
A record that cannot be trusted (truncated, corrupt, planted, altered, of an older
version, a symbolic link) is ignored with one warning naming it; it is never attached and
never deleted by the gateway, and it never stops a gateway from starting or recovering
the other kernels.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from traitlets import Int, Unicode, default
from traitlets.config import LoggingConfigurable

from ..logs import safe_text
from ..utils import run_blocking
from .private_files import PrivateFileError, directory_problem, read_private, write_private
from .record_mac import RecordRejected, fingerprint, load_key, seal, unseal
from .session_record import RecordMalformed, SessionRecord, parse_record

KERNEL_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_APP_ID = re.compile(r"application_\d{1,20}_\d{1,10}")
_WARNED_MAX = 4096


class StoreConfigError(ValueError):
    """The session store's configuration or files are unsafe or unusable: the gateway does not start."""


class StoreUnusable(OSError):
    """The store cannot be used now (its directory vanished or became unsafe); health says so."""


class RecordTooLarge(ValueError):
    """A record to write is larger than ``max_record_bytes``."""


class SessionStore(LoggingConfigurable):
    """Where session records live. All methods are coroutines and never block the loop.

    Subclasses implement the storage; this base seals and verifies records (:meth:`_seal`,
    :meth:`_open`), loads the record key (:meth:`prepare`) and keeps :attr:`rejected`, the
    kernel ids whose stored record was found and not trusted at the last read."""

    kind = "base"

    record_key_file = Unicode(
        "", config=True,
        help="""File holding the key that authenticates session records (HMAC-SHA256; at least 32
        characters; mode 0600, owned by the gateway's user, in a directory nobody else may write).
        Generated at first start if absent. Default: DirectoryStore: `.record-key` inside its directory,
        so gateways sharing the directory (active/passive) share the key; ZooKeeperStore:
        $XDG_STATE_HOME/yarn-gateway/session-record.key (XDG_STATE_HOME defaults to ~/.local/state).
        Every gateway sharing a ZooKeeper store needs the same key: start one, then copy its key file
        (mode 0600) to the others before starting them; a gateway with another key ignores (and logs)
        the records of the others. The key's fingerprint is logged at start and shown by
        `yarn-gateway check`.""",
    )
    max_record_bytes = Int(
        8 * 1024 * 1024, config=True,
        help="Largest session record read or written, in bytes (records are normally a few KiB; a kernel's "
        "environment counts). A larger stored record is ignored (logged); a kernel whose record would be larger "
        "keeps running but does not survive a gateway restart.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key: Optional[bytes] = None
        #: kernel id -> why its stored record was not trusted (at the last read of it)
        self.rejected: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()

    # -- the record key ---------------------------------------------------------------------
    @property
    def key_path(self) -> str:
        return self.record_key_file or self._default_key_file()

    def _default_key_file(self) -> str:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return os.path.join(base, "yarn-gateway", "session-record.key")

    async def prepare(self) -> None:
        """Check the configuration and local files, and load (or generate) the record key;
        :class:`StoreConfigError` saying what to fix if anything is unsafe. Connects nowhere."""
        await run_blocking(self._prepare)

    def _prepare(self) -> None:
        self._check_config()
        path = self.key_path
        try:
            key, created = load_key(path)
        except (PrivateFileError, OSError) as exc:
            raise StoreConfigError(f"{type(self).__name__}.record_key_file: {exc}") from None
        if created:
            self.log.warning("Generated the session-record key %s (fingerprint %s). Gateways sharing this session "
                             "store need the same key: copy this file (mode 0600) to them.", path, fingerprint(key))
        else:
            self.log.info("Session records are authenticated with the key %s (fingerprint %s)", path,
                          fingerprint(key))
        self._key = key

    def _check_config(self) -> None:
        """Raise :class:`StoreConfigError` for an unsafe configuration (blocking; subclasses extend)."""

    # -- sealing and verifying --------------------------------------------------------------
    def _seal(self, record: SessionRecord) -> bytes:
        if self._key is None:
            raise RuntimeError("the session store was not prepared")
        data = seal(self._key, record)
        if len(data) > self.max_record_bytes:
            raise RecordTooLarge(f"Kernel {record['kernel_id']}: its session record would be {len(data)} bytes, more "
                                 f"than SessionStore.max_record_bytes ({self.max_record_bytes}); it is not saved "
                                 "and the kernel will not survive a gateway restart")
        return data

    def _open(self, kernel_id: str, data: bytes, where: str) -> tuple[Optional[SessionRecord], Optional[str]]:
        """(the trusted record stored as ``data`` at ``where``, None) or (None, why it is not trusted:
        logged once). Runs in the executor: it changes no state but the warning memory."""
        if self._key is None:
            raise RuntimeError("the session store was not prepared")
        try:
            rec = parse_record(unseal(self._key, kernel_id, data, self.max_record_bytes))
        except RecordMalformed as exc:
            return None, self._reject(kernel_id, where, RecordRejected(str(exc)), data)
        except RecordRejected as exc:
            return None, self._reject(kernel_id, where, exc, data)
        return rec, None

    def _reject(self, kernel_id: str, where: str, exc: RecordRejected | PrivateFileError | str,
                data: bytes = b"") -> str:
        """Log (once per record content) that the record at ``where`` is ignored; return why."""
        reason = exc.reason if isinstance(exc, RecordRejected) else str(exc)
        seen = (where, hashlib.sha256(data).hexdigest() if data else reason)
        if seen in self._warned:
            return reason
        if len(self._warned) >= _WARNED_MAX:
            self._warned.clear()
        self._warned.add(seen)
        if isinstance(exc, RecordRejected) and exc.legacy:
            app = _APP_ID.search(data.decode("ascii", "replace"))
            what = f"YARN application {app.group(0)}" if app else "YARN application (if any)"
            self.log.warning(
                "Ignoring session record %s: %s. Kernel %s is not re-attached; its %s is left running, unattached "
                "(the orphan sweep leaves it alone while this record exists). To end it: yarn application -kill "
                "<application id>, then delete the record. Kernels started from now on have authenticated records. "
                "(Logged once per record.)", where, reason, safe_text(kernel_id), what)
            return reason
        hint = ""
        if isinstance(exc, RecordRejected) and exc.bad_mac and self._key is not None:
            hint = (f" Gateways sharing a session store need the same record key ({self.key_path}, fingerprint "
                    f"{fingerprint(self._key)} here).")
        self.log.warning("Ignoring session record %s: %s. Kernel %s is not re-attached from it, and the gateway "
                         "neither deletes it nor sweeps the kernel's YARN application while it exists; remove it "
                         "once you know where it came from.%s (Logged once per record.)",
                         where, safe_text(reason), safe_text(kernel_id), hint)
        return reason

    def _note(self, kernel_id: str, reason: Optional[str]) -> None:
        """Remember (on the event loop) whether the stored record of ``kernel_id`` was trusted."""
        if reason is None:
            self.rejected.pop(kernel_id, None)
        else:
            self.rejected[kernel_id] = reason

    # -- the contract -----------------------------------------------------------------------
    async def put(self, record: SessionRecord) -> None:
        """Create or replace the record of ``record['kernel_id']`` (:class:`RecordTooLarge` if too big)."""
        raise NotImplementedError

    async def get(self, kernel_id: str) -> Optional[SessionRecord]:
        """The record of ``kernel_id``, or None (also for an untrusted record)."""
        raise NotImplementedError

    async def remove(self, kernel_id: str) -> None:
        """Forget ``kernel_id`` (no error if unknown)."""
        raise NotImplementedError

    async def all(self) -> list[SessionRecord]:
        """Every trusted record; the others are logged, skipped and listed in :attr:`rejected`."""
        raise NotImplementedError

    async def probe(self) -> None:
        """Raise if the store cannot be used now (health checks); by default one read."""
        await self.get("00000000-0000-0000-0000-000000000000")

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Try to become the one instance doing ``name`` (sweep, cull); yields whether we are."""
        yield True
        raise NotImplementedError  # pragma: no cover - subclasses override

    async def start(self) -> None:
        """Connect (if needed); :meth:`prepare` first if that was not done."""
        if self._key is None:
            await self.prepare()

    async def stop(self) -> None:
        """Disconnect (if needed)."""


class DirectoryStore(SessionStore):
    """One ``<kernel_id>.json`` file per kernel in ``directory`` (mode 0700, files 0600)."""

    kind = "directory"

    directory = Unicode(
        config=True,
        help="Directory of session records (shared filesystem for active/passive). Created (mode 0700) if absent. "
        "It must be owned by the gateway's user and writable by nobody else, and so must the directories above "
        "it (root's, or sticky like /tmp, are fine): the gateway refuses to start otherwise.",
    )

    @default("directory")
    def _directory_default(self) -> str:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return os.path.join(base, "yarn-gateway", "sessions")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._dir = ""

    def _default_key_file(self) -> str:
        return os.path.join(self.directory, ".record-key")

    def _check_config(self) -> None:
        try:
            os.makedirs(self.directory, 0o700, exist_ok=True)
        except OSError as exc:
            raise StoreConfigError(f"DirectoryStore.directory {self.directory}: {exc.strerror}") from None
        real = os.path.realpath(self.directory)
        problem = directory_problem(real)
        if problem:
            raise StoreConfigError(f"DirectoryStore.directory: {problem}")
        self._dir = real  # resolved once: a link swapped later does not move the store

    def _directory_problem(self) -> Optional[str]:
        return directory_problem(self._dir or os.path.realpath(self.directory))

    def _path(self, kernel_id: str) -> str:
        if not kernel_id or "/" in kernel_id or kernel_id.startswith(".") or "\0" in kernel_id:
            raise ValueError(f"bad kernel id {kernel_id!r}")
        return os.path.join(self._dir or os.path.realpath(self.directory), f"{kernel_id}.json")

    def _write(self, record: SessionRecord) -> None:
        write_private(self._path(record["kernel_id"]), self._seal(record))

    def _read(self, kernel_id: str) -> tuple[Optional[SessionRecord], Optional[str]]:
        path = self._path(kernel_id)
        try:
            data = read_private(path, self.max_record_bytes)
        except FileNotFoundError:
            return None, None
        except PrivateFileError as exc:
            return None, self._reject(kernel_id, path, exc)
        return self._open(kernel_id, data, path)

    def _all(self) -> tuple[list[SessionRecord], dict[str, str]]:
        directory = self._dir or os.path.realpath(self.directory)
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return [], {}
        out, rejected = [], {}
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue  # our own temporary files, locks and key are dot-files
            kid = name[: -len(".json")]
            if not KERNEL_ID.fullmatch(kid):
                rejected[kid] = self._reject(kid, os.path.join(directory, name), "its name is not <kernel id>.json")
                continue
            rec, reason = self._read(kid)
            if rec is not None:
                out.append(rec)
            elif reason is not None:
                rejected[kid] = reason
        return out, rejected

    async def put(self, record: SessionRecord) -> None:
        record = record.copy()
        record["updated"] = time.time()
        await run_blocking(self._write, record)

    async def probe(self) -> None:
        # A record read would hide a broken directory (it reads as "no record"): check the directory.
        problem = await run_blocking(self._directory_problem)
        if problem:
            raise StoreUnusable(problem)

    async def get(self, kernel_id: str) -> Optional[SessionRecord]:
        rec, reason = await run_blocking(self._read, kernel_id)
        self._note(kernel_id, reason)
        return rec

    async def remove(self, kernel_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await run_blocking(os.remove, self._path(kernel_id))
        self.rejected.pop(kernel_id, None)

    async def all(self) -> list[SessionRecord]:
        records, self.rejected = await run_blocking(self._all)
        return records

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        def acquire() -> Optional[int]:
            path = os.path.join(self._dir or os.path.realpath(self.directory), f".{name}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
