"""The authenticator contract.

An :class:`Authenticator` looks at one HTTP request (websocket upgrades included) and
names the caller. It is called by the base handler before every endpoint runs; it must
not block the event loop (use :func:`yarn_gateway.utils.run_blocking` for anything slow).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from tornado.web import RequestHandler


_USER_NAME = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}")


def is_valid_user_name(name: str) -> bool:
    """A user name a kernel may run as (the whole string: no trailing newline slips through)."""
    return bool(_USER_NAME.fullmatch(name)) and name not in (".", "..")


def is_loopback(ip: str) -> bool:
    """Whether listening on ``ip`` reaches this host only ('' and 0.0.0.0 listen everywhere)."""
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


@dataclass(frozen=True)
class User:
    """An authenticated caller. ``name`` is the short user name kernels run as."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)


class Authenticator(LoggingConfigurable):
    """Base class. Subclasses implement :meth:`authenticate`."""

    #: A short name for logs and errors ("token", "kerberos", "none").
    kind = "base"
    #: What a refused caller should do (the message of a 401).
    login_hint = "authenticate"

    async def authenticate(self, handler: RequestHandler) -> Optional[User]:
        """Return the caller, or None when the request carries no valid credentials.

        Called once per request (and once per websocket upgrade). May set response
        headers on ``handler`` (a cookie, a ``WWW-Authenticate`` challenge).
        """
        raise NotImplementedError

    def challenge(self, handler: RequestHandler) -> None:
        """Add the headers a client needs to authenticate after a 401 (default: none)."""

    def check_bind(self, ip: str) -> None:
        """Refuse configurations that are unsafe on ``ip`` (raise ValueError)."""
