"""Issue 8 acceptance 3: the Ambari management pack and the Cloudera Manager CSD.

The Ambari command script runs as the agent runs it, against the resource_management
stand-in in ambari_stub/; the CSD's control.sh runs with a CM-like CONF_DIR and environment.
Both start a real gateway (the test venv's, via a ``venv`` link in a fake install home).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from deploy_support import REPO, free_port, get_api, run, wait_api, write_token_file

SERVICE = os.path.join(REPO, "ambari", "services", "YARN_GATEWAY", "0.1.0")
SCRIPTS = os.path.join(SERVICE, "package", "scripts")
STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ambari_stub")
CSD = os.path.join(REPO, "cloudera")


def _ambari_props() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in sorted(os.listdir(os.path.join(SERVICE, "configuration"))):
        root = ET.parse(os.path.join(SERVICE, "configuration", name)).getroot()
        assert root.tag == "configuration"
        props = {}
        for p in root.findall("property"):
            assert p.findtext("name") and p.find("value") is not None and p.findtext("description"), ET.tostring(p)
            props[p.findtext("name") or ""] = p.findtext("value") or ""
        out[name[: -len(".xml")]] = props
    return out


def _sdl() -> dict[str, Any]:
    with open(os.path.join(CSD, "descriptor", "service.sdl")) as f:
        return json.load(f)


def _fake_home(tmp: str) -> str:
    """An install home like the RPM's: venv/ (the test venv) and kernels/."""
    home = os.path.join(tmp, "home")
    os.makedirs(os.path.join(home, "kernels"))
    os.symlink(sys.prefix, os.path.join(home, "venv"))
    return home


# -- descriptors ------------------------------------------------------------------------------

def test_deploy_ambari_descriptors_parse_and_cover_every_property() -> None:
    with open(os.path.join(REPO, "ambari", "mpack.json")) as f:
        mpack = json.load(f)
    assert mpack["name"] and mpack["version"] and mpack["artifacts"]
    for art in mpack["artifacts"]:
        assert os.path.isdir(os.path.join(REPO, "ambari", art["source_dir"]))
    meta = ET.parse(os.path.join(SERVICE, "metainfo.xml")).getroot()
    svc = meta.find("services/service")
    assert svc is not None and svc.findtext("name") == "YARN_GATEWAY"
    comp = svc.find("components/component")
    assert comp is not None and comp.findtext("category") == "MASTER"
    script = comp.findtext("commandScript/script") or ""
    assert os.path.isfile(os.path.join(SERVICE, "package", script))
    config_types = {e.text for e in svc.findall("configuration-dependencies/config-type")}
    props = _ambari_props()
    assert {"yarn-gateway-site", "yarn-gateway-env"} <= config_types

    # Every configurations['type']['name'] a script reads is declared (cluster-env is Ambari's own).
    read = set()
    for name in os.listdir(SCRIPTS):
        if name.endswith(".py"):
            with open(os.path.join(SCRIPTS, name)) as f:
                read |= set(re.findall(r"\['configurations'\]\['([^']+)'\]\['([^']+)'\]", f.read()))
    assert len(read) > 20
    for ctype, pname in read:
        if ctype != "cluster-env":
            assert pname in props.get(ctype, {}), f"{ctype}/{pname} is read but not declared"

    with open(os.path.join(SERVICE, "kerberos.json")) as f:
        krb = json.load(f)
    svc_k = krb["services"][0]
    assert svc_k["name"] == "YARN_GATEWAY"
    core = next(c["core-site"] for c in svc_k["configurations"] if "core-site" in c)
    assert {"hadoop.proxyuser.yarngw.groups", "hadoop.proxyuser.yarngw.hosts"} <= set(core)
    ids = [i for c in svc_k["components"] for i in c["identities"]] + svc_k["identities"]
    assert any(i.get("reference") == "/spnego" for i in ids)
    server = next(i for i in ids if i["name"] == "yarn_gateway_server")
    assert server["principal"]["value"].startswith("yarngw/_HOST@")
    # ${type/name} and {{type/name}} references in kerberos.json and alerts.json name declared properties.
    with open(os.path.join(SERVICE, "alerts.json")) as f:
        alerts_text = f.read()
    alerts = json.loads(alerts_text)
    web = [a for a in alerts["YARN_GATEWAY"]["YARN_GATEWAY_SERVER"] if a["source"]["type"] == "WEB"]
    assert web and web[0]["source"]["uri"]["http"].endswith("/healthz")
    with open(os.path.join(SERVICE, "kerberos.json")) as f:
        krb_text = f.read()
    refs = set(re.findall(r"(yarn-gateway-(?:site|env))/([a-z_]+)", krb_text + alerts_text))
    assert refs
    for ctype, pname in refs:
        assert pname in props[ctype], f"{ctype}/{pname}"


