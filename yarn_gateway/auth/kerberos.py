"""Kerberos (SPNEGO) authentication of users, then a signed cookie.

A request without credentials gets ``401`` with ``WWW-Authenticate: Negotiate``. A
request with ``Authorization: Negotiate <token>`` is accepted with the gateway's
``HTTP/<host>`` keytab (python-gssapi, in the executor: accepting may read the keytab and
replay cache); on success the reply carries the mutual-authentication token and a signed,
expiring cookie, so a browser or desktop need not negotiate on every request. Websocket
upgrades are ordinary GET requests here and are authenticated the same way.

Cookie value: ``<base64url(user)>.<expiry epoch s>.<base64url(HMAC-SHA256)>``; the key is
``cookie_secret`` (hex) or random per process (cookies then die with the process, which
is harmless: clients negotiate again).

Principal → user name (``auth_to_local``-style): the ``auth_to_local`` rules are tried in
order, ``"<regex> => <replacement>"`` with ``re.fullmatch`` and ``\\1`` back-references;
if none matches, a principal of one of ``local_realms`` (default: the realm of the
gateway's own HTTP principal) with a single component maps to that component. Anything
else is refused (403), so a principal of a trusted foreign realm cannot pass for a local
user by accident.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Optional

from traitlets import Float, List, Set, Unicode, default, validate

from ..errors import GatewayError
from ..utils import run_blocking
from .base import Authenticator, User

if TYPE_CHECKING:
    from tornado.web import RequestHandler

_USER_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class KerberosAuthenticator(Authenticator):
    """See the module docstring."""

    kind = "kerberos"
    login_hint = ("negotiate with Kerberos (SPNEGO): run kinit, then use a client that sends "
                  "'Authorization: Negotiate' (jupyter: --GatewayClient.gateway_token_renewer_class="
                  "yarn_gateway_client.KerberosTokenRenewer)")

    keytab = Unicode(config=True, help="Keytab with the gateway's HTTP/<host> service key (default: $KRB5_KTNAME).")

    @default("keytab")
    def _keytab_default(self) -> str:
        import os

        return os.environ.get("KRB5_KTNAME", "").removeprefix("FILE:")

    service_principal = Unicode(
        "", config=True,
        help="Accept tokens only for this service principal (e.g. HTTP/edge01.example.com@EXAMPLE.COM). "
        "Default: any principal in the keytab.",
    )
    auth_to_local = List(
        Unicode(), config=True,
        help="Rules mapping principals to user names, tried in order: '<regex> => <replacement>' "
        r"(full match; \1 refers to groups), e.g. '(.+)/admin@EXAMPLE\.COM => \1'.",
    )
    local_realms = Set(
        Unicode(), config=True,
        help="Realms whose single-component principals map to their name without the realm "
        "(default: the realm of the gateway's HTTP principal).",
    )
    cookie_name = Unicode("yarn_gateway_auth", config=True, help="Name of the authentication cookie.")
    cookie_secret = Unicode(
        "", config=True,
        help="Hex key signing the cookie (share it between gateways behind one load balancer). "
        "Default: random per process.",
    )
    cookie_max_age = Float(3600.0, config=True, help="Seconds an authentication cookie stays valid.")
    secure_cookie = Unicode(
        "auto", config=True, help="Mark the cookie Secure: 'auto' (when the request came over TLS), 'yes' or 'no'."
    )

    @validate("auth_to_local")
    def _validate_rules(self, proposal: Any) -> list[str]:
        for rule in proposal["value"]:
            pattern, sep, _repl = str(rule).partition("=>")
            if not sep:
                raise ValueError(f"auth_to_local rule {rule!r} lacks '=>'")
            re.compile(pattern.strip())
        return list(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key = bytes.fromhex(self.cookie_secret) if self.cookie_secret else secrets.token_bytes(32)
        parts = (rule.partition("=>") for rule in self.auth_to_local)
        self._rules = [(re.compile(p.strip()), r.strip()) for p, _sep, r in parts]

    def check_config(self) -> None:
        import os

        if not self.keytab or not os.access(self.keytab, os.R_OK):
            raise ValueError(f"Kerberos authentication needs a readable KerberosAuthenticator.keytab "
                             f"(got {self.keytab!r})")

    # -- cookie -------------------------------------------------------------------------
    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()

    def make_cookie(self, user: str, now: Optional[float] = None) -> str:
        expiry = int((time.time() if now is None else now) + self.cookie_max_age)
        payload = f"{_b64(user.encode())}.{expiry}"
        return f"{payload}.{_b64(self._mac(payload))}"

    def read_cookie(self, value: str) -> Optional[str]:
        """The user a cookie names, or None if it is malformed, forged or expired."""
        try:
            user_b64, expiry, mac = value.split(".")
            payload = f"{user_b64}.{expiry}"
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                return None
            if int(expiry) < time.time():
                return None
            return _unb64(user_b64).decode()
        except (ValueError, UnicodeDecodeError):
            return None

    # -- principal mapping --------------------------------------------------------------
    def map_principal(self, principal: str, service_realm: str) -> Optional[str]:
        for pattern, repl in self._rules:
            m = pattern.fullmatch(principal)
            if m:
                name = m.expand(repl)
                return name if _USER_RE.fullmatch(name) else None
        primary, _, realm = principal.rpartition("@")
        realms = self.local_realms or {service_realm}
        if realm in realms and primary and "/" not in primary and _USER_RE.fullmatch(primary):
            return primary
        return None

    # -- Authenticator ------------------------------------------------------------------
    async def authenticate(self, handler: RequestHandler) -> Optional[User]:
        cookie = handler.get_cookie(self.cookie_name)
        if cookie:
            name = self.read_cookie(cookie)
            if name:
                return User(name)
        header = handler.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "negotiate" or not value.strip():
            return None
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return None
        try:
            principal, service, out = await run_blocking(self._accept, token)
        except Exception as exc:  # GSSError and friends: a bad or replayed token is just "not authenticated"
            self.log.info("SPNEGO from %s refused: %s", handler.request.remote_ip, _short(exc))
            return None
        name = self.map_principal(principal, service.rpartition("@")[2])
        if name is None:
            raise GatewayError(403, f"Kerberos principal '{principal}' has no user name on this gateway "
                               "(KerberosAuthenticator.auth_to_local / local_realms).",
                               reason="Unknown principal")
        if out:
            handler.set_header("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode())
        secure = self.secure_cookie == "yes" or (self.secure_cookie == "auto" and handler.request.protocol == "https")
        handler.set_cookie(self.cookie_name, self.make_cookie(name), httponly=True, secure=secure,
                           samesite="Strict", expires_days=None, max_age=int(self.cookie_max_age), path="/")
        self.log.debug("SPNEGO: %s authenticated as %s", principal, name)
        return User(name)

    def _accept(self, token: bytes) -> tuple[str, str, Optional[bytes]]:
        """Blocking: one SPNEGO/Kerberos leg with the service keytab."""
        import gssapi

        name = None
        if self.service_principal:
            name = gssapi.Name(self.service_principal, gssapi.NameType.kerberos_principal)
        creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": self.keytab})
        ctx = gssapi.SecurityContext(creds=creds, usage="accept")
        out = ctx.step(token)
        if not ctx.complete:
            raise ValueError("SPNEGO needs more than one leg (only Kerberos is supported)")
        return str(ctx.initiator_name), str(ctx.target_name), out

    def challenge(self, handler: RequestHandler) -> None:
        handler.set_header("WWW-Authenticate", "Negotiate")
        if handler.get_cookie(self.cookie_name):
            handler.clear_cookie(self.cookie_name, path="/")


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text[:300]
