"""Who is calling the minicluster RM, and what they may do.

- Insecure (``hadoop.security.authentication=simple``): Hadoop's pseudo handler with
  anonymous allowed. ``?user.name=<u>`` authenticates as ``u`` and sets a signed
  ``hadoop.auth`` cookie; anonymous callers are ``dr.who`` (StaticUserWebFilter) and get no cookie.
- Secure (``kerberos``): SPNEGO on every endpoint with the HTTP keytab (python-gssapi acceptor):
  401 + ``WWW-Authenticate: Negotiate`` + a cleared cookie + Jetty-like HTML body without
  credentials; on success the mutual-auth token in ``WWW-Authenticate`` and a signed
  ``hadoop.auth`` cookie that skips negotiation next time. Short name = principal without
  instance and realm (auth_to_local ``DEFAULT``).
- Cookie: ``u=<short>&p=<principal>&t=<type>&e=<expiry ms>&s=<base64 HMAC-SHA256>``, double
  quoted, ``Path=/; HttpOnly``. Types are the RM's delegation-token-filter types
  ``simple-dt``/``kerberos-dt`` (reference §4).
- ``?doAs=<user>``: DelegationTokenAuthenticationFilter + DefaultImpersonationProvider rules
  (``hadoop.proxyuser.<caller>.users/groups/hosts``), 403 AuthorizationException JSON otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import grp
import hashlib
import hmac
import ipaddress
import pwd
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

from yarn_gateway.minicluster.rm.errors import RemoteError, authorization

ANONYMOUS = "dr.who"


@dataclass
class Caller:
    """The result of authentication (before doAs)."""

    short: str  # short user name
    principal: str  # full principal (== short in simple mode)
    anonymous: bool = False


def short_name(principal: str) -> str:
    """auth_to_local DEFAULT: ``alice/host@REALM`` -> ``alice``."""
    return principal.split("@", 1)[0].split("/", 1)[0]


def user_groups(user: str) -> list[str]:
    """Unix groups of ``user`` (primary first), like ShellBasedUnixGroupsMapping. Blocking."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return []
    names = []
    try:
        names.append(grp.getgrgid(pw.pw_gid).gr_name)
    except KeyError:
        pass
    names += [g.gr_name for g in grp.getgrall() if user in g.gr_mem and g.gr_name not in names]
    return names


class AccessControlList:
    """Hadoop ``AccessControlList``: ``"u1,u2 g1,g2"``, ``*`` = everyone, blank = nobody."""

    def __init__(self, spec: str) -> None:
        spec = spec or ""
        self.all = spec.strip() == "*"
        users, _, groups = spec.partition(" ")  # like aclString.split(" ", 2)
        self.users = {u.strip() for u in users.split(",") if u.strip()}
        self.groups = {g.strip() for g in groups.split(",") if g.strip()}

    def allows(self, user: str, groups: list[str]) -> bool:
        return self.all or user in self.users or bool(self.groups.intersection(groups))


class CookieSigner:
    """Hadoop's ``Signer`` with a random per-cluster secret (shared by both HA RMs)."""

    def __init__(self, secret: bytes, validity_s: int = 36000) -> None:
        self._secret = secret
        self.validity_s = validity_s

    def _sig(self, payload: str) -> str:
        return base64.b64encode(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()).decode()

    def make(self, short: str, principal: str, auth_type: str) -> str:
        expiry = int(time.time() * 1000) + self.validity_s * 1000
        payload = f"u={short}&p={principal}&t={auth_type}&e={expiry}"
        return f"{payload}&s={self._sig(payload)}"

    def verify(self, value: str, auth_type: str) -> Optional[Caller]:
        value = value.strip('"')
        payload, sep, sig = value.rpartition("&s=")
        if not sep or not hmac.compare_digest(self._sig(payload), sig):
            return None
        fields = dict(kv.split("=", 1) for kv in payload.split("&") if "=" in kv)
        try:
            expired = int(fields.get("e", "0")) <= int(time.time() * 1000)
        except ValueError:
            return None
        if expired or fields.get("t") != auth_type or not fields.get("u"):
            return None
        return Caller(short=fields["u"], principal=fields.get("p", fields["u"]))


