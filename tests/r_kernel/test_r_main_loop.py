"""The R launcher's main loop (``yg_run_kernel`` in launch_IRkernel.R), alone: what it does with
an interrupt and with an error out of IRkernel's loop, driven by a stand-in kernel in Rscript."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers.r_launcher import RSCRIPT

LAUNCHER = Path(__file__).resolve().parents[2] / "launchers" / "R" / "launch_IRkernel.R"

pytestmark = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed")

# Takes yg_run_kernel's definition out of the launcher (its local({...}) block would start a kernel).
_PRELUDE = r"""
block <- parse(file = Sys.getenv("LAUNCHER"))[[1]][[2]]
defs <- Filter(function(e) is.call(e) && identical(e[[1]], as.name("<-")) &&
               identical(e[[2]], as.name("yg_run_kernel")), as.list(block))
stopifnot(length(defs) == 1)
yg_log <- function(...) cat("log:", ..., "\n")
yg_run_kernel <- eval(defs[[1]][[3]])
wire_to_msg <- function(parts) stopifnot(identical("signature", "expected_signature"))
runs <- 0L
"""


def _rscript(body: str) -> subprocess.CompletedProcess[str]:
    assert RSCRIPT is not None
    return subprocess.run([RSCRIPT, "-e", _PRELUDE + body], capture_output=True, text=True, timeout=60,
                          env={"LAUNCHER": str(LAUNCHER), "PATH": "/usr/bin:/bin"})


def test_a_message_out_of_step_is_dropped_and_the_kernel_goes_on() -> None:
    # A SIGINT between the parts of a message leaves them out of step: wire_to_msg stops on the
    # signature. Twice (the message, then the rest of its parts), then the loop runs normally.
    r = _rscript("""
kernel <- list(run = function() { runs <<- runs + 1L; if (runs <= 2L) wire_to_msg(list()); invisible() })
yg_run_kernel(kernel)
cat("returned after", runs, "runs\\n")
""")
    assert r.returncode == 0, r.stderr
    assert "returned after 3 runs" in r.stdout
    assert r.stdout.count("a message arrived out of step") == 2


def test_any_other_error_still_ends_r() -> None:
    r = _rscript("""
kernel <- list(run = function() { runs <<- runs + 1L; stop("the shell socket is gone") })
yg_run_kernel(kernel)
cat("not reached\\n")
""")
    assert r.returncode != 0 and "the shell socket is gone" in r.stderr
    assert "not reached" not in r.stdout and "out of step" not in r.stdout
