"""Which environment a kernel gets, built from the start request.

Only ``KERNEL_*`` names and names an admin allows pass from the request; values must
be strings. The gateway's own secrets (its token, its Kerberos cache and keytabs) never
reach a kernel: local kernels start from a scrubbed copy of the gateway's environment.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ..errors import GatewayError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Never inherited by a kernel from the gateway's own environment.
SCRUBBED_PREFIXES = ("YARN_GATEWAY_", "KRB5", "JUPYTER_GATEWAY_")


def validate_request_env(env: Any, allowed: Iterable[str]) -> dict[str, str]:
    """Return the part of a request's ``env`` a kernel may receive, or raise 400."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise GatewayError(400, "'env' must be a JSON object of string values.", reason="Bad env")
    allowed_set = set(allowed)
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(value, str):
            raise GatewayError(
                400, f"env value of {name!r} must be a string, not {type(value).__name__}.", reason="Bad env"
            )
        if not isinstance(name, str) or not _NAME.fullmatch(name) or "\0" in value:
            raise GatewayError(400, f"env name {name!r} or its value is not a valid variable.", reason="Bad env")
        if name.startswith("KERNEL_") or name in allowed_set:
            out[name] = value
    return out


def client_launch_timeout(env: Mapping[str, str], maximum: float) -> Optional[float]:
    """KERNEL_LAUNCH_TIMEOUT from the client, honoured up to the admin's maximum (None: not sent)."""
    raw = env.get("KERNEL_LAUNCH_TIMEOUT")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise GatewayError(400, f"KERNEL_LAUNCH_TIMEOUT must be a number of seconds, not {raw!r}.",
                           reason="Bad env") from None
    if not math.isfinite(value) or value <= 0:
        raise GatewayError(400, f"KERNEL_LAUNCH_TIMEOUT must be a positive number of seconds, not {raw!r}.",
                           reason="Bad env")
    return min(value, maximum)


def base_environment(extra_scrub: Optional[Iterable[str]] = None) -> dict[str, str]:
    """The gateway's environment without its secrets (the start of a local kernel's env)."""
    scrub = set(extra_scrub or ())
    return {
        k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES) and k not in scrub
    }