def test_deploy_csd_descriptor_covers_every_property() -> None:
    sdl = _sdl()
    for key in ("name", "label", "description", "version", "runAs", "roles", "serviceDependencies"):
        assert sdl[key], key
    assert {d["name"] for d in sdl["serviceDependencies"]} >= {"YARN", "HDFS"}
    role = sdl["roles"][0]
    assert role["startRunner"]["program"] == "scripts/control.sh"
    assert {p["primary"] for p in role["kerberosPrincipals"]} == {"${principal}", "HTTP"}
    params = {p["name"] for p in role["parameters"]}
    for p in role["parameters"]:
        assert p["configName"] and p["type"] and "default" in p and p["label"], p
    written = set(role["configWriter"]["generators"][0]["includedParams"])
    assert written == params
    with open(os.path.join(CSD, "scripts", "control.sh")) as f:
        script = f.read()
    read = set(re.findall(r"\$\(prop ([a-z_]+)\)", script)) | set(re.findall(r"props\.get\(\"([a-z_]+)\"", script)) \
        | set(re.findall(r"props\[\"([a-z_]+)\"\]", script)) | set(re.findall(r"csv\(\"([a-z_]+)\"\)", script))
    assert len(read) > 10
    assert read <= params, read - params
    # Variables the start runner hands over are the declared principals.
    names = {p["name"] for p in role["kerberosPrincipals"]}
    for value in role["startRunner"]["environmentVariables"].values():
        assert value.strip("${}") in names


# -- running them -------------------------------------------------------------------------------

def _ambari(command: str, cfg_path: str, tmp: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([STUB, SCRIPTS]))
    return subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "yarn_gateway_server.py"), command, cfg_path,
         os.path.join(SERVICE, "package"), os.path.join(tmp, f"out-{command}.json"), "INFO", tmp],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.e2e
