"""What a YARN provisioner needs of the gateway that runs it: :class:`ProvisionerHost` (the
kernel registry is one), reached through its kernel manager, a :class:`HostedKernelManager`.

jupyter_client creates a provisioner with its kernel manager as ``parent`` and nothing else;
the registry creates every kernel manager as a :class:`HostedKernelManager` with itself as
``host``, so a provisioner finds the gateway's services through one typed attribute, resolved
once (:func:`host_of`), with a clear error outside a gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

from jupyter_client.manager import AsyncKernelManager

from ..errors import GatewayError

if TYPE_CHECKING:
    from ..kernels.params import KernelParameters
    from ..metrics import GatewayMetrics
    from .services import YarnServices


class ProvisionerHost(Protocol):
    """The gateway, as a YARN provisioner sees it."""

    @property
    def yarn_services(self) -> YarnServices:
        """The RM client, the response listener and the submit slots every YARN kernel shares."""

    @property
    def metrics(self) -> GatewayMetrics:
        """Where launch phases and lifecycle events are counted."""

    @property
    def allowed_envs(self) -> list[str]:
        """Environment names (besides KERNEL_*) a start request may pass, forwarded to the driver."""

    @property
    def max_launch_timeout(self) -> float:
        """The cap on any launch timeout, the provisioner's own included."""

    @property
    def kernel_parameters(self) -> KernelParameters:
        """The administrator's rules for the KERNEL_* resource parameters users choose."""

    def provisioner_checkpoint(self, kernel_id: str) -> None:
        """Save the launch record of ``kernel_id`` now (the provisioner knows an application id)."""


class HostedKernelManager(AsyncKernelManager):
    """A kernel manager that knows the gateway hosting its provisioner."""

    def __init__(self, host: Optional[ProvisionerHost] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host


def host_of(parent: object, what: str) -> ProvisionerHost:
    """The host of a provisioner whose kernel manager is ``parent``; GatewayError 500 naming
    ``what`` (the kernel) when the manager was not created by a yarn-gateway registry."""
    host = parent.host if isinstance(parent, HostedKernelManager) else None
    if host is None:
        raise GatewayError(500, f"{what}: YARN kernels run only inside yarn-gateway (the kernel manager has no "
                           "gateway host: create it as a HostedKernelManager with host=<the kernel registry>).")
    return host
