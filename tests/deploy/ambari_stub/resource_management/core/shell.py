"""resource_management.core.shell (stand-in)."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def quote_bash_args(command: Iterable[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in command)
