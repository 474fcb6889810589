"""What an authenticated caller may do: impersonation, kernel ownership, kernelspec ACLs."""

from __future__ import annotations

from typing import Any, Optional

from traitlets import Bool, Dict, Set, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..errors import GatewayError
from ..utils import run_blocking
from .base import User
from .kernelspec_acl import denial, os_groups, validate_acls


class AccessPolicy(LoggingConfigurable):
    """Impersonation, ownership and kernelspec access rules."""

    admin_users = Set(
        Unicode(),
        config=True,
        help="""Users who may start kernels as someone else (by setting KERNEL_USERNAME)
        and see, use and stop every kernel. Default: none.""",
    )

    kernelspec_acls = Dict(
        config=True,
        help="""Who may see and start each kernelspec: {spec or "*": {"allow_users": [...], "allow_groups": [...],
        "deny_users": [...], "deny_groups": [...]}} (see yarn_gateway.auth.kernelspec_acl). Default: everyone.""",
    )
    user_groups = Dict(
        config=True, help="Extra group memberships for kernelspec ACLs: {user: [group, ...]}.",
    )
    os_groups = Bool(True, config=True, help="Take users' groups from the OS (pwd/grp, i.e. NSS) for kernelspec ACLs.")

    @validate("kernelspec_acls")
    def _validate_acls(self, proposal: Any) -> dict[str, Any]:
        validate_acls(proposal["value"])
        return dict(proposal["value"])

    async def groups_of(self, user: str) -> frozenset[str]:
        extra = frozenset(str(g) for g in self.user_groups.get(user, []))
        return (await run_blocking(os_groups, user) | extra) if self.os_groups else extra

    async def kernelspec_denial(self, user: str, spec: str) -> Optional[str]:
        """None if ``user`` may use kernelspec ``spec``, else the rule that refuses it."""
        if not self.kernelspec_acls:
            return None
        acls = validate_acls(self.kernelspec_acls)
        return denial(acls, spec, user, await self.groups_of(user))

    async def check_kernelspec(self, user: str, spec: str) -> None:
        """Raise 403 (naming the rule) unless ``user`` may use kernelspec ``spec``."""
        why = await self.kernelspec_denial(user, spec)
        if why is not None:
            raise GatewayError(403, f"User '{user}' may not use kernelspec '{spec}': {why}.",
                               reason="Kernelspec not allowed")

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
