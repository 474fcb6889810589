"""resource_management.core.resources.system (stand-in): Directory, File, Execute."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
from typing import Any, Optional, Union

from resource_management.core.exceptions import Fail

LOG: list[str] = []


def _chown(path: str, owner: Optional[str], group: Optional[str]) -> None:
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    os.chown(path, uid, gid)


def Directory(path: str, owner: Optional[str] = None, group: Optional[str] = None, mode: Optional[int] = None,
              create_parents: bool = False, action: str = "create", **_: Any) -> None:
    LOG.append(f"Directory {path}")
    if action == "delete":
        os.rmdir(path)
        return
    if create_parents:
        os.makedirs(path, exist_ok=True)
    elif not os.path.isdir(path):
        os.mkdir(path)
    if mode is not None:
        os.chmod(path, mode)
    _chown(path, owner, group)


def File(path: str, content: Any = None, owner: Optional[str] = None, group: Optional[str] = None,
         mode: Optional[int] = None, action: str = "create", **_: Any) -> None:
    LOG.append(f"File {path} {action}")
    if action == "delete":
        if os.path.lexists(path):
            os.remove(path)
        return
    text = content() if callable(content) else content
    with open(path, "w", encoding="utf-8") as f:
        f.write("" if text is None else str(text))
    if mode is not None:
        os.chmod(path, mode)
    _chown(path, owner, group)


def Execute(command: Union[str, tuple[str, ...], list[str]], user: Optional[str] = None, cwd: Optional[str] = None,
            environment: Optional[dict[str, str]] = None, not_if: Optional[str] = None, timeout: Optional[int] = None,
            **_: Any) -> None:
    """Run a command like Ambari: a string through bash, a tuple as argv; as ``user`` when given."""
    env = dict(os.environ, **(environment or {}))
    if not_if and subprocess.run(["bash", "-c", not_if], env=env, check=False).returncode == 0:
        LOG.append(f"Execute skipped (not_if): {command!r}")
        return
    argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
    if user and user != pwd.getpwuid(os.geteuid()).pw_name:
        argv = ["runuser", "-u", user, "--", *argv]
    LOG.append(f"Execute {argv!r}")
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise Fail(f"Execution of {argv!r} returned {out.returncode}. {out.stdout}{out.stderr}")
