"""resource_management.libraries.functions.check_process_status (stand-in)."""

from __future__ import annotations

import os

from resource_management.core.exceptions import ComponentIsNotRunning


def check_process_status(pid_file: str) -> None:
    """Raise ComponentIsNotRunning unless ``pid_file`` names a live process."""
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError) as exc:
        raise ComponentIsNotRunning() from exc
