"""The gateway's own Kerberos login: keytab → private credential cache, renewed forever.

:class:`KerberosLogin` runs ``kinit -kt <keytab> <principal>`` (an asyncio subprocess,
never blocking the loop) into a FILE credential cache inside a private 0700 directory,
then a background task refreshes the ticket before it expires: ``kinit -R`` while the
ticket is renewable and the renewed ticket still lives long enough, otherwise a fresh
login from the keytab. Each refresh writes a new file and renames it over the old one,
so a spark-submit JVM reading the cache never sees a half-written file.

Users of the login: spark-submit (``KRB5CCNAME=FILE:<cache>`` and
``-Djava.security.krb5.conf=<krb5_conf>``, :meth:`KerberosLogin.submit_env`), the RM
REST client (:meth:`KerberosLogin.requests_auth`, SPNEGO from that cache), and the health
endpoint (:meth:`KerberosLogin.health`). When there is no valid ticket they get a
:class:`KerberosTicketError` naming the principal and the keytab — never a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional

import requests
import spnego
from requests_kerberos import OPTIONAL, HTTPKerberosAuth
from traitlets import Float, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import GatewayError
from .utils import isoformat_z, run_blocking


class KerberosTicketError(GatewayError):
    """The gateway holds no valid Kerberos ticket (login failed, or it expired)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, reason="Kerberos ticket unavailable")


class RMKerberosError(KerberosTicketError, requests.RequestException):
    """Raised inside an RM REST call made without a valid gateway ticket.

    A ``requests`` exception too, so the RM client reports it like any failed call.
    """


@dataclass(frozen=True)
class TicketInfo:
    """The ticket-granting ticket in a credential cache (times are epoch seconds)."""

    principal: str
    start: float
    end: float
    renew_till: float

    @property
    def renewable(self) -> bool:
        return self.renew_till > self.end

    def remaining(self, now: Optional[float] = None) -> float:
        return self.end - (time.time() if now is None else now)


# -- FILE ccache reader (MIT format 0x0504; documented in MIT's "ccache file format") ------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated credential cache")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def octets(self) -> bytes:
        return self.take(self.u32())

    def principal(self) -> tuple[list[str], str]:
        self.u32()  # name type
        count = self.u32()
        realm = self.octets().decode("utf-8", "replace")
        return [self.octets().decode("utf-8", "replace") for _ in range(count)], realm

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def read_tgt(path: str) -> Optional[TicketInfo]:
    """The TGT of the FILE credential cache at ``path``; None if absent or unreadable (blocking)."""
    try:
        with open(path, "rb") as f:
            r = _Reader(f.read())
        if r.u16() != 0x0504:
            return None
        r.take(r.u16())  # header tags (KDC time offset)
        comps, realm = r.principal()
        client = "/".join(comps) + "@" + realm
        best: Optional[TicketInfo] = None
        while not r.at_end:
            r.principal()
            server, srealm = r.principal()
            r.u16()  # enctype
            r.octets()  # key
            _auth, start, end, renew = r.u32(), r.u32(), r.u32(), r.u32()
            r.u8()  # is_skey
            r.u32()  # flags
            for _ in range(r.u32()):  # addresses
                r.u16()
                r.octets()
            for _ in range(r.u32()):  # authdata
                r.u16()
                r.octets()
            r.octets()  # ticket
            r.octets()  # second ticket
            if server[:1] == ["krbtgt"] and srealm == realm and (best is None or end > best.end):
                best = TicketInfo(client, float(start), float(end), float(renew))
        return best
    except (OSError, ValueError, struct.error):
        return None


