"""Interfaces shared by the benchmark targets (direct jupyter_client and the gateways).

A *target* starts kernels; a started kernel is a :class:`KernelHandle` that runs cells.
Every measurement in ``gateway_bench.py`` is written against these two classes only, so
the direct connection and the gateways are measured by the same loops.
"""

from __future__ import annotations

import abc
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: Name of the one kernelspec every target runs.
KERNEL_NAME = "bench_python"
#: Owner of the bench kernels (EG refuses root; yarn-gateway maps the shared token to alice).
KERNEL_USERNAME = "alice"

StreamSink = Callable[[str], None]


class TargetSkipped(Exception):
    """A target cannot run on this machine; the message says why and what to do."""


@dataclass
class CellResult:
    """What one execute_request produced, as seen by the client.

    ``t_reply`` and ``t_idle`` are ``time.perf_counter()`` values taken when the
    execute_reply and the idle status for this request arrived (``t_idle`` is None when
    the caller did not wait for it).
    """

    status: str
    t_reply: float
    t_idle: Optional[float]
    n_msgs: int
    n_stream: int


class KernelHandle(abc.ABC):
    """One running kernel of a target, with at most one client connection."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the client connection (channels / websocket). Idempotent."""

    @abc.abstractmethod
    async def run_cell(
        self, code: str, on_stream: Optional[StreamSink] = None, wait_idle: bool = True
    ) -> CellResult:
        """Send one execute_request and return once its execute_reply (and, with
        ``wait_idle``, its idle status) arrived. ``on_stream`` receives the text of every
        stream message of this request, in arrival order. No timeout: callers wrap it."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Close the client connection; the kernel keeps running."""

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Disconnect and stop the kernel; never raises for an already gone kernel."""


class Target(abc.ABC):
    """A way to reach kernels: the direct floor or a gateway process."""

    #: Short key used in the JSON results and on the command line.
    key: str = ""
    #: Human readable name for tables.
    label: str = ""

    @abc.abstractmethod
    async def setup(self) -> None:
        """Prepare the target (start the gateway process). Raises TargetSkipped."""

    @abc.abstractmethod
    async def teardown(self) -> None:
        """Stop everything the target started, kernels included. Never raises."""

    @abc.abstractmethod
    async def create_kernel(self) -> KernelHandle:
        """Ask for a new kernel (POST /api/kernels or start_kernel) and return when the
        request was answered; the kernel may still be starting."""

    #: The target's kernels are CurveZMQ servers (the bench checks that they are, see bench_curve).
    curve: bool = False

    def server_pid(self) -> Optional[int]:
        """Pid of the gateway process (for RSS), None for the direct target."""
        return None

    def connection_file(self, kernel: KernelHandle) -> Optional[str]:
        """Path of the connection file of ``kernel`` (None if the bench cannot tell)."""
        return None


class SkippedTarget(Target):
    """A target this machine cannot run (e.g. no ipykernel 7 for the CurveZMQ pair): reported
    as skipped with the reason, like a gateway that does not start."""

    def __init__(self, key: str, label: str, reason: str) -> None:
        self.key, self.label, self.reason = key, label, reason

    async def setup(self) -> None:
        raise TargetSkipped(self.reason)

    async def teardown(self) -> None:
        pass

    async def create_kernel(self) -> KernelHandle:
        raise TargetSkipped(self.reason)


def write_kernelspec(root: Path, python: str, pin_cpu: Optional[int] = None, curve: bool = False) -> Path:
    """Write the bench kernelspec under ``root`` and return the directory that holds
    kernelspec directories (``root/share/jupyter/kernels``).

    ``pin_cpu`` starts every kernel under ``taskset -c CPU`` (all its threads on one CPU),
    the same for every target. ``curve`` declares ``supported_encryption: ["curve"]`` (an
    ipykernel 7 kernel, which serves its sockets as CurveZMQ servers when the kernel manager
    has ``transport_encryption`` on); the spec keeps the name :data:`KERNEL_NAME`, so write it
    under a ``root`` of its own."""
    kernels = root / "share" / "jupyter" / "kernels"
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    pin = [] if pin_cpu is None else ["taskset", "-c", str(pin_cpu)]
    metadata: dict[str, object] = {"debugger": False}
    if curve:
        metadata["supported_encryption"] = ["curve"]
    spec = {
        "argv": [*pin, python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (bench, ipykernel" + (", CurveZMQ)" if curve else ")"),
        "language": "python",
        "metadata": metadata,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernels


def ipykernel_version(python: str) -> str:
    """Version of ipykernel importable by ``python`` (raises if there is none)."""
    out = subprocess.run(
        [python, "-c", "import ipykernel; print(ipykernel.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{python} cannot import ipykernel: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def free_port() -> int:
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stream_code(n_chunks: int, chunk: int) -> str:
    """Kernel code that writes ``n_chunks`` lines of ``chunk`` bytes, flushing each."""
    return (
        "import sys\n"
        "_w, _f = sys.stdout.write, sys.stdout.flush\n"
        f"for _i in range({n_chunks}):\n"
        f"    _w(f'{{_i:09d}}' + 'x' * {chunk - 10} + '\\n'); _f()\n"
    )


def stream_expected(n_chunks: int, chunk: int) -> str:
    """The exact text :func:`stream_code` prints."""
    pad = "x" * (chunk - 10) + "\n"
    return "".join(f"{i:09d}{pad}" for i in range(n_chunks))


def burst_code(n_lines: int) -> str:
    """The small-message burst of issue 2, acceptance 4."""
    return f"for i in range({n_lines}): print(i, flush=True)\n"


def python_info() -> str:
    return sys.version.split()[0]
