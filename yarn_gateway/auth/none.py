"""No authentication: every caller is one configured user. Development only."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Optional

from traitlets import Unicode, default

from .base import Authenticator, User, is_loopback

if TYPE_CHECKING:
    from tornado.web import RequestHandler


class NoneAuthenticator(Authenticator):
    """Treat every request as `user`. Refused unless the gateway listens on loopback only."""

    kind = "none"

    user = Unicode(config=True, help="The user every request is attributed to (default: the gateway's Unix user).")

    @default("user")
    def _user_default(self) -> str:
        return getpass.getuser()

    def check_bind(self, ip: str) -> None:
        if not is_loopback(ip):
            raise ValueError(
                f"authenticator 'none' is only allowed when listening on loopback, not on {ip!r}; "
                "use token or kerberos authentication"
            )
        self.log.warning(
            "*** AUTHENTICATION IS OFF: every local caller is %r. Development use only. ***", self.user
        )

    async def authenticate(self, handler: RequestHandler) -> Optional[User]:
        return User(self.user)
