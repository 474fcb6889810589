"""`make run`: start a working gateway for a newcomer and print how to connect.

Creates (once) a token in the state directory, starts the gateway on 127.0.0.1:8888 in
the foreground and prints the URL, the token and the `jupyter lab --gateway-url=...`
line. Ctrl-C stops everything it started. Development and demos only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from typing import Optional


def _token(state_dir: str) -> str:
    path = os.path.join(state_dir, "token")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    tok = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=".state")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    token = _token(state_dir)
    url = f"http://{args.ip}:{args.port}"
    user = getpass.getuser()
    print(
        "\n".join(
            [
                "",
                f"yarn-gateway is starting at {url}  (Ctrl-C stops it)",
                f"  token ({user}): stored in {os.path.join(state_dir, 'token')}",
                "",
                "Connect a desktop Jupyter to it with:",
                f"  KERNEL_USERNAME={user} jupyter lab --gateway-url={url} --GatewayClient.auth_token=$(cat "
                f"{os.path.join(state_dir, 'token')})",
                "",
            ]
        ),
        flush=True,
    )
    from .app import YarnGatewayApp

    app = YarnGatewayApp.instance()
    app.initialize([f"--ip={args.ip}", f"--port={args.port}"])
    app.config.TokenAuthenticator.token = token
    app.start()


if __name__ == "__main__":
    main(sys.argv[1:])
