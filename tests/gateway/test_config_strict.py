"""A config file that is missing or does not load stops the daemon, naming the file and the line
(before: the daemon logged a warning and served on the defaults); `check` reports the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from yarn_gateway.config_file import ConfigFileError, read_config_file


def _daemon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    env["YARN_GATEWAY_TOKEN"] = "t" * 32  # a daemon that did start would listen (and time out here)
    return subprocess.run([sys.executable, "-m", "yarn_gateway", "--port=0", "--ip=127.0.0.1", *args], env=env,
                          capture_output=True, text=True, timeout=30)


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "yarn_gateway", "check", f"--config={path}"],
                          capture_output=True, text=True, timeout=60)


BROKEN = {
    "syntax": ("c.YarnGatewayApp.port = 9999\n\nc.KernelRegistry.launch_timeout = = 7\n", 3, "SyntaxError"),
    "runtime": ("c.YarnGatewayApp.port = 9999\nc.KernelRegistry.launch_timeout = undefined_name\n", 2, "NameError"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_config_file_that_does_not_load_stops_the_daemon_naming_file_and_line(tmp_path: Path, kind: str) -> None:
    text, line, error = BROKEN[kind]
    path = tmp_path / "yarn_gateway_config.py"
    path.write_text(text)
    proc = _daemon(f"--config={path}")
    assert proc.returncode == 2, proc.stderr
    assert f"{path}, line {line}" in proc.stderr and error in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stderr
    report = _check(path)
    assert report.returncode != 0 and f"{path}, line {line}" in report.stdout, report.stdout


def test_a_missing_config_file_stops_the_daemon_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "yarn_gateway_config.py"
    proc = _daemon(f"--config={path}")
    assert proc.returncode == 2 and f"config file {path} does not exist" in proc.stderr, proc.stderr
    assert "listening" not in proc.stderr
    report = _check(path)
    assert report.returncode != 0 and f"{path} does not exist" in report.stdout, report.stdout


def test_a_json_config_beside_the_python_one_is_read_last(tmp_path: Path) -> None:
    (tmp_path / "gw.py").write_text("c.YarnGatewayApp.port = 9999\nc.KernelRegistry.launch_timeout = 7.5\n")
    (tmp_path / "gw.json").write_text('{"YarnGatewayApp": {"port": 8000}}')
    cfg = read_config_file(str(tmp_path / "gw.py"))
    assert cfg.YarnGatewayApp.port == 8000 and cfg.KernelRegistry.launch_timeout == 7.5
    (tmp_path / "gw.json").write_text('{"YarnGatewayApp": ')
    with pytest.raises(ConfigFileError, match=r"gw\.json does not load"):
        read_config_file(str(tmp_path / "gw.py"))
    (tmp_path / "gw.conf").write_text("")
    with pytest.raises(ConfigFileError, match=r"only \.py and \.json"):
        read_config_file(str(tmp_path / "gw.conf"))


@pytest.mark.parametrize(("setting", "value", "expect"), [
    ("YarnGatewayApp.authenticator_class", "tokn", "not one of 'token', 'none', 'kerberos'"),
    ("YarnGatewayApp.authenticator_class", "yarn_gateway.auth.nowhere.Auth", "cannot import"),
    ("YarnGatewayApp.authenticator_class", "yarn_gateway.kernels.store.DirectoryStore", "is not a subclass of"),
    ("SessionKeeper.store", "zookeper", "not one of 'directory', 'zookeeper'"),
])
def test_an_unknown_pluggable_class_stops_the_daemon_naming_the_setting(tmp_path: Path, setting: str, value: str,
                                                                         expect: str) -> None:
    path = tmp_path / "yarn_gateway_config.py"
    section, name = setting.split(".")
    path.write_text(f"c.{section}.{name} = {value!r}\nc.DirectoryStore.directory = {str(tmp_path / 's')!r}\n")
    proc = _daemon(f"--config={path}")
    assert proc.returncode == 1, proc.stderr
    assert f"{setting} = {value!r}" in proc.stderr and expect in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "listening" not in proc.stderr


def test_the_chosen_session_store_is_logged_at_start(tmp_path: Path) -> None:
    path = tmp_path / "yarn_gateway_config.py"
    path.write_text(f"c.DirectoryStore.directory = {str(tmp_path / 's')!r}\nc.YarnGatewayApp.port = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    env["YARN_GATEWAY_TOKEN"] = "t" * 32
    proc = subprocess.Popen([sys.executable, "-m", "yarn_gateway", "--ip=127.0.0.1", f"--config={path}"], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "listening on" in line:
                break
        text = "".join(seen)
        assert "Session store: directory (yarn_gateway.kernels.store.DirectoryStore)" in text, text
        assert "authenticator: token" in text, text
    finally:
        proc.terminate()
        proc.wait(30)