def test_deploy_ambari_script_starts_and_stops_gateway(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    home = _fake_home(tmp)
    port = free_port()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    configs = _ambari_props()
    configs["yarn-gateway-env"].update(
        yarn_gateway_user=user, yarn_gateway_group=group, yarn_gateway_home=home, conf_dir=f"{tmp}/etc",
        log_dir=f"{tmp}/log", pid_dir=f"{tmp}/run", state_dir=f"{tmp}/state")
    configs["yarn-gateway-site"].update(
        ip="127.0.0.1", port=str(port), token_file=write_token_file(f"{tmp}/tokens"), queue="analytics",
        rm_endpoints="http://rm1.example.invalid:8088,http://rm2.example.invalid:8088", spark_home=f"{tmp}/spark")
    configs["cluster-env"] = {"security_enabled": "false", "user_group": group}
    cfg_path = os.path.join(tmp, "command.json")
    with open(cfg_path, "w") as f:
        json.dump({"configurations": configs, "hostname": "localhost", "clusterName": "c1"}, f)

    for cmd in ("INSTALL", "START"):
        out = _ambari(cmd, cfg_path, tmp)
        assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    try:
        body = wait_api(port, 30, log=f"{tmp}/log/yarn-gateway.log")
        assert body["version"]
        assert _ambari("STATUS", cfg_path, tmp).returncode == 0
        with open(f"{tmp}/etc/yarn_gateway_config.py") as f:
            text = f.read()
        assert "'http://rm2.example.invalid:8088'" in text and "shutdown_kernels_on_stop = False" in text
        with open(f"{home}/kernels/spark_python_yarn_cluster/kernel.json") as f:
            assert json.load(f)["metadata"]["kernel_provisioner"]["config"]["queue"] == "analytics"
        # A second START is a no-op while the daemon runs.
        assert _ambari("START", cfg_path, tmp).returncode == 0
    finally:
        stop = _ambari("STOP", cfg_path, tmp)
    assert stop.returncode == 0, stop.stderr
    assert _ambari("STATUS", cfg_path, tmp).returncode == 1
    assert not os.path.exists(f"{tmp}/run/yarn-gateway.pid")
    with pytest.raises(OSError):
        get_api(port, timeout=2)


@pytest.mark.e2e
def test_deploy_csd_control_script_runs_gateway_in_foreground(tmp_path: Any) -> None:
    tmp = str(tmp_path)
    home = _fake_home(tmp)
    conf_dir = os.path.join(tmp, "process", "42-yarn_gateway-YARN_GATEWAY_SERVER")
    os.makedirs(os.path.join(conf_dir, "yarn-conf"))
    port = free_port()
    role = _sdl()["roles"][0]
    values = {p["name"]: str(p["default"]) for p in role["parameters"]}
    values.update(gateway_port=str(port), gateway_ip="127.0.0.1", yarn_gateway_home=home,
                  token_file=write_token_file(f"{tmp}/tokens"), rm_endpoints="http://rm1.example.invalid:8088",
                  queue="etl")
    # CM's properties writer escapes ':' and '=' like java.util.Properties.
    with open(os.path.join(conf_dir, "yarn-gateway.properties"), "w") as f:
        for k in role["configWriter"]["generators"][0]["includedParams"]:
            f.write(f"{k}={values[k].replace(':', chr(92) + ':')}\n")
    env = {"PATH": "/usr/bin:/bin", "CONF_DIR": conf_dir, "HOME": tmp,
           "YARN_GATEWAY_PRINCIPAL": "", "SPNEGO_PRINCIPAL": ""}
    log = os.path.join(tmp, "stdout.log")
    with open(log, "wb") as logf:
        proc = subprocess.Popen(["bash", os.path.join(CSD, "scripts", "control.sh"), "start"], cwd=conf_dir,
                                env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        wait_api(port, 30, proc, log)
        # exec: the daemon is the process CM started (supervisord signals that pid).
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert b"yarn-gateway" in f.read().split(b"\0")[1]
        with open(os.path.join(conf_dir, "yarn_gateway_config.py")) as f:
            text = f.read()
        assert "'http://rm1.example.invalid:8088'" in text
        assert f"'{os.path.join(conf_dir, 'yarn-conf')}'" in text
        with open(os.path.join(conf_dir, "kernels", "spark_python_yarn_cluster", "kernel.json")) as f:
            assert json.load(f)["metadata"]["kernel_provisioner"]["config"]["queue"] == "etl"
        assert get_api(port, "api/kernelspecs")[1]["default"] == "spark_python_yarn_cluster"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0


def test_deploy_make_targets_build_archives(tmp_path: Any) -> None:
    run(["make", "ambari-mpack", "csd"], timeout=120)
    import tarfile
    import zipfile

    with tarfile.open(os.path.join(REPO, "build", "yarn-gateway-ambari-mpack-0.1.0.tar.gz")) as t:
        names = t.getnames()
    assert "yarn-gateway-ambari-mpack-0.1.0/mpack.json" in names
    assert any(n.endswith("package/scripts/yarn_gateway_server.py") for n in names)
    with zipfile.ZipFile(os.path.join(REPO, "build", "YARN_GATEWAY-0.1.0.jar")) as z:
        assert {"descriptor/service.sdl", "scripts/control.sh"} <= set(z.namelist())
        assert (z.getinfo("scripts/control.sh").external_attr >> 16) & 0o111
