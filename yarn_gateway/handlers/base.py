"""Shared behaviour of every handler: authentication, JSON bodies and JSON errors."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Optional

from tornado import web

from ..auth.base import User
from ..errors import GatewayError

if TYPE_CHECKING:
    from ..auth.base import Authenticator
    from ..auth.policy import AccessPolicy
    from ..kernels.registry import KernelRegistry

log = logging.getLogger("yarn_gateway.web")


class GatewayMixin:
    """Authentication and error handling, for RequestHandler and WebSocketHandler alike."""

    settings: dict[str, Any]
    _gw_user: Optional[User] = None

    @property
    def registry(self) -> KernelRegistry:
        return self.settings["registry"]

    @property
    def authenticator(self) -> Authenticator:
        return self.settings["authenticator"]

    @property
    def policy(self) -> AccessPolicy:
        return self.settings["policy"]

    @property
    def caller(self) -> User:
        assert self._gw_user is not None, "prepare() authenticates every request"
        return self._gw_user

    async def prepare(self) -> None:
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


class APIHandler(GatewayMixin, web.RequestHandler):
    """Base for REST endpoints: JSON in, JSON out, JSON errors."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")

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
        if not isinstance(value, dict):
            raise GatewayError(400, "Request body must be a JSON object.", reason="Malformed JSON")
        return value

    def finish_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(value))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GatewayError):
            level = logging.WARNING if e.status >= 500 else logging.INFO
            log.log(level, "%s %s -> %d: %s", self.request.method, self.request.path, e.status, e.log_message)
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

    get = post = put = delete = patch = head = _not_found