class KerberosLogin(LoggingConfigurable):
    """See the module docstring. Enabled when ``keytab`` is set."""

    principal = Unicode(
        "", config=True,
        help="The gateway's principal, e.g. 'yarngw/_HOST@EXAMPLE.COM' (_HOST = this host's lower-case FQDN). "
        "Default: the first principal of the keytab.",
    )
    keytab = Unicode("", config=True, help="Keytab holding the gateway principal's keys. Empty = no Kerberos login.")
    ccache_dir = Unicode(
        "", config=True,
        help="Private directory (mode 0700) for the gateway's credential cache. Default: a new temporary "
        "directory, removed when the gateway stops.",
    )
    krb5_conf = Unicode(config=True, help="krb5.conf for kinit and spark-submit's JVM "
                        "(-Djava.security.krb5.conf). Default: $KRB5_CONFIG, else /etc/krb5.conf.")

    @default("krb5_conf")
    def _krb5_conf_default(self) -> str:
        return (os.environ.get("KRB5_CONFIG") or "/etc/krb5.conf").split(":")[0]

    renew_lifetime = Unicode("7d", config=True, help="Renewable lifetime asked of the KDC (kinit -r).")
    refresh_fraction = Float(
        0.3, config=True,
        help="Refresh the ticket when less than this fraction of its lifetime is left.",
    )
    min_valid_seconds = Float(
        5.0, config=True,
        help="A ticket with fewer seconds left than this counts as expired (launches need it to last).",
    )
    retry_interval = Float(15.0, config=True, help="Seconds between attempts after a failed login.")
    kinit = Unicode("kinit", config=True, help="The kinit program (MIT Kerberos).")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ticket: Optional[TicketInfo] = None
        self.last_error = ""
        self.last_refresh = 0.0
        self.refreshes = {"login": 0, "renew": 0}
        self._dir = ""
        self._own_dir = False
        self._task: Optional[asyncio.Task[None]] = None
        self._lock = asyncio.Lock()
        self._principal = ""

    @property
    def enabled(self) -> bool:
        return bool(self.keytab)

    @property
    def ccache_path(self) -> str:
        return os.path.join(self._dir, "krb5cc_gateway") if self._dir else ""

    @property
    def ccache_name(self) -> str:
        return f"FILE:{self.ccache_path}"

    @property
    def principal_name(self) -> str:
        return self._principal or self.principal

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Check the configuration, log in once, and start the refresher.

        A missing keytab file is a configuration error (ValueError). A failed login is
        not: it is logged, retried every ``retry_interval``, reported by ``/api/health``,
        and launches fail at once with :class:`KerberosTicketError`.
        """
        if not os.access(self.keytab, os.R_OK):
            raise ValueError(f"KerberosLogin.keytab {self.keytab!r} is missing or unreadable")
        if "_HOST" in self.principal:
            fqdn = (await run_blocking(socket.getfqdn)).lower()
            self._principal = self.principal.replace("_HOST", fqdn)
        else:
            self._principal = self.principal
        if self.ccache_dir:
            os.makedirs(self.ccache_dir, mode=0o700, exist_ok=True)
            os.chmod(self.ccache_dir, 0o700)
            self._dir = self.ccache_dir
        else:
            self._dir = tempfile.mkdtemp(prefix="yarngw-krb5-")
            self._own_dir = True
        await self.refresh()
        self._task = asyncio.create_task(self._refresher(), name="kerberos-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._own_dir and self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    # -- ticket -------------------------------------------------------------------------
    def valid(self, now: Optional[float] = None) -> bool:
        return self.ticket is not None and self.ticket.remaining(now) > self.min_valid_seconds

    def _error_text(self) -> str:
        why = self.last_error or ("the ticket expired" if self.ticket else "no login yet")
        return (f"The gateway has no valid Kerberos ticket for principal '{self.principal_name or '(keytab default)'}' "
                f"(keytab {self.keytab}): {why}. Check the keytab and the KDC; the gateway retries by itself.")

    def check_ticket(self) -> None:
        """Raise :class:`KerberosTicketError` unless the ticket is valid (non-blocking)."""
        if not self.valid():
            raise KerberosTicketError(self._error_text())

    async def ensure_valid(self) -> TicketInfo:
        """The current ticket; refreshes once on the spot if needed, else raises KerberosTicketError."""
        if not self.valid():
            await self.refresh()
        self.check_ticket()
        assert self.ticket is not None
        return self.ticket

    async def refresh(self) -> bool:
        """Renew the ticket if it is renewable far enough ahead, else log in again; True on success."""
        async with self._lock:
            old = self.ticket
            ok = False
            if old is not None and old.renewable and old.remaining() > 1:
                ok = await self._kinit(["-R"], copy=True)
                new = self.ticket
                # Near renew_till the renewed ticket is capped: a fresh login is better.
                if ok and new is not None and new.end - time.time() < 0.5 * (old.end - old.start):
                    ok = False
                if ok:
                    self.refreshes["renew"] += 1
            if not ok:
                args = ["-kt", self.keytab, "-r", self.renew_lifetime]
                if self._principal:
                    args.append(self._principal)
                ok = await self._kinit(args, copy=False)
                if ok:
                    self.refreshes["login"] += 1
            if ok:
                self.last_refresh = time.time()
                self.last_error = ""
                assert self.ticket is not None
                self._principal = self._principal or self.ticket.principal
                self.log.info("Kerberos ticket for %s valid until %s (renewable until %s)", self.ticket.principal,
                              _iso(self.ticket.end), _iso(self.ticket.renew_till))
            return ok

    async def _kinit(self, args: list[str], copy: bool) -> bool:
        tmp = f"{self.ccache_path}.{os.getpid()}.new"
        if copy:
            await run_blocking(shutil.copyfile, self.ccache_path, tmp)
            os.chmod(tmp, 0o600)
        env = dict(os.environ, KRB5CCNAME=f"FILE:{tmp}", KRB5_CONFIG=self.krb5_conf)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.kinit, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await proc.communicate()
            except BaseException:  # cancelled (a gateway stop): never leave kinit running unreaped
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.shield(proc.wait())
                await run_blocking(_unlink, tmp)
                raise
        except OSError as exc:
            self.last_error = f"cannot run {self.kinit}: {exc}"
            self.log.error("Kerberos login failed: %s", self.last_error)
            return False
        if proc.returncode != 0:
            text = out.decode(errors="replace").strip().splitlines()
            self.last_error = f"kinit {'-R' if '-R' in args else '-kt'}: {text[-1] if text else proc.returncode}"
            self.log.error("Kerberos %s failed for %s (keytab %s): %s", "renewal" if copy else "login",
                           self.principal_name or "(keytab default)", self.keytab, self.last_error)
            await run_blocking(_unlink, tmp)
            return False
        os.chmod(tmp, 0o600)
        info = await run_blocking(read_tgt, tmp)
        if info is None:
            self.last_error = "kinit left no ticket-granting ticket in the cache"
            await run_blocking(_unlink, tmp)
            return False
        os.replace(tmp, self.ccache_path)
        self.ticket = info
        return True

    def _next_delay(self) -> float:
        t = self.ticket
        if t is None or not self.valid():
            return self.retry_interval
        lifetime = max(1.0, t.end - t.start)
        margin = max(self.refresh_fraction * lifetime, self.min_valid_seconds + 1.0)
        return max(1.0, t.remaining() - margin)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            try:
                await self.refresh()
            except Exception:  # the refresher must outlive any single failure
                self.log.exception("Kerberos refresh failed")

    # -- consumers ----------------------------------------------------------------------
    def submit_env(self) -> dict[str, str]:
        """Environment for spark-submit: the JVM ignores KRB5_CONFIG, so krb5.conf goes in SPARK_SUBMIT_OPTS."""
        opts = os.environ.get("SPARK_SUBMIT_OPTS", "")
        return {
            "KRB5CCNAME": self.ccache_name,
            "KRB5_CONFIG": self.krb5_conf,
            "SPARK_SUBMIT_OPTS": f"{opts} -Djava.security.krb5.conf={self.krb5_conf}".strip(),
        }

    def requests_auth(self) -> requests.auth.AuthBase:
        """SPNEGO for ``requests`` (yarn-api-client) from the gateway's cache, never the process default."""
        return _GatewaySpnegoAuth(self)

    def health(self) -> dict[str, Any]:
        t = self.ticket
        out: dict[str, Any] = {"ok": self.valid(), "principal": t.principal if t else self.principal_name,
                               "keytab": self.keytab}
        if t is not None:
            out.update(expires=_iso(t.end), renewable_until=_iso(t.renew_till) if t.renewable else None,
                       seconds_left=max(0, int(t.remaining())))
        if self.last_error:
            out["error"] = self.last_error
        out["refreshes"] = dict(self.refreshes)
        return out


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return isoformat_z(datetime.fromtimestamp(epoch, timezone.utc))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _GatewaySpnegoAuth(HTTPKerberosAuth):  # type: ignore[misc]  # requests-kerberos is untyped
    """requests-kerberos with the gateway's own cache; a named error when it holds no ticket."""

    def __init__(self, login: KerberosLogin) -> None:
        super().__init__(mutual_authentication=OPTIONAL, principal=spnego.KerberosCCache(ccache=login.ccache_name))
        self._login = login

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._login.valid():
            raise RMKerberosError(self._login._error_text())
        prepared: requests.PreparedRequest = super().__call__(r)
        return prepared
