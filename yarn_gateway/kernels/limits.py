"""Kernel-count limits: per user and for the whole gateway (cluster).

What counts: every kernel this gateway holds (launching ones included: the registry
holds a kernel from the moment its start begins) and, when a session store is
configured, every kernel recorded there for this gateway cluster (``gateway_id``), so
gateways sharing a store (active/active) share the limits. A kernel counts once.

Within one gateway the check is exact: :meth:`KernelLimits.check` reads the store first
and counts the held kernels last, with no await between that count and the caller
registering its new kernel. Between gateways sharing a store a burst of concurrent
starts can overshoot by the starts in flight on the other instances (the store is not
a lock); the next start sees the true count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets import Bool, Int
from traitlets.config import LoggingConfigurable

from ..errors import GatewayError

if TYPE_CHECKING:
    from ..auth.base import User
    from .host import KernelHost


class KernelLimits(LoggingConfigurable):
    """``c.KernelLimits.*``: how many kernels may run. Refusals are 403 naming the limit and the count."""

    max_kernels_per_user = Int(
        0, config=True,
        help="Kernels one user may have at once (running or starting, on every gateway sharing the session "
        "store). 0 = unlimited. Counted by the kernel's owner (the KERNEL_USERNAME an admin starts it as).",
    )
    max_kernels = Int(
        0, config=True,
        help="Kernels the gateway (all instances sharing the session store) may run at once. 0 = unlimited.",
    )
    exempt_admins = Bool(
        False, config=True,
        help="Let impersonation admins (AccessPolicy.admin_users) start kernels beyond both limits. "
        "Default: admins are limited like everyone else.",
    )

    def __init__(self, registry: KernelHost) -> None:
        super().__init__(parent=registry, log=registry.log)
        self.registry = registry

    async def owners(self) -> dict[str, str]:
        """kernel id -> owner of every kernel that counts (held here, or recorded in the store)."""
        recorded = await self.registry.sessions.records()
        # Held kernels last and without awaiting after: see the module docstring.
        counted = {str(r["kernel_id"]): str(r.get("owner", "")) for r in recorded if r.get("kernel_id")}
        counted.update({kid: rec.owner for kid, rec in self.registry.kernels.items()})
        return counted

    async def check(self, caller: User, owner: str) -> None:
        """Raise 403 if one more kernel for ``owner`` (requested by ``caller``) would pass a limit."""
        if not (self.max_kernels_per_user > 0 or self.max_kernels > 0):
            return
        if self.exempt_admins and self.registry.policy.is_admin(caller):
            return
        counted = await self.owners()
        if self.max_kernels_per_user > 0:
            mine = sum(1 for o in counted.values() if o == owner)
            if mine >= self.max_kernels_per_user:
                raise GatewayError(
                    403,
                    f"{owner} has {mine} of {self.max_kernels_per_user} kernels allowed per user "
                    "(KernelLimits.max_kernels_per_user); shut one down first.",
                    reason="Kernel limit reached",
                )
        if self.max_kernels > 0 and len(counted) >= self.max_kernels:
            raise GatewayError(
                403,
                f"The gateway runs {len(counted)} of {self.max_kernels} kernels allowed in total "
                "(KernelLimits.max_kernels); shut one of yours down or try again later.",
                reason="Kernel limit reached",
            )
