"""What an authenticated caller may do: impersonation and kernel ownership."""

from __future__ import annotations

from typing import Optional

from traitlets import Set, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import GatewayError
from .base import User


class AccessPolicy(LoggingConfigurable):
    """Impersonation and ownership rules (kernelspec ACLs come with the Kerberos work)."""

    admin_users = Set(
        Unicode(),
        config=True,
        help="""Users who may start kernels as someone else (by setting KERNEL_USERNAME)
        and see, use and stop every kernel. Default: none.""",
    )

    def is_admin(self, user: User) -> bool:
        return user.name in self.admin_users

    def effective_user(self, caller: User, requested: Optional[str]) -> str:
        """The user a new kernel runs as: the caller, unless an admin names someone else.

        Raises 403 when a non-admin asks for another identity.
        """
        if requested is None or requested == "" or requested == caller.name:
            return caller.name
        if self.is_admin(caller):
            self.log.info("Admin %s starts a kernel as %s", caller.name, requested)
            return requested
        raise GatewayError(
            403,
            f"User '{caller.name}' may not start a kernel as '{requested}': KERNEL_USERNAME must be "
            f"absent or '{caller.name}' (only impersonation admins may name another user).",
            reason="Impersonation not allowed",
        )

    def can_access(self, caller: User, owner: str) -> bool:
        """Whether ``caller`` may see and use a kernel owned by ``owner``."""
        return caller.name == owner or self.is_admin(caller)
