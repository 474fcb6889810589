"""What a YARN provisioner needs of the gateway that runs it: :class:`ProvisionerHost` (the
kernel registry is one), reached through its kernel manager, a :class:`HostedKernelManager`.

jupyter_client creates a provisioner with its kernel manager as ``parent`` and nothing else;
the registry creates every kernel manager as a :class:`HostedKernelManager` with itself as
``host``, so a provisioner finds the gateway's services through one typed attribute, resolved
once (:func:`host_of`), with a clear error outside a gateway."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

import zmq
from jupyter_client.connect import channel_socket_types
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


def kernel_curve_public_key(km: AsyncKernelManager) -> Optional[str]:
    """The CurveZMQ public key (Z85) of ``km``'s kernel when only its provisioner knows it: a YARN
    kernel's launcher returns the public key alone, its secret key stays in the container, and
    jupyter_client keeps CurveZMQ keys only as a pair. A live YARN provisioner holds it as an
    attribute; one loaded from a session record, in its connection info."""
    prov = km.provisioner
    public = getattr(prov, "curve_publickey", None) or (getattr(prov, "connection_info", None) or {}).get(
        "curve_publickey")
    if not public:
        return None
    return public.decode() if isinstance(public, bytes) else str(public)


class HostedKernelManager(AsyncKernelManager):
    """A kernel manager that knows the gateway hosting its provisioner."""

    def __init__(self, host: Optional[ProvisionerHost] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def _create_connected_socket(self, channel: str, identity: Optional[bytes] = None) -> zmq.Socket[Any]:
        """jupyter_client's own socket to the kernel (the control socket its shutdown requests go
        through). For a kernel of which only the CurveZMQ public key is known it is a CurveZMQ client
        with a fresh key pair, as the relay's sockets are; a NULL socket would fail the handshake and
        then block the event loop in its next send. Sends never block (a send that cannot be queued
        raises ``zmq.Again``)."""
        public = kernel_curve_public_key(self)
        if public is None or self.curve_secretkey is not None:
            sock = super()._create_connected_socket(channel, identity)
        else:
            sock = self.context.socket(channel_socket_types[channel])
            sock.linger = 1000
            if identity:
                sock.identity = identity
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = public.encode("ascii")
            sock.connect(self._make_url(channel))
        sock.sndtimeo = 0
        return sock

    async def _async_request_shutdown(self, restart: bool = False) -> None:
        try:
            await super()._async_request_shutdown(restart)
        except zmq.Again:
            # Its control channel takes nothing: the provisioner stops the kernel its own way.
            self.log.warning("Kernel %s: the shutdown request could not be queued on its control channel",
                             self.kernel_id)
            assert self.provisioner is not None
            await self.provisioner.shutdown_requested(restart=restart)


def host_of(parent: object, what: str) -> ProvisionerHost:
    """The host of a provisioner whose kernel manager is ``parent``; GatewayError 500 naming
    ``what`` (the kernel) when the manager was not created by a yarn-gateway registry."""
    host = parent.host if isinstance(parent, HostedKernelManager) else None
    if host is None:
        raise GatewayError(500, f"{what}: YARN kernels run only inside yarn-gateway (the kernel manager has no "
                           "gateway host: create it as a HostedKernelManager with host=<the kernel registry>).")
    return host
