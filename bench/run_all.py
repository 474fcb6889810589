#!/usr/bin/env python
"""Run every benchmark in bench/ in turn (``make bench``); extra arguments go to each.

Each benchmark is a ``*_bench.py`` script in this directory, run with the same
interpreter as this script. The exit status is non-zero if any benchmark failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH_DIR.glob("*_bench.py"))
    failed = []
    for script in scripts:
        print(f"==> {script.name}", flush=True)
        rc = subprocess.call([sys.executable, str(script), *argv])
        if rc != 0:
            failed.append(f"{script.name} (exit {rc})")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
