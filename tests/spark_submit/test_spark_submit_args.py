"""spark-submit's command line, settings, log format and argument errors (no JVM, no cluster)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from yarn_gateway.minicluster.cli import parse_proxyuser
from yarn_gateway.minicluster.spark_home import install_fake_spark_home
from yarn_gateway.minicluster.spark_submit import UsageError, effective_conf, parse_args
from yarn_gateway.minicluster.spark_submit_client import jvm_krb5_conf, log
from yarn_gateway.minicluster.spark_submit_job import am_resources, format_details, memory_mb

LOG_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR) [A-Za-z]+: .*$")


def test_spark_submit_parse_like_spark() -> None:
    a = parse_args(["--master", "yarn", "--deploy-mode=cluster", "--conf", "spark.a=1", "-c", "spark.b=x=y",
                    "--proxy-user", "alice", "--verbose", "job.py", "--conf", "not-ours", "-v"])
    assert a.opts == {"--master": "yarn", "--deploy-mode": "cluster", "--proxy-user": "alice"}
    assert a.conf == {"spark.a": "1", "spark.b": "x=y"}
    assert a.flags == {"--verbose"}
    assert a.primary == "job.py" and a.app_args == ["--conf", "not-ours", "-v"]
    with pytest.raises(UsageError, match="Unrecognized option: --bogus"):
        parse_args(["--bogus", "x.py"])
    assert parse_args(["--conf", "novalue", "x.py"]).conf_errors == ["Spark config without '=': novalue"]


def test_spark_submit_settings_precedence(tmp_path, capsys) -> None:
    props = tmp_path / "p.conf"
    props.write_text("# comment\nspark.yarn.queue  fromfile\nspark.driver.memory=512m\nspark.x from-file\nfoo bar\n")
    a = parse_args(["--properties-file", str(props), "--conf", "spark.yarn.queue=fromconf", "--conf", "spark.x=conf",
                    "--driver-memory", "2g", "--class", "org.Main", "app.jar"])
    conf, used = effective_conf(a, {})
    assert used == str(props)
    assert conf["spark.yarn.queue"] == "fromconf"  # --conf beats the properties file
    assert conf["spark.driver.memory"] == "2g"  # options beat both
    assert conf["spark.app.name"] == "org.Main"  # default name: main class, else file name
    assert "foo" not in conf and "Warning: Ignoring non-Spark config property: foo" in capsys.readouterr().err
    conf, _ = effective_conf(parse_args(["/x/y/job.py"]), {"SPARK_CONF_DIR": str(tmp_path / "none")})
    assert conf["spark.app.name"] == "job.py"


def test_spark_submit_am_memory_like_spark() -> None:
    assert am_resources({}) == (1024, 384, 1)
    assert am_resources({"spark.driver.memory": "8g", "spark.driver.cores": "2"}) == (8192, 819, 2)
    assert am_resources({"spark.driver.memory": "2048", "spark.driver.memoryOverhead": "1g"}) == (2048, 1024, 1)
    assert memory_mb("1536m") == 1536


def test_spark_submit_report_details_and_log_format(capsys) -> None:
    accepted = {"id": "application_1_0001", "state": "ACCEPTED", "finalStatus": "UNDEFINED", "queue": "default",
                "user": "alice", "startedTime": 17, "diagnostics": ""}
    text = format_details(accepted, "http://rm:8088", secure=False)
    assert text == ("\n\t client token: N/A\n\t diagnostics: N/A\n\t ApplicationMaster host: N/A"
                    "\n\t ApplicationMaster RPC port: -1\n\t queue: default\n\t start time: 17"
                    "\n\t final status: UNDEFINED\n\t tracking URL: http://rm:8088/proxy/application_1_0001/"
                    "\n\t user: alice")
    running = dict(accepted, state="RUNNING", amRPCAddress="nm1:4040", trackingUrl="http://rm:8088/proxy/x/")
    text = format_details(running, "http://rm:8088", secure=True)
    assert "ApplicationMaster host: nm1\n" in text and "RPC port: 4040\n" in text
    assert "client token: Token { kind: YARN_CLIENT_TOKEN, service:  }" in text
    log("INFO", "Client", "Requesting a new application from cluster with 1 NodeManagers")
    assert LOG_LINE.match(capsys.readouterr().err.rstrip("\n"))


def test_spark_submit_jvm_krb5_conf() -> None:
    assert jvm_krb5_conf({"KRB5_CONFIG": "/ignored"}) == "/etc/krb5.conf"
    env = {"SPARK_SUBMIT_OPTS": "-Xmx1g -Djava.security.krb5.conf=/a/krb5.conf", "_JAVA_OPTIONS": ""}
    assert jvm_krb5_conf(env) == "/a/krb5.conf"


def test_spark_submit_proxyuser_option_syntax() -> None:
    assert parse_proxyuser("root=users:alice,bob;groups:analysts") == (
        "root", {"users": "alice,bob", "groups": "analysts", "hosts": "*"})


def _submit(home: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(home, "bin", "spark-submit"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_spark_submit_argument_errors_as_spark_prints_them(tmp_path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    home = install_fake_spark_home(str(tmp_path / "spark"), str(conf_dir), python=sys.executable)
    script = open(os.path.join(home, "bin", "spark-submit")).read()
    assert script.startswith("#!/bin/sh") and "-m yarn_gateway.minicluster.spark_submit" in script
    env = {k: v for k, v in os.environ.items() if k not in ("HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    r = _submit(home, ["--master", "yarn", "--deploy-mode", "cluster", "--proxy-user", "alice", "--principal",
                       "svc@R", "--keytab", "/k", "job.py"], env)
    assert r.returncode == 1
    assert r.stderr.startswith('Exception in thread "main" org.apache.spark.SparkException: '
                               "Only one of --proxy-user or --principal can be provided.\n\tat ")
    # spark-env.sh supplies HADOOP_CONF_DIR; without it Spark's own error comes first
    os.remove(os.path.join(home, "conf", "spark-env.sh"))
    r = _submit(home, ["--master", "yarn", "--deploy-mode", "cluster", "job.py"], env)
    assert r.returncode == 1
    assert r.stderr.startswith('Exception in thread "main" org.apache.spark.SparkException: When running with '
                               "master 'yarn' either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the environment.")
    r = _submit(home, ["--master", "yarn", "--deploy-mode", "client", "job.py"], dict(env, HADOOP_CONF_DIR="/x"))
    assert r.returncode == 1 and "only with --deploy-mode cluster" in r.stderr