class ProxyUsers:
    """``DefaultImpersonationProvider`` over ``{svc: {"hosts","users","groups"}}``.

    Host entries: ``*``, IPs, CIDRs or host names; names are resolved once by ``resolve()``
    (MachineList resolves at construction, too).
    """

    def __init__(self, rules: Optional[dict[str, dict[str, str]]]) -> None:
        self.rules = {k: dict(v) for k, v in (rules or {}).items()}
        self._resolved: dict[str, set[str]] = {}

    async def resolve(self) -> None:
        loop = asyncio.get_running_loop()
        for svc, rule in self.rules.items():
            ips: set[str] = set()
            for entry in _split(rule.get("hosts", "")):
                if entry == "*" or _is_ip_or_net(entry):
                    continue
                try:
                    infos = await loop.getaddrinfo(entry, None, type=socket.SOCK_STREAM)
                    ips.update(str(i[4][0]) for i in infos)
                except OSError:
                    pass
            self._resolved[svc] = ips

    async def authorize(self, real: Caller, target: str, remote_ip: str) -> None:
        """Raise the 403 RemoteError Hadoop gives, or return when ``real`` may act as ``target``."""
        rule = self.rules.get(real.short)
        allowed = False
        if rule is not None:
            users = _split(rule.get("users", ""))
            groups = _split(rule.get("groups", ""))
            if "*" in users or target in users or "*" in groups:
                allowed = True
            elif groups:
                tgroups = await asyncio.get_running_loop().run_in_executor(None, user_groups, target)
                allowed = bool(set(groups).intersection(tgroups))
        if not allowed:
            raise authorization(f"User: {real.principal} is not allowed to impersonate {target}")
        hosts = _split(rule.get("hosts", "")) if rule else []
        if "*" in hosts or remote_ip in hosts or remote_ip in self._resolved.get(real.short, set()):
            return
        for entry in hosts:
            if "/" in entry and _is_ip_or_net(entry):
                try:
                    if ipaddress.ip_address(remote_ip) in ipaddress.ip_network(entry, strict=False):
                        return
                except ValueError:
                    continue
        raise authorization(f"Unauthorized connection for super-user: {real.principal} from IP {remote_ip}")


def _split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _is_ip_or_net(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return False


class SpnegoAcceptor:
    """Accept one SPNEGO/Kerberos token with the HTTP service keytab (python-gssapi)."""

    def __init__(self, keytab: str, principal: Optional[str]) -> None:
        self.keytab = keytab
        self.principal = principal

    def accept(self, token: bytes) -> tuple[str, Optional[bytes]]:
        """Blocking (run in an executor). Returns (client principal, mutual-auth token)."""
        import gssapi  # imported lazily: only secure clusters need it

        name = None
        if self.principal and self.principal != "*":
            name = gssapi.Name(self.principal, gssapi.NameType.kerberos_principal)
        creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": self.keytab})
        ctx = gssapi.SecurityContext(creds=creds, usage="accept")
        out = ctx.step(token)
        if not ctx.complete:
            # Kerberos needs one leg; multi-leg SPNEGO (NTLM) is not supported here.
            raise ValueError("SPNEGO negotiation needs more legs")
        return str(ctx.initiator_name), out


def unauthorized_html(path: str, status: int = 401, message: str = "Authentication required") -> str:
    """[inf] Jetty 9's error page shape, as Hadoop's auth filter answers it."""
    return (
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n"
        f"<title>Error {status} {message}</title>\n</head>\n"
        f"<body><h2>HTTP ERROR {status}</h2>\n<table>\n<tr><th>URI:</th><td>{_esc(path)}</td></tr>\n"
        f"<tr><th>STATUS:</th><td>{status}</td></tr>\n<tr><th>MESSAGE:</th><td>{_esc(message)}</td></tr>\n"
        "<tr><th>SERVLET:</th><td>com.sun.jersey.spi.container.servlet.ServletContainer-1</td></tr>\n"
        "</table>\n</body>\n</html>\n"
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class SecurityConfig:
    """Everything the web layer needs to authenticate and authorize."""

    secure: bool
    signer: CookieSigner
    proxyusers: ProxyUsers
    acl_enable: bool
    admin_acl: AccessControlList
    spnego: Optional[SpnegoAcceptor] = None
    admin_token: str = ""

    @property
    def cookie_type(self) -> str:
        return "kerberos-dt" if self.secure else "simple-dt"

    async def groups_of(self, user: str) -> list[str]:
        return await asyncio.get_running_loop().run_in_executor(None, user_groups, user)

    async def can_modify(self, user: str, owner: str, acls: Optional[dict[str, Any]] = None) -> bool:
        """MODIFY_APP: owner and admins when ``yarn.acl.enable``; everyone otherwise.

        [inf] queue ACLs (``acl_administer_queue``) are treated as nobody.
        """
        if not self.acl_enable or user == owner:
            return True
        groups = await self.groups_of(user)
        return self.admin_acl.allows(user, groups)


def forbidden_static_user() -> RemoteError:
    """Secure RM + the static user: the RM answers 403 with this text (plain)."""
    return RemoteError(403, "ForbiddenException", "org.apache.hadoop.yarn.webapp.ForbiddenException",
                       "The default static user cannot carry out this operation.")
