"""What the local R launcher tests share: the shipped files, Rscript, a free port range."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from yarn_gateway_launchers import launcher_protocol as lp

REPO = Path(__file__).resolve().parents[2]
#: What the R kernelspec ships into the container, side by side in its working directory.
SHIPPED = [REPO / "launchers" / "R" / "launch_IRkernel.R", REPO / "launchers" / "R" / "rbackend_client.R",
           REPO / "launchers" / "python" / "launch_r_helper.py", REPO / "launchers" / "python" / "launcher_protocol.py",
           REPO / "launchers" / "python" / "curve_proxy.py"]
RSCRIPT = shutil.which("Rscript")


def has_irkernel() -> bool:
    if RSCRIPT is None:
        return False
    r = subprocess.run([RSCRIPT, "-e", "quit(status = !requireNamespace('IRkernel', quietly = TRUE))"],
                       capture_output=True, timeout=60)
    return r.returncode == 0


def free_range(width: int = 60) -> tuple[int, int]:
    """A port range of ``width`` starting at a port that was free a moment ago."""
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width


async def start_r_launcher(tmp_path: Path, kernel_id: str, token: str, response_address: str, public_key: str,
                           port_range: tuple[int, int]) -> tuple[asyncio.subprocess.Process, Path]:
    """The real R launcher as YARN would run it (the shipped files side by side in a container
    directory, mode ``none`` outside a container); its output goes to the returned log file."""
    assert RSCRIPT is not None
    workdir = tmp_path / "container"
    workdir.mkdir()
    for f in SHIPPED:
        shutil.copy(f, workdir / f.name)
    env = {k: v for k, v in os.environ.items() if k != "CONTAINER_ID"}
    env.update(KERNEL_LAUNCH_TOKEN=token, PYSPARK_PYTHON=sys.executable, KERNEL_LAUNCH_TIMEOUT="60")
    log_path = tmp_path / "r-launcher.log"
    lo, hi = port_range
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            RSCRIPT, "launch_IRkernel.R", "--kernel-id", kernel_id, "--response-address", response_address,
            "--public-key", public_key, "--port-range", f"{lo}..{hi}", "--spark-context-initialization-mode", "none",
            env=env, stdout=log_file, stderr=log_file, cwd=str(workdir))
    return proc, log_path
