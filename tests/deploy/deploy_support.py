"""Shared pieces of the deployment tests: repository paths, ports, waiting for a gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Any, Optional

import pytest

from helpers.waiting import wait_until_sync

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN_USER = "alice"
TOKEN = "alice-deploy-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_api(port: int, path: str = "api", token: Optional[str] = TOKEN, timeout: float = 5) -> tuple[int, Any]:
    """GET http://127.0.0.1:port/<path> with the token; (status, parsed JSON or None)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}")
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def wait_api(port: int, deadline_s: float = 60, proc: Optional[subprocess.Popen[Any]] = None,
             log: Optional[str] = None) -> dict[str, Any]:
    """Wait until GET /api answers 200 with a version; fail with the daemon's log otherwise."""
    last: Any = None

    def failure() -> str:
        text = ""
        if log and os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()[-4000:]
        return f"gateway on port {port} did not answer /api (last: {last!r}):\n{text}"

    def answered() -> Optional[dict[str, Any]]:
        nonlocal last
        if proc is not None and proc.poll() is not None:
            pytest.fail(failure())
        try:
            status, body = get_api(port)
        except OSError as exc:
            last = exc
            return None
        if status == 200 and isinstance(body, dict) and "version" in body:
            return body
        last = status
        return None

    answer: dict[str, Any] = wait_until_sync(answered, deadline_s, failure, interval=0.2)
    return answer


def write_token_file(path: str, owner: Optional[str] = None) -> str:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{TOKEN_USER} {TOKEN}\n")
    os.chmod(path, 0o600)
    if owner:
        import pwd

        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def run(argv: list[str], *, cwd: str = REPO, env: Optional[dict[str, str]] = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        pytest.fail(f"{argv} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


