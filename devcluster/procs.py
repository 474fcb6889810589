"""Daemon processes of the dev cluster: started in their own process group, stopped by PID.

Each daemon's PID and its kernel start time (``/proc/<pid>/stat`` field 22) are kept in
``run/<name>.pid``, so a PID the kernel has since reused for another program is never
signalled. YARN containers run in sessions of their own (DefaultContainerExecutor uses
``setsid``): they are found through the PID files the NodeManager writes for them and
through their working directory under the cluster's ``nm-local`` dir, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional


def start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (None if there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


class Daemon:
    """One daemon process of a cluster, known by its PID file."""

    def __init__(self, run_dir: str, name: str) -> None:
        self.name = name
        self.pid_file = os.path.join(run_dir, f"{name}.pid")

    def pid(self) -> Optional[int]:
        """The PID when the recorded process still runs (and is the one recorded)."""
        try:
            with open(self.pid_file, encoding="ascii") as f:
                pid_text, started = f.read().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if start_time(pid) == started else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], env: Mapping[str, str], log_path: str, cwd: str) -> int:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started = start_time(proc.pid) or "0"
        tmp = f"{self.pid_file}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{proc.pid} {started}\n")
        os.replace(tmp, self.pid_file)
        return proc.pid

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
        """Signal the daemon's process group; SIGKILL it if it outlives ``timeout``."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if self.pid() is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                while self.pid() is not None and time.monotonic() < deadline + 10:
                    _reap(pid)
                    time.sleep(0.1)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)

    def kill(self) -> None:
        """kill -9 the daemon's group at once (what a crash looks like)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.pid() is not None and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect a child we started ourselves (a zombie still has a start time)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def container_pids(nm_local_dir: str) -> Iterator[int]:
    """PIDs of processes that belong to this cluster's containers.

    The NodeManager writes each container's PID to ``nmPrivate/<app>/<container>/<container>.pid``;
    processes a container started (python, the kernel) are found by their working directory,
    which YARN puts under ``nm-local/usercache/<user>/appcache/<app>/<container>``.
    """
    seen: set[int] = set()
    private = os.path.join(nm_local_dir, "nmPrivate")
    for dirpath, _dirs, files in os.walk(private):
        for name in files:
            if name.endswith(".pid"):
                with contextlib.suppress(OSError, ValueError):
                    with open(os.path.join(dirpath, name), encoding="ascii") as f:
                        pid = int(f.read().strip())
                    if pid not in seen and start_time(pid) is not None:
                        seen.add(pid)
                        yield pid
    appcache = os.path.realpath(os.path.join(nm_local_dir, "usercache")) + os.sep
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            if pid not in seen and os.readlink(f"/proc/{pid}/cwd").startswith(appcache):
                seen.add(pid)
                yield pid


def kill_containers(nm_local_dir: str) -> int:
    """SIGKILL every container process group of this cluster; return how many were found."""
    pids = list(container_pids(nm_local_dir))
    own = os.getpgrp()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != own:  # never our own group (a test runner that cd'ed into a container dir)
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
