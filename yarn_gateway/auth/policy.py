"""What an authenticated caller may do: impersonation, kernel ownership, kernelspec ACLs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from traitlets import Bool, Dict, Set, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..errors import GatewayError
from ..utils import run_blocking
from .base import User, is_valid_user_name
from .kernelspec_acl import canonical_spec, denial, os_groups, runs_on_gateway_host, validate_acls

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager


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
        "deny_users": [...], "deny_groups": [...]}} (see yarn_gateway.auth.kernelspec_acl). Spec names are not
        case-sensitive: a rule applies to every spelling of its kernelspec. Default: everyone.""",
    )
    user_groups = Dict(
        config=True, help="Extra group memberships for kernelspec ACLs: {user: [group, ...]}.",
    )
    os_groups = Bool(True, config=True, help="Take users' groups from the OS (pwd/grp, i.e. NSS) for kernelspec ACLs.")

    local_kernel_users = Set(
        Unicode(),
        config=True,
        help="""Users who may use kernelspecs that run on the gateway host (any provisioner but the YARN one,
        e.g. python_local). Such kernels run user code as the gateway's own Unix account, which can read the
        gateway's token file, keytab and credential cache: only for development or fully trusted users.
        '*' names every authenticated user. Default: nobody (local kernelspecs are refused and not listed).
        `yarn-gateway check` fails when this is enabled on a non-loopback address.""",
    )
    local_kernel_groups = Set(
        Unicode(), config=True,
        help="Groups whose members may use kernelspecs that run on the gateway host (see local_kernel_users).",
    )

    @validate("kernelspec_acls")
    def _validate_acls(self, proposal: Any) -> dict[str, Any]:
        validate_acls(proposal["value"])
        return dict(proposal["value"])

    async def groups_of(self, user: str) -> frozenset[str]:
        extra = frozenset(str(g) for g in self.user_groups.get(user, []))
        return (await run_blocking(os_groups, user) | extra) if self.os_groups else extra

    @property
    def local_kernels_enabled(self) -> bool:
        """Whether anybody may use a kernelspec that runs on the gateway host."""
        return bool(self.local_kernel_users or self.local_kernel_groups)

    async def kernelspec_denial(self, user: str, spec: str, local: bool = False,
                                groups: Optional[frozenset[str]] = None) -> Optional[str]:
        """None if ``user`` may use kernelspec ``spec`` (a canonical name; ``local``: it runs on
        the gateway host), else the rule that refuses it. ``groups``: the user's, if known."""
        if not self.kernelspec_acls and not local:
            return None
        if groups is None and (self.kernelspec_acls or self.local_kernel_groups):
            groups = await self.groups_of(user)
        groups = groups or frozenset()
        if self.kernelspec_acls:
            why = denial(validate_acls(self.kernelspec_acls), spec, user, groups)
            if why is not None:
                return why
        if local and not self._local_allowed(user, groups):
            named = (f"they name neither '{user}' nor a group of theirs" if self.local_kernels_enabled
                     else "they name nobody")
            return (f"it runs kernels on the gateway host as the gateway's own Unix account, which only "
                    f"AccessPolicy.local_kernel_users / local_kernel_groups may use ({named})")
        return None

    def _local_allowed(self, user: str, groups: frozenset[str]) -> bool:
        users = self.local_kernel_users
        return "*" in users or user in users or bool(groups & self.local_kernel_groups)

    async def check_kernelspec(self, user: str, spec: str, local: bool = False) -> None:
        """Raise 403 (naming the rule) unless ``user`` may use kernelspec ``spec``."""
        why = await self.kernelspec_denial(user, spec, local)
        if why is not None:
            raise GatewayError(403, f"User '{user}' may not use kernelspec '{spec}': {why}.",
                               reason="Kernelspec not allowed")

    async def resolve_kernelspec(self, ksm: KernelSpecManager, user: str, name: str) -> tuple[str, KernelSpec]:
        """The kernelspec a request names, as (canonical name, spec), if ``user`` may use it:
        403 naming the rule when not, 404 when there is no such kernelspec. Rules apply to the
        canonical name, whatever the request's spelling."""
        found = await run_blocking(canonical_spec, ksm, name)
        if found is None:
            await self.check_kernelspec(user, name)  # a "*" rule refuses unknown names as before
            raise GatewayError(404, f"No such kernelspec: '{name}'.", reason="No such kernelspec")
        canonical, spec = found
        await self.check_kernelspec(user, canonical, local=runs_on_gateway_host(spec))
        return canonical, spec

    def is_admin(self, user: User) -> bool:
        return user.name in self.admin_users

    def effective_user(self, caller: User, requested: Optional[str]) -> str:
        """The user a new kernel runs as: the caller, unless an admin names someone else.

        Raises 403 when a non-admin asks for another identity.
        """
        if requested is None or requested == "" or requested == caller.name:
            return caller.name
        if not is_valid_user_name(requested):
            raise GatewayError(400, f"KERNEL_USERNAME {requested!r} is not a user name (letters, digits, '.', "
                               "'_', '-', '@'; at most 64 characters).", reason="Bad env")
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
