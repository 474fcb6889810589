"""Token authentication: one shared token, or a file mapping tokens to users.

Clients send ``Authorization: token <t>`` (what jupyter_server's GatewayClient sends by
default) or ``Authorization: Bearer <t>``. Tokens are compared by their SHA-256 digest,
so a lookup takes the same time whichever token matches or not.

Token file format (one user per line, ``#`` comments)::

    alice  3f2a...            # the token itself
    bob    sha256:9c1d...     # or the hex SHA-256 of the token

The file must be readable and writable by its owner only (``chmod 600``): a file
group or others can read or write is refused, at start and whenever it is re-read (then
no token of the file is accepted until it is fixed). It is re-read when it changes, so
users can be added or revoked without a restart.

The shared token is best given as the environment variable ``YARN_GATEWAY_TOKEN`` (or a
config file only the gateway's account can read): a ``--token`` on the command line is
visible to every local user in ``ps``, and the daemon warns about it.
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


def token_file_problem(path: str, st: os.stat_result) -> Optional[str]:
    """Why a token file's mode is unsafe (None: it is not a regular file only its owner can access)."""
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return f"token file {path} is not a regular file"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"token file {path} is writable by group or others (mode {mode:04o}): anyone who can write it can "
                f"add a token for any user; fix with: chmod 600 {path}")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (f"token file {path} is readable by group or others (mode {mode:04o}): anyone who can read it can "
                f"authenticate as every user it names; fix with: chmod 600 {path}")
    return None


class TokenAuthenticator(Authenticator):
    """Authenticate by shared token and/or token file (see the module docstring)."""

    kind = "token"
    login_hint = "send 'Authorization: token <token>' (jupyter: --GatewayClient.auth_token=<token>)"

    token = Unicode(
        "",
        config=True,
        help="""The shared token. Callers presenting it are `shared_token_user`.
        Default: the environment variable YARN_GATEWAY_TOKEN. Empty = no shared token.
        Do not pass it on the command line (--token): every local user can read a process's
        arguments. Use YARN_GATEWAY_TOKEN or token_file.""",
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
        changes. Must not be readable or writable by group or others (chmod 600).""",
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._file_users: dict[str, str] = {}
        self._file_stamp: Optional[tuple[float, int, int, int]] = None

    def _load_file(self) -> dict[str, str]:
        path = self.token_file
        if not path:
            return {}
        st = os.stat(path)
        stamp = (st.st_mtime, st.st_size, st.st_mode, st.st_ino)  # a chmod or a replaced file: check again
        if stamp == self._file_stamp:
            return self._file_users
        problem = token_file_problem(path, st)
        if problem:
            raise PermissionError(problem)
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
