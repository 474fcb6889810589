"""`yarn-gateway check`: a good setup passes; a broken one names every failing item."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from helpers.gateway_fixtures import TOKENS
from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import make_spec

SPEC = "spark_python_yarn_cluster"


@pytest.fixture
def cluster(ha_cluster: YarnCluster) -> YarnCluster:
    """The session's real two-RM YARN: `check` must find the active one among both."""
    return ha_cluster


def run_check(config: str, quiet: bool = True) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YARN_GATEWAY_")}
    proc = subprocess.run([sys.executable, "-m", "yarn_gateway", "check", "--config", config], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stderr == "" or not quiet, proc.stderr
    return proc.returncode, proc.stdout.splitlines()


def write_config(path: Any, values: dict[str, dict[str, Any]]) -> str:
    lines = [f"c.{section}.{key} = {value!r}" for section, kv in values.items() for key, value in kv.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def good_setup(tmp: Any, cluster: YarnCluster) -> dict[str, dict[str, Any]]:
    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{u} {t}\n" for u, t in TOKENS.items()))
    os.chmod(tokens, 0o600)
    specs = tmp / "kernels"
    make_spec(specs, SPEC)
    return {
        "YarnGatewayApp": {"ip": "127.0.0.1", "port": 0, "kernelspec_dirs": [str(specs)], "default_kernel_name": SPEC},
        "TokenAuthenticator": {"token_file": str(tokens)},
        "AccessPolicy": {"admin_users": {"admin"}},
        "YarnServices": {"hadoop_conf_dir": cluster.conf_dir, "spark_home": cluster.spark_home,
                         "spark_conf_dir": cluster.spark_conf_dir,
                         "port_range": "43100..43199", "response_ip": "127.0.0.1",
                         "response_advertise_host": "127.0.0.1"},
        "DirectoryStore": {"directory": str(tmp / "sessions")},
    }


def by_name(lines: list[str]) -> dict[str, list[str]]:
    """{check name: [status, ...]} of `STATUS name: detail` lines."""
    out: dict[str, list[str]] = {}
    for line in lines[:-1]:
        status, rest = line.split(" ", 1)
        out.setdefault(rest.split(": ", 1)[0], []).append(status)
    return out


def test_admin_check_good_setup_passes(tmp_path: Any, cluster: YarnCluster) -> None:
    rc, lines = run_check(write_config(tmp_path / "gw.py", good_setup(tmp_path, cluster)))
    assert rc == 0, "\n".join(lines)
    assert not [ln for ln in lines if ln.startswith("FAIL")]
    names = by_name(lines)
    for name in ("config", "listen", "authenticator", "token-file", "kernelspec-dir", f"kernelspec {SPEC}",
                 "session-store", "spark-submit", "hadoop-conf", "port-range", "response-listener"):
        assert names.get(name) == ["OK"], (name, lines)
    rm = [ln for ln in lines if ln.startswith("OK rm ")]
    assert len(rm) == 2, lines
    assert any(f"rm {cluster.rm_url}: active" in ln for ln in rm)
    assert any(": standby" in ln for ln in rm)  # the HA standby is noted, not failed
    assert lines[-1].endswith(" 0 FAIL")


def test_admin_check_broken_setup_names_each_failure(tmp_path: Any, cluster: YarnCluster) -> None:
    cfg = good_setup(tmp_path, cluster)
    os.chmod(cfg["TokenAuthenticator"]["token_file"], 0o666)  # world-writable
    empty_spark = tmp_path / "spark-no-submit"
    (empty_spark / "bin").mkdir(parents=True)
    bad_conf = tmp_path / "hadoop-conf"
    bad_conf.mkdir()
    (bad_conf / "yarn-site.xml").write_text("<configuration><property>")  # truncated
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    broken_spec = tmp_path / "kernels" / "broken_spec"
    broken_spec.mkdir()
    (broken_spec / "kernel.json").write_text("{not json")
    cfg["YarnServices"].update(spark_home=str(empty_spark), hadoop_conf_dir=str(bad_conf), port_range="43199..43100",
                               rm_endpoints=[cluster.rm_url, dead])
    cfg["KerberosLogin"] = {"keytab": str(tmp_path / "missing.keytab"), "principal": "yarngw/localhost@EXAMPLE.COM"}
    rc, lines = run_check(write_config(tmp_path / "gw.py", cfg))
    assert rc == 1, "\n".join(lines)
    failed = {name for name, statuses in by_name(lines).items() if "FAIL" in statuses}
    assert failed == {"token-file", "spark-submit", "hadoop-conf", f"rm {dead}", "port-range", "kerberos-login",
                      "kernelspec broken_spec"}, lines
    text = "\n".join(lines)
    assert "writable by group or others (mode 0666)" in text
    assert "spark-no-submit/bin/spark-submit does not exist" in text
    assert "yarn-site.xml is not valid XML" in text
    assert f"FAIL rm {dead}: unreachable" in text and f"OK rm {cluster.rm_url}: active" in text
    assert "missing.keytab' is missing or unreadable" in text
    assert lines[-1].endswith(" 7 FAIL")


def test_admin_check_bad_config_and_paths(tmp_path: Any) -> None:
    cfg: dict[str, dict[str, Any]] = {"YarnGatewayApp": {"port": 0, "kernelspec_dirs": [str(tmp_path / "nope")]},
           "TokenAuthenticator": {"token": "t" * 20},
           "YarnServices": {"prot_range": "1..2"},
           "DirectoryStore": {"directory": str(tmp_path / "a-file" / "sessions")}}
    (tmp_path / "a-file").write_text("")
    rc, lines = run_check(write_config(tmp_path / "gw.py", cfg), quiet=False)  # traitlets warns of the typo too
    assert rc == 1
    text = "\n".join(lines)
    assert "FAIL config: YarnServices.prot_range is not a setting of YarnServices (did you mean port_range?)" in text
    assert f"FAIL kernelspec-dir: {tmp_path / 'nope'} does not exist" in text
    assert "FAIL session-store: DirectoryStore.directory" in text and "is not a directory" in text
    rc, lines = run_check(str(tmp_path / "missing.py"))
    assert rc == 1 and lines[0].startswith(f"FAIL config: config file {tmp_path / 'missing.py'} does not exist")
    (tmp_path / "syntax.py").write_text("c.YarnGatewayApp.port = \n")
    rc, lines = run_check(str(tmp_path / "syntax.py"))
    assert rc == 1 and lines[0].startswith("FAIL config:") and "SyntaxError" in lines[0]
    assert f"{tmp_path / 'syntax.py'}, line 1" in lines[0]

