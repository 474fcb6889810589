"""Issue 15, acceptance 4: `yarn-gateway check` reports an unsafe session store: a directory
others can write (or that is not the gateway user's), an unsafe record key, an open ZooKeeper ACL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE

from helpers.gateway_fixtures import TOKENS


def run_check(tmp: Any, store: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The session-store lines of `yarn-gateway check`, by check name."""
    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(tokens, 0o600)
    values = {"YarnGatewayApp": {"ip": "127.0.0.1", "port": 0}, "TokenAuthenticator": {"token_file": str(tokens)},
              **store}
    path = tmp / "gw.py"
    path.write_text("".join(f"c.{s}.{k} = {v!r}\n" for s, kv in values.items() for k, v in kv.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    proc = subprocess.run([sys.executable, "-m", "yarn_gateway", "check", f"--config={path}"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    lines: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        name = line.partition(" ")[2].partition(": ")[0]
        if name.startswith("session-"):
            lines.setdefault(name, []).append(line)
    assert lines, proc.stdout + proc.stderr
    return lines


def test_check_reports_a_store_directory_others_can_write(tmp_path: Any) -> None:
    sessions = tmp_path / "sessions"
    cfg = {"DirectoryStore": {"directory": str(sessions)}}
    sessions.mkdir()
    os.chmod(sessions, 0o777)
    [line] = run_check(tmp_path, cfg)["session-store"]
    assert line.startswith(f"FAIL session-store: DirectoryStore.directory: {sessions} is writable by group or "
                           "others (mode 0777)") and f"chmod 700 {sessions}" in line
    os.chmod(sessions, 0o750)
    [line] = run_check(tmp_path, cfg)["session-store"]
    assert line.startswith(f"WARN session-store: directory {sessions} is readable by group or others (mode 0750)")
    os.chmod(sessions, 0o700)
    lines = run_check(tmp_path, cfg)
    assert lines["session-store"] == [f"OK session-store: directory {sessions} (mode 0700)"]

    # A parent anyone may write (without the sticky bit of /tmp): the directory could be swapped.
    os.chmod(tmp_path, 0o777)
    try:
        [line] = run_check(tmp_path, cfg)["session-store"]
    finally:
        os.chmod(tmp_path, 0o700)
    assert line.startswith(f"FAIL session-store: DirectoryStore.directory: {tmp_path}, a parent of {sessions}, "
                           "is writable by group or others without the sticky bit (mode 0777)")

    key = sessions / ".record-key"
    key.write_text("k" * 64 + "\n")
    os.chmod(key, 0o644)
    [line] = run_check(tmp_path, cfg)["session-record-key"]
    assert line == (f"FAIL session-record-key: DirectoryStore.record_key_file: {key} is accessible by group or "
                    f"others (mode 0644); chmod 600 {key}")
    os.chmod(key, 0o600)
    [line] = run_check(tmp_path, cfg)["session-record-key"]
    assert line.startswith(f"OK session-record-key: {key} (fingerprint ")

    absent = tmp_path / "absent" / "sessions"
    lines = run_check(tmp_path, {"DirectoryStore": {"directory": str(absent)}})
    assert lines["session-store"] == [f"OK session-store: directory {absent} (will be created, mode 0700)"]
    [line] = lines["session-record-key"]
    assert line.startswith(f"OK session-record-key: {absent}/.record-key will be generated at first start")


@pytest.mark.zookeeper
@pytest.mark.jvm
def test_check_reports_an_open_zookeeper_acl(zookeeper: Any, tmp_path: Any) -> None:
    zk = {"hosts": zookeeper.hosts, "root": "/yarn-gateway/checked", "record_key_file": str(tmp_path / "zk.key")}
    cfg: dict[str, dict[str, Any]] = {"SessionKeeper": {"store": "zookeeper"}, "ZooKeeperStore": zk}
    [line] = run_check(tmp_path, cfg)["session-store"]
    assert line.startswith(f"FAIL session-store: ZooKeeperStore.acl_scheme is not set: session records (they hold "
                           f"every kernel's key) would be readable and writable by anyone who can reach ZooKeeper "
                           f"{zookeeper.hosts}")
    zk["allow_open_acl"] = True
    lines = run_check(tmp_path, cfg)["session-store"]
    assert lines[0].startswith(f"WARN session-store: ZooKeeper {zookeeper.hosts}: open ACL "
                               "(ZooKeeperStore.allow_open_acl)")
    assert lines[-1] == f"OK session-store: ZooKeeper {zookeeper.hosts} (root /yarn-gateway/checked, ACL open)"

    creds = tmp_path / "zk-credentials"
    creds.write_text("yarngw:pw-0123456789\n")
    os.chmod(creds, 0o640)
    zk.update(allow_open_acl=False, acl_scheme="digest", digest_credentials_file=str(creds))
    [line] = run_check(tmp_path, cfg)["session-store"]
    assert line.startswith("FAIL session-store: ZooKeeperStore.digest_credentials_file: ") and "mode 0640" in line
    os.chmod(creds, 0o600)
    assert run_check(tmp_path, cfg)["session-store"] == [
        f"OK session-store: ZooKeeper {zookeeper.hosts} (root /yarn-gateway/checked, ACL digest)"]
    # Nodes an earlier version made open are reported (the gateway tightens them at its next start).
    client = KazooClient(hosts=zookeeper.hosts, timeout=10)
    client.start(10)
    try:
        client.ensure_path("/yarn-gateway/checked/sessions", acl=OPEN_ACL_UNSAFE)
    finally:
        client.stop()
        client.close()
    lines = run_check(tmp_path, cfg)["session-store"]
    assert lines[0] == (f"WARN session-store: ZooKeeper {zookeeper.hosts}: /yarn-gateway/checked, "
                        "/yarn-gateway/checked/sessions have an open ACL (world:anyone); the gateway sets the "
                        "configured digest ACL at its next start")


def _someone_elses_directory(tmp_path: Any) -> str:
    """A directory the gateway's user may write but does not own."""
    if os.geteuid() != 0:
        return "/tmp"  # root's (sticky, writable by all)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # nobody's
    return str(theirs)


def test_check_reports_a_store_directory_of_another_user(tmp_path: Any) -> None:
    theirs = _someone_elses_directory(tmp_path)
    [line] = run_check(tmp_path, {"DirectoryStore": {"directory": theirs}})["session-store"]
    assert line.startswith(f"FAIL session-store: DirectoryStore.directory: {theirs} is owned by "), line
    assert "not by the gateway's user" in line and "chown it to the gateway's user" in line
