"""Shared behaviour of every handler: origin checks, authentication, JSON bodies and JSON errors.

Cross-origin writes: a browser attaches its Kerberos (SPNEGO) credentials and cookies to
requests that any web page makes. So a write (POST, PUT, PATCH, DELETE) or a websocket
upgrade whose ``Origin`` is another site is refused with 403 before authentication,
unless ``YarnGatewayApp.allow_origin`` lists that origin. Requests without ``Origin``
(desktop Jupyter servers, scripts: no browser is involved) and same-origin ones pass.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from tornado import web
from tornado.websocket import WebSocketHandler

from ..auth.base import User
from ..errors import GatewayError
from ..logs import safe_text

if TYPE_CHECKING:
    from ..auth.base import Authenticator
    from ..auth.policy import AccessPolicy
    from ..kernels.registry import KernelRegistry

log = logging.getLogger("yarn_gateway.web")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_origins(text: str) -> frozenset[str]:
    """``YarnGatewayApp.allow_origin`` as a set of normalized origins ('*' kept as is)."""
    out = set()
    for item in text.replace(",", " ").split():
        out.add("*" if item == "*" else normalize_origin(item) or item.lower())
    return frozenset(out)


def normalize_origin(origin: str, scheme: str = "") -> Optional[str]:
    """``scheme://host:port`` in lower case with the port made explicit; None if malformed.
    Without a scheme (a Host header), ``scheme`` supplies it."""
    try:
        parts = urlsplit(origin if "://" in origin else f"{scheme}://{origin}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    port = port or _DEFAULT_PORTS.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{host.lower()}:{port}"


def _same_site(origin: str, handler: Any) -> bool:
    """Whether ``origin`` names the host the request was sent to (its Host header)."""
    host = handler.request.headers.get("Host", "")
    origin_n = normalize_origin(origin)
    if origin_n is None or not host:
        return False
    # Host and port as the browser addressed them (the origin's scheme: a TLS-terminating proxy
    # in front of the gateway does not change what is same-site).
    return normalize_origin(host, origin_n.split("://", 1)[0]) == origin_n


class GatewayMixin:
    """Authentication and error handling, for RequestHandler and WebSocketHandler alike."""

    settings: dict[str, Any]
    _gw_user: Optional[User] = None

    @property
    def registry(self) -> KernelRegistry:
        registry: KernelRegistry = self.settings["registry"]
        return registry

    @property
    def authenticator(self) -> Authenticator:
        authenticator: Authenticator = self.settings["authenticator"]
        return authenticator

    @property
    def policy(self) -> AccessPolicy:
        policy: AccessPolicy = self.settings["policy"]
        return policy

    @property
    def caller(self) -> User:
        assert self._gw_user is not None, "prepare() authenticates every request"
        return self._gw_user

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page of ``origin`` may write here: same site, or YarnGatewayApp.allow_origin."""
        allowed: frozenset[str] = self.settings.get("allow_origin") or frozenset()
        return _same_site(origin, self) or "*" in allowed or normalize_origin(origin) in allowed

    def check_origin(self, origin: str) -> bool:
        """Websocket upgrades (tornado asks): the same rule as for writes."""
        return self.origin_allowed(origin)

    def _refuse_cross_origin(self) -> None:
        request = self.request  # type: ignore[attr-defined]
        origin = request.headers.get("Origin")
        if origin is None:  # no browser page is behind this request
            return
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket" or isinstance(self, WebSocketHandler)
        if (request.method in WRITE_METHODS or request.method == "OPTIONS" or upgrade) \
                and not self.origin_allowed(origin):
            raise GatewayError(
                403,
                f"Cross-origin request refused: a web page of {safe_text(origin)[:200]!r} may not "
                f"{'open a websocket' if upgrade else 'send ' + request.method + ' requests'} to this gateway. "
                "An administrator can allow that origin with YarnGatewayApp.allow_origin.",
                reason="Cross-origin request refused",
            )

    async def prepare(self) -> None:
        self._refuse_cross_origin()
        if self.request.method == "OPTIONS":  # type: ignore[attr-defined]
            self._preflight()
            return
        user = await self.authenticator.authenticate(self)  # type: ignore[arg-type]
        if user is None:
            self.authenticator.challenge(self)  # type: ignore[arg-type]
            raise GatewayError(
                401,
                f"Authentication required: {self.authenticator.login_hint} "
                f"({self.authenticator.kind} authentication is configured).",
                reason="Unauthorized",
            )
        self._gw_user = user

    def _preflight(self) -> None:
        """A CORS preflight from an allowed origin (browsers send it without credentials)."""
        handler: Any = self
        if handler.request.headers.get("Origin") is None:
            raise GatewayError(405, "OPTIONS is only answered to CORS preflights.", reason="Method Not Allowed")
        handler.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS")
        handler.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Requested-With")
        handler.set_header("Access-Control-Max-Age", "600")
        handler.set_status(204)
        handler.finish()


class APIHandler(GatewayMixin, web.RequestHandler):
    """Base for REST endpoints: JSON in, JSON out, JSON errors."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        origin = self.request.headers.get("Origin")
        if origin is not None:  # a browser may read our answers only on an allowed origin's pages
            self.set_header("Vary", "Origin")
            if not _same_site(origin, self) and self.origin_allowed(origin):
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Access-Control-Allow-Credentials", "true")

    def check_xsrf_cookie(self) -> None:
        # Token/SPNEGO-authenticated API: no ambient cookies are trusted for writes.
        return None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object (empty body = {}); 400/413 otherwise."""
        limit = self.settings["max_request_body"]
        body = self.request.body
        if len(body) > limit:
            raise GatewayError(413, f"Request body is {len(body)} bytes; the limit is {limit}.",
                               reason="Request too large")
        if not body.strip():
            return {}
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise GatewayError(400, "Request body is not valid JSON.", reason="Malformed JSON") from None
        except RecursionError:
            raise GatewayError(400, "Request body nests JSON arrays or objects too deeply.",
                               reason="Malformed JSON") from None
        if not isinstance(value, dict):
            raise GatewayError(400, "Request body must be a JSON object.", reason="Malformed JSON")
        return value

    def finish_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(value))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GatewayError):
            level = logging.WARNING if e.status >= 500 else logging.INFO
            log.log(level, "%s %s -> %d: %s", safe_text(self.request.method), safe_text(self.request.path),
                    e.status, safe_text(e.log_message))
            if self._finished:
                return
            self.clear()
            if e.status == 401:  # clear() dropped the challenge headers set in prepare()
                self.authenticator.challenge(self)
            self.set_status(e.status)
            for name, value in e.headers.items():
                self.set_header(name, value)
            self.finish(json.dumps(e.to_json()))
            return
        super()._handle_request_exception(e)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        message = "An internal error occurred; the gateway log has the details." if status_code >= 500 else reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message and status_code < 500:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"reason": reason, "message": message}))


class NotFoundHandler(APIHandler):
    """Anything else: JSON 404 (after authentication, so probing reveals nothing)."""

    def _not_found(self, *args: Any) -> None:
        raise GatewayError(404, f"No such endpoint: {self.request.path}", reason="Not Found")

    get = post = put = delete = patch = head = options = _not_found
