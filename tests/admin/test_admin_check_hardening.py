"""`yarn-gateway check` reports insecure configurations: local kernels on a public address,
a token file group or others can read (issue 15, acceptance 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from helpers.gateway_fixtures import TOKENS


def run_check(tmp: Any, values: dict[str, dict[str, Any]]) -> tuple[int, dict[str, list[str]]]:
    path = tmp / "gw.py"
    path.write_text("".join(f"c.{s}.{k} = {v!r}\n" for s, kv in values.items() for k, v in kv.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    proc = subprocess.run([sys.executable, "-m", "yarn_gateway", "check", f"--config={path}"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    lines: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        _status, _, rest = line.partition(" ")
        name = rest.partition(": ")[0]
        lines.setdefault(name, []).append(line)
    return proc.returncode, lines


def config(tmp: Any, mode: int = 0o600, **policy: Any) -> dict[str, dict[str, Any]]:
    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(tokens, mode)
    return {"YarnGatewayApp": {"ip": "127.0.0.1", "port": 0},
            "TokenAuthenticator": {"token_file": str(tokens)},
            "AccessPolicy": {"admin_users": {"admin"}, **policy},
            "SessionKeeper": {"store": "none"}}


def test_check_fails_local_kernels_on_a_public_address(tmp_path: Any) -> None:
    cfg = config(tmp_path, local_kernel_users={"alice"}, local_kernel_groups={"devs"})
    cfg["YarnGatewayApp"]["ip"] = "0.0.0.0"
    rc, lines = run_check(tmp_path, cfg)
    assert rc == 1
    [line] = lines["local-kernels"]
    assert line.startswith("FAIL local-kernels: enabled for alice, group devs while listening on '0.0.0.0'"), line
    assert "python_local" in line and "local_kernel_users" in line
    # On loopback only it is a warning (development); off, an OK that says what is refused.
    cfg["YarnGatewayApp"]["ip"] = "127.0.0.1"
    _rc, lines = run_check(tmp_path, cfg)
    assert lines["local-kernels"][0].startswith("WARN local-kernels: enabled for alice, group devs on loopback")
    _rc, lines = run_check(tmp_path, config(tmp_path))
    assert lines["local-kernels"][0].startswith("OK local-kernels: off"), lines["local-kernels"]


def test_check_fails_a_group_or_world_readable_token_file(tmp_path: Any) -> None:
    for mode in (0o644, 0o640):
        rc, lines = run_check(tmp_path, config(tmp_path, mode))
        assert rc == 1
        [line] = lines["token-file"]
        assert line.startswith("FAIL token-file:") and f"mode {mode:04o}" in line, line
        assert f"chmod 600 {tmp_path / 'tokens'}" in line
    _rc, lines = run_check(tmp_path, config(tmp_path, 0o600))
    assert lines["token-file"][0].startswith("OK token-file:"), lines["token-file"]
