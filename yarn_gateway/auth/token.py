"""Token authentication: one shared token, or a file mapping tokens to users.

Clients send ``Authorization: token <t>`` (what jupyter_server's GatewayClient sends by
default) or ``Authorization: Bearer <t>``. Tokens are compared by their SHA-256 digest,
so a lookup takes the same time whichever token matches or not.

Token file format (one user per line, ``#`` comments)::

    alice  3f2a...            # the token itself
    bob    sha256:9c1d...     # or the hex SHA-256 of the token

The file must not be writable by group or others; it is re-read when it changes, so
users can be added or revoked without a restart.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import stat
from typing import TYPE_CHECKING, Optional

from traitlets import Unicode, default

from .base import Authenticator, User

if TYPE_CHECKING:
    from tornado.web import RequestHandler


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthenticator(Authenticator):
    """Authenticate by shared token and/or token file (see the module docstring)."""

    kind = "token"
    login_hint = "send 'Authorization: token <token>' (jupyter: --GatewayClient.auth_token=<token>)"

    token = Unicode(
        "",
        config=True,
        help="""The shared token. Callers presenting it are `shared_token_user`.
        Default: the environment variable YARN_GATEWAY_TOKEN. Empty = no shared token.""",
    )

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get("YARN_GATEWAY_TOKEN", "")

    shared_token_user = Unicode(
        "",
        config=True,
        help="""The user name of callers authenticated by the shared token
        (default: the Unix user running the gateway).""",
    )

    @default("shared_token_user")
    def _shared_user_default(self) -> str:
        return getpass.getuser()

    token_file = Unicode(
        "",
        config=True,
        help="""A file of `user token` lines (see yarn_gateway.auth.token). Re-read when it
        changes. Must not be writable by group or others.""",
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._file_users: dict[str, str] = {}
        self._file_stamp: Optional[tuple[float, int]] = None

    def _load_file(self) -> dict[str, str]:
        path = self.token_file
        if not path:
            return {}
        st = os.stat(path)
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._file_stamp:
            return self._file_users
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"token file {path} is writable by group or others; fix with chmod 600")
        users: dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) != 2:
                    self.log.warning("Token file %s line %d: expected 'user token'; ignored", path, lineno)
                    continue
                user, tok = parts
                digest = tok[len("sha256:"):].lower() if tok.startswith("sha256:") else _digest(tok)
                users[digest] = user
        self._file_users, self._file_stamp = users, stamp
        self.log.info("Loaded %d user token(s) from %s", len(users), path)
        return users

    def check_config(self) -> None:
        """Fail early when neither a token nor a readable token file is configured."""
        if not self.token and not self.token_file:
            raise ValueError("token authentication needs --token, YARN_GATEWAY_TOKEN or TokenAuthenticator.token_file")
        if self.token_file:
            self._load_file()

    async def authenticate(self, handler: RequestHandler) -> Optional[User]:
        header = handler.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not value.strip():
            return None
        digest = _digest(value.strip())
        if self.token and digest == _digest(self.token):
            return User(self.shared_token_user)
        try:
            users = self._load_file()
        except OSError as exc:
            self.log.error("Cannot read token file: %s", exc)
            return None
        name = users.get(digest)
        return User(name) if name else None

    def challenge(self, handler: RequestHandler) -> None:
        handler.set_header("WWW-Authenticate", 'Token realm="yarn-gateway"')
