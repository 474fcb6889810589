"""jupyter_client's kernel client for a kernel of which only the CurveZMQ public key is known.

jupyter_client (8.9+) connects to a CurveZMQ kernel with the kernel's own key pair, so it needs
the kernel's secret key. A YARN kernel's secret key never leaves its container: the launch
response carries only the public key. This client, like the gateway's relay, gives each of its
sockets a fresh client key pair and authenticates the kernel by its public key.
"""

from __future__ import annotations

from typing import Any, Optional

import zmq
from jupyter_client.asynchronous import AsyncKernelClient


class PublicKeyKernelClient(AsyncKernelClient):
    """An AsyncKernelClient that speaks CurveZMQ knowing only ``curve_publickey``."""

    def _create_connected_socket(self, channel: str, identity: Optional[bytes] = None) -> zmq.Socket[Any]:
        if self.curve_publickey is None:
            return super()._create_connected_socket(channel, identity)
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        if identity:
            sock.identity = identity
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = self.curve_publickey
        sock.connect(self._make_url(channel))
        return sock


def kernel_client(connection_info: dict[str, Any]) -> AsyncKernelClient:
    """A client for ``connection_info``: CurveZMQ when it names the kernel's public key, else NULL."""
    kc = PublicKeyKernelClient()
    kc.load_connection_info({k: v for k, v in connection_info.items() if k != "curve_secretkey"})
    public = connection_info.get("curve_publickey")
    if public:
        kc.curve_publickey = public.encode("ascii") if isinstance(public, str) else public
    return kc



def shell_answers(ip: str, port: int, key: str, server_key: Optional[bytes], wait: float = 5.0) -> bool:
    """Whether a kernel's shell port answers a ``kernel_info_request`` signed with the HMAC ``key``
    from a raw DEALER: NULL mechanism when ``server_key`` is None, else CurveZMQ (fresh client key
    pair) with that server key. Blocking: call it through ``asyncio.to_thread``."""
    from jupyter_client.session import Session

    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.linger = 0
        if server_key is not None:
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = server_key
        sock.connect(f"tcp://{ip}:{port}")
        Session(key=key.encode(), signature_scheme="hmac-sha256").send(sock, "kernel_info_request", {})
        return bool(sock.poll(int(wait * 1000)))
    finally:
        sock.close(0)
        ctx.term()
