"""A small blocking client of a running gateway's REST API, for administrator commands.

Authentication is a token (``Authorization: token <t>``) or Kerberos: a fresh SPNEGO
token for ``HTTP/<gateway host>`` from the caller's own ticket cache on every request
(tokens cannot be replayed). Every failure becomes an :class:`AdminError` whose message
is fit to print as is.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any, Optional
from urllib.parse import quote, urlsplit

import requests

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class AdminError(Exception):
    """A failure to report to the administrator (the message says what and why)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def read_token_file(path: str) -> str:
    """The token in ``path``: its first non-comment line (of a ``user token`` line, the token)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as exc:
        raise AdminError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    for line in lines:
        if line:
            return line.split()[-1]
    raise AdminError(f"token file {path} holds no token")


def resolve_token(token: str, token_file: str) -> str:
    """``--token``, else ``--token-file``, else $YARN_GATEWAY_TOKEN, else empty."""
    if token:
        return token
    if token_file:
        return read_token_file(token_file)
    return os.environ.get("YARN_GATEWAY_TOKEN", "")


class GatewayAPI:
    """See the module docstring."""

    def __init__(self, url: str, *, token: str = "", kerberos: bool = False, service: str = "HTTP",
                 hostname: str = "", timeout: float = 30.0, verify: bool | str = True) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.kerberos = kerberos
        self.service = service
        self.hostname = hostname or (urlsplit(self.url).hostname or "")
        self.timeout = timeout
        self.verify = verify

    def _auth_headers(self) -> dict[str, str]:
        if self.kerberos:
            return {"Authorization": f"Negotiate {self._negotiate_token()}"}
        if self.token:
            return {"Authorization": f"token {self.token}"}
        return {}

    def _negotiate_token(self) -> str:
        import spnego

        try:
            ctx = spnego.client(hostname=self.hostname, service=self.service, protocol="negotiate")
            token = ctx.step()
        except Exception as exc:  # spnego/gssapi raise many types; all mean "no usable ticket"
            raise AdminError(f"authentication failed: no Kerberos token for {self.service}/{self.hostname} "
                             f"(run kinit?): {exc}") from None
        if not token:
            raise AdminError("authentication failed: Kerberos produced no token")
        return base64.b64encode(token).decode()

    def request(self, method: str, path: str, params: Optional[dict[str, str]] = None) -> Any:
        """Call the API; the decoded JSON answer (None for an empty one), or AdminError."""
        try:
            resp = requests.request(method, self.url + path, params=params, headers=self._auth_headers(),
                                    timeout=self.timeout, verify=self.verify, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise AdminError(f"TLS error talking to {self.url}: {exc}") from None
        except requests.ConnectionError as exc:
            raise AdminError(f"no gateway at {self.url} ({_root_cause(exc)})") from None
        except requests.Timeout:
            raise AdminError(f"the gateway at {self.url} did not answer within {self.timeout:g} s") from None
        if resp.status_code >= 400:
            raise AdminError(self._error_text(resp), resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise AdminError(f"{self.url} answered {method} {path} with something other than JSON; "
                             "is it a yarn-gateway?") from None

    def _error_text(self, resp: requests.Response) -> str:
        try:
            body = resp.json()
            message = str(body.get("message") or body.get("reason") or "")
        except (ValueError, AttributeError):
            message = resp.text.strip()[:200]
        code = resp.status_code
        if code == 401:
            how = "Kerberos" if self.kerberos else ("the token" if self.token else "no credentials given "
                                                    "(use --token-file, $YARN_GATEWAY_TOKEN or --kerberos)")
            return f"authentication failed: the gateway refused {how}: {message}"
        if code == 403:
            return f"permission denied: {message}"
        if code == 404:
            return f"not found: {message}"
        return f"gateway error {code}: {message}"

    # -- kernels --------------------------------------------------------------------------
    def kernels(self, detail: bool = False) -> list[dict[str, Any]]:
        data = self.request("GET", "api/kernels", {"detail": "1"} if detail else None)
        if not isinstance(data, list):
            raise AdminError(f"unexpected answer from {self.url}api/kernels")
        return data

    def kernel(self, kernel_id: str, detail: bool = False) -> dict[str, Any]:
        data = self.request("GET", f"api/kernels/{_kid(kernel_id)}", {"detail": "1"} if detail else None)
        if not isinstance(data, dict):
            raise AdminError(f"unexpected answer for kernel {kernel_id}")
        return data

    def kill(self, kernel_id: str) -> None:
        self.request("DELETE", f"api/kernels/{_kid(kernel_id)}")


def _kid(kernel_id: str) -> str:
    if not UUID_RE.fullmatch(kernel_id):
        raise AdminError(f"{kernel_id!r} is not a kernel id (a UUID, as `yarn-gateway kernels list` shows)")
    return quote(kernel_id)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (e.g. 'Connection refused') instead of urllib3's nested repr."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, OSError) and exc.strerror:  # ConnectionRefusedError, socket.gaierror, ...
        return exc.strerror
    return str(exc).split(": ")[-1] or type(exc).__name__
