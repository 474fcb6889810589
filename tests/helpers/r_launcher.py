"""What the local R launcher tests share: the shipped files, Rscript, a free port range."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from yarn_gateway_launchers import launcher_protocol as lp

REPO = Path(__file__).resolve().parents[2]
#: What the R kernelspec ships into the container, side by side in its working directory.
SHIPPED = [REPO / "launchers" / "R" / "launch_IRkernel.R", REPO / "launchers" / "R" / "rbackend_client.R",
           REPO / "launchers" / "python" / "launch_r_helper.py", REPO / "launchers" / "python" / "launcher_protocol.py"]
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
