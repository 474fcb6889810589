"""Files only the gateway's own Unix account may touch: the session store's directory, its
records, the record key and the ZooKeeper credentials.

Every function here blocks (call it through :func:`~yarn_gateway.utils.run_blocking`).
A problem is returned or raised as a sentence an operator can act on (what is wrong, which
command fixes it); nothing here ever follows a symbolic link, blocks on a FIFO, or reads
more than the bound it is given.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
from typing import Optional

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PrivateFileError(ValueError):
    """A private file or directory is missing, unsafe or unreadable (the message says which and why)."""


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _mode(st: os.stat_result) -> int:
    return stat.S_IMODE(st.st_mode)


def directory_problem(path: str) -> Optional[str]:
    """Why ``path`` (an existing directory, resolved) is not safe for secrets, or None.

    It must be owned by the gateway's user and writable by nobody else; every directory
    above it must be owned by root or that user and, unless sticky (as /tmp), writable by
    nobody else either (otherwise someone could rename it away and put their own in its place).
    """
    euid = os.geteuid()
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != euid:
        return (f"{path} is owned by {user_name(st.st_uid)}, not by the gateway's user {user_name(euid)}: "
                f"chown it to the gateway's user (or choose another directory)")
    if _mode(st) & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{path} is writable by group or others (mode {_mode(st):04o}): anyone who can write it could "
                f"plant session records; chmod 700 {path}")
    parent = os.path.dirname(path)
    while True:
        try:
            pst = os.lstat(parent)
        except OSError as exc:
            return f"{parent}: {exc.strerror}"
        writable_by_others = _mode(pst) & (stat.S_IWGRP | stat.S_IWOTH) and not _mode(pst) & stat.S_ISVTX
        if pst.st_uid not in (0, euid) or writable_by_others:
            why = (f"owned by {user_name(pst.st_uid)}" if pst.st_uid not in (0, euid)
                   else f"writable by group or others without the sticky bit (mode {_mode(pst):04o})")
            return (f"{parent}, a parent of {path}, is {why}: someone else could replace {path}; "
                    "put the directory under one only root or the gateway's user can write")
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


def file_problem(path: str, st: os.stat_result) -> Optional[str]:
    """Why the file ``path`` (``st``: its fstat) may not hold the gateway's secrets, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != os.geteuid():
        return f"{path} is owned by {user_name(st.st_uid)}, not by the gateway's user {user_name(os.geteuid())}"
    if _mode(st) & 0o077:
        return f"{path} is accessible by group or others (mode {_mode(st):04o}); chmod 600 {path}"
    return None


def read_private(path: str, max_bytes: int, dir_fd: Optional[int] = None) -> bytes:
    """The content of a private file (regular, the gateway user's, mode 0600 or stricter, at
    most ``max_bytes``); :class:`PrivateFileError` otherwise. FileNotFoundError passes through."""
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise PrivateFileError(f"{path} is a symbolic link (never followed)") from None
        raise PrivateFileError(f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        problem = file_problem(path, st)
        if problem:
            raise PrivateFileError(problem)
        if st.st_size > max_bytes:
            raise PrivateFileError(f"{path} is {st.st_size} bytes, more than the limit of {max_bytes}")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise PrivateFileError(f"{path} grew past the limit of {max_bytes} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private(path: str, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600): written to a fresh temporary file
    beside it (an unpredictable name, created exclusively, never through a symbolic link),
    synced, then renamed over ``path`` (a rename replaces a link planted there, never its target)."""
    directory, name = os.path.split(path)
    for _ in range(8):
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 8 collisions of 64 random bits
        raise PrivateFileError(f"cannot create a temporary file in {directory}")
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def create_private(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` (mode 0600) unless it exists; whether we created it.

    The file appears complete or not at all (written aside, then hard-linked into place), so
    two gateways starting together agree on one content."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, 0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.remove(tmp)
