"""Desktop side: a jupyter_server token renewer that authenticates to the gateway with Kerberos.

Use it from the desktop (the user has run ``kinit``)::

    jupyter lab --gateway-url=https://edge01.example.com:8888 \\
        --GatewayClient.gateway_token_renewer_class=yarn_gateway_client.KerberosTokenRenewer \\
        --GatewayClient.auth_scheme=Negotiate

jupyter_server's ``GatewayClient`` calls :meth:`KerberosTokenRenewer.get_token` before
every request and websocket connection and sends ``<auth_header_key>: <auth_scheme>
<token>``; the renewer returns a fresh SPNEGO token for ``HTTP/<gateway host>`` from the
user's own ticket cache (``KRB5CCNAME``, or ``KerberosTokenRenewer.ccache``). A Kerberos
token cannot be replayed, so a new one is made each time (no KDC round trip once the
service ticket is in the cache). When the scheme is still jupyter_server's default
``token``, the renewer switches it to ``Negotiate``.
"""

from __future__ import annotations

import base64
import typing as ty
from urllib.parse import urlsplit

from jupyter_server.gateway.gateway_client import GatewayTokenRenewerBase
from traitlets import Unicode


class KerberosTokenRenewer(GatewayTokenRenewerBase):
    """See the module docstring."""

    service = Unicode("HTTP", config=True, help="Service part of the gateway's principal.")
    hostname_override = Unicode(
        "", config=True,
        help="Host part of the gateway's principal (default: the host of GatewayClient.url). Set it when the "
        "URL names a load balancer or an alias whose principal differs.",
    )
    ccache = Unicode("", config=True, help="Credential cache to use (default: $KRB5CCNAME, else the system default).")

    def __init__(self, **kwargs: ty.Any) -> None:
        super().__init__(**kwargs)
        parent = self.parent
        if parent is not None:
            if getattr(parent, "auth_scheme", None) in (None, "", "token"):
                parent.auth_scheme = "Negotiate"
            if getattr(parent, "auth_token", None) is None:
                parent.auth_token = ""  # GatewayClient only asks the renewer when a token is set

    def _hostname(self) -> str:
        if self.hostname_override:
            return self.hostname_override
        url = str(getattr(self.parent, "url", "") or "")
        host = urlsplit(url).hostname
        if not host:
            raise ValueError("KerberosTokenRenewer needs GatewayClient.url (or KerberosTokenRenewer.hostname_override)")
        return host

    def get_token(self, auth_header_key: str, auth_scheme: ty.Optional[str], auth_token: str,
                  **kwargs: ty.Any) -> str:
        """A fresh SPNEGO token (base64) for the gateway; raises if the user has no valid ticket."""
        import spnego

        username: ty.Any = spnego.KerberosCCache(ccache=self.ccache) if self.ccache else None
        ctx = spnego.client(username=username, hostname=self._hostname(), service=self.service,
                            protocol="negotiate")
        token = ctx.step()
        if not token:
            raise RuntimeError("Kerberos produced no token for the gateway")
        return base64.b64encode(token).decode()
