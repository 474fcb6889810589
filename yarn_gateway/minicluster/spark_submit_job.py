"""One YARN cluster-mode submission, step by step as Spark 3.5's ``yarn.Client`` does it.

``SparkYarnJob.run`` = ``Client.run``: cluster metrics, new application, resource check,
launch context (environment, staged resources, AM command), submit, wait until
accepted (``YarnClientImpl``), then one report (``spark.yarn.submit.waitAppCompletion=false``)
or monitoring until a final state. The staging directory stands in for HDFS:
``spark.yarn.stagingDir``, else the path of a ``file:`` ``fs.defaultFS``, else the
``minicluster.dfs.dir`` property, else ``<HADOOP_CONF_DIR>/../dfs``; under it
``user/<user>/.sparkStaging/<appId>/`` as on HDFS.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Mapping
from typing import Any, Optional

from yarn_gateway.minicluster.spark_submit_client import (
    NotFound,
    RmSession,
    SubmitFailure,
    log,
)

AM_SCRIPT = "__minicluster_am__.py"
AM_CONF = "__spark_conf__.json"
FINAL_STATES = ("FINISHED", "FAILED", "KILLED")
_UNITS = {"k": 1 / 1024, "kb": 1 / 1024, "m": 1, "mb": 1, "g": 1024, "gb": 1024, "t": 1024**2, "tb": 1024**2}


def memory_mb(text: str) -> int:
    """Spark's size strings for memory settings (plain numbers are MiB)."""
    m = re.match(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$", text)
    if not m or m.group(2).lower() not in {"", *_UNITS}:
        raise SubmitFailure("java.lang.NumberFormatException",
                            f"Size must be specified as bytes (b), kibibytes (k), mebibytes (m), gibibytes (g), "
                            f"tebibytes (t), or pebibytes(p). E.g. 50b, 100k, or 250m.\nFailed to parse byte "
                            f"string: {text}")
    return int(int(m.group(1)) * _UNITS.get(m.group(2).lower(), 1))


def am_resources(sconf: Mapping[str, str]) -> tuple[int, int, int]:
    """(driver MB, overhead MB, vcores) of the AM container in cluster mode."""
    mem = memory_mb(sconf.get("spark.driver.memory", "1g"))
    if "spark.driver.memoryOverhead" in sconf:
        overhead = memory_mb(sconf["spark.driver.memoryOverhead"])
    else:
        factor = float(sconf.get("spark.driver.memoryOverheadFactor", "0.10"))
        overhead = max(int(factor * mem), memory_mb(sconf.get("spark.driver.minMemoryOverhead", "384m")))
    return mem, overhead, int(sconf.get("spark.driver.cores", "1"))


def split_list(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def local_path(uri: str) -> str:
    """A local file for a resource URI (``file:`` or a plain path); others are refused."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    if re.match(r"^[a-zA-Z][\w+.-]*://", uri):
        raise SubmitFailure("java.io.IOException", f"No FileSystem for scheme: {uri.split(':', 1)[0]}")
    return os.path.abspath(uri)


def container_python(hconf: Mapping[str, str], env: Mapping[str, str]) -> str:
    """The interpreter that runs the AM in the container (``minicluster.container.python``)."""
    return hconf.get("minicluster.container.python") or os.path.join(
        env.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv"), "bin", "python")


class SparkYarnJob:
    """Submit one application and follow it as Spark's client does."""

    def __init__(self, primary: str, app_args: list[str], main_class: Optional[str], sconf: dict[str, str],
                 hconf: Mapping[str, str], env: dict[str, str], rm: RmSession, tmp: str) -> None:
        self.primary, self.app_args, self.main_class = primary, app_args, main_class
        self.sconf, self.hconf, self.env, self.rm, self.tmp = sconf, hconf, env, rm, tmp
        self.app_id = ""
        self.staging: Optional[tuple[str, str]] = None

    # -- staging ("HDFS") ----------------------------------------------------------------
    def staging_base(self) -> tuple[str, str]:
        """(local directory, the URI it is shown as) of the file system root used for staging."""
        explicit = self.sconf.get("spark.yarn.stagingDir")
        if explicit:
            return local_path(explicit), explicit
        fs = self.hconf.get("fs.defaultFS", "")
        if fs.startswith("file:"):
            return local_path(fs), fs.rstrip("/")
        base = self.hconf.get("minicluster.dfs.dir") or os.path.join(
            os.path.dirname(os.path.abspath(self.env.get("HADOOP_CONF_DIR") or self.env.get("YARN_CONF_DIR") or ".")),
            "dfs")
        return base, (fs.rstrip("/") if fs.startswith("hdfs://") else f"file:{base}")

    def stage(self, entries: list[dict[str, Any]], src: str, link: str, staging: tuple[str, str],
              kind: str = "FILE", mode: int = 0o644, show: bool = True) -> None:
        """Copy one resource into the staging dir and add it to the local resources."""
        local_dir, shown = staging
        if not os.path.isfile(src):
            raise SubmitFailure("java.io.FileNotFoundException", f"File file:{src} does not exist")
        dest = os.path.join(local_dir, link)
        shutil.copyfile(src, dest)
        os.chmod(dest, mode)
        if show:
            log("INFO", "Client", f"Uploading resource file:{src} -> {shown}/{link}")
        st = os.stat(dest)
        entries.append({"key": link, "value": {
            "resource": f"file://{dest}", "type": kind, "visibility": "APPLICATION",
            "size": st.st_size, "timestamp": int(st.st_mtime * 1000)}})

    def staging_dir(self) -> tuple[str, str]:
        """(local directory, shown URI) of this application's ``.sparkStaging`` directory."""
        root, shown_root = self.staging_base()
        rel = f"user/{self.rm.effective_user}/.sparkStaging/{self.app_id}"
        return os.path.join(root, rel), f"{shown_root}/{rel}"

    def prepare_resources(self, staging: tuple[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Stage primary, --py-files, --jars, --files, --archives, the AM and its conf."""
        log("INFO", "Client", "Preparing resources for our AM container")
        os.makedirs(staging[0], mode=0o700, exist_ok=True)
        entries: list[dict[str, Any]] = []
        spec: dict[str, Any] = {"jars": [], "pyFiles": [], "archives": []}
        self.stage(entries, local_path(self.primary), os.path.basename(self.primary), staging)
        groups = (("spark.jars", "jars"), ("spark.submit.pyFiles", "pyFiles"), ("spark.yarn.dist.files", None),
                  ("spark.yarn.dist.archives", "archives"))
        for key, spec_key in groups:
            for uri in split_list(self.sconf.get(key)):
                path, _, alias = uri.partition("#")
                link = alias or os.path.basename(path)
                if spec_key == "archives":
                    self.stage(entries, local_path(path), link, staging, kind="ARCHIVE")
                    spec["archives"].append([link, link])
                    continue
                self.stage(entries, local_path(path), link, staging)
                if spec_key:
                    spec[spec_key].append(link)
        am_src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "am.py")
        self.stage(entries, am_src, AM_SCRIPT, staging)
        rm_max = int(self.hconf.get("yarn.resourcemanager.am.max-attempts", "2"))
        spark_max = int(self.sconf.get("spark.yarn.maxAppAttempts", rm_max))
        spec["maxAttempts"] = min(spark_max, rm_max) if spark_max > 0 else rm_max
        spec["conf"] = self.sconf
        conf_src = os.path.join(self.tmp, AM_CONF)
        with open(os.open(conf_src, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            json.dump(spec, f)
        self.stage(entries, conf_src, AM_CONF, staging, mode=0o600)
        return entries, spec

    # -- launch context ------------------------------------------------------------------
    def launch_env(self, staging_uri: str) -> dict[str, str]:
        """The AM container's environment (Client.setupLaunchEnv)."""
        log("INFO", "Client", "Setting up the launch environment for our AM container")
        env = {"SPARK_USER": self.rm.effective_user, "SPARK_YARN_STAGING_DIR": staging_uri}
        if self.primary.endswith(".py"):
            env["PYTHONHASHSEED"] = "0"
        prefix = "spark.yarn.appMasterEnv."
        for k, v in self.sconf.items():
            if k.startswith(prefix):
                env[k[len(prefix) :]] = v
        for var, key in (("PYSPARK_DRIVER_PYTHON", "spark.pyspark.driver.python"),
                         ("PYSPARK_PYTHON", "spark.pyspark.python")):
            value = self.sconf.get(key) or self.env.get(var)
            if value and f"{prefix}{var}" not in self.sconf:
                env[var] = value
        return env

    def am_command(self) -> str:
        argv = [container_python(self.hconf, self.env), AM_SCRIPT, "--properties-file", AM_CONF]
        if self.main_class:
            argv += ["--class", self.main_class]
        if self.primary.endswith(".py"):
            argv += ["--primary-py-file", os.path.basename(self.primary)]
        elif self.primary.lower().endswith(".r"):
            argv += ["--primary-r-file", os.path.basename(self.primary)]
        else:
            argv += ["--jar", os.path.basename(self.primary)]
        for a in self.app_args:
            argv += ["--arg", a]
        return shlex.join(argv) + " 1><LOG_DIR>/stdout 2><LOG_DIR>/stderr"

    # -- the flow ------------------------------------------------------------------------
    def run(self) -> int:
        metrics = self.rm.call("GET", "/ws/v1/cluster/metrics").json().get("clusterMetrics", {})
        log("INFO", "Client", f"Requesting a new application from cluster with {metrics.get('activeNodes', 0)} "
            "NodeManagers")
        new_app = self.rm.call("POST", "/ws/v1/cluster/apps/new-application").json()
        self.app_id = new_app["application-id"]
        max_mem = int(new_app.get("maximum-resource-capability", {}).get("memory", 8192))
        log("INFO", "Client", "Verifying our application has not requested more than the maximum memory "
            f"capability of the cluster ({max_mem} MB per container)")
        mem, overhead, vcores = am_resources(self.sconf)
        if mem + overhead > max_mem:
            raise SubmitFailure("java.lang.IllegalArgumentException",
                                f"Required AM memory ({mem}+{overhead} MB) is above the max threshold ({max_mem} MB) "
                                "of this cluster! Please check the values of 'yarn.scheduler.maximum-allocation-mb' "
                                "and/or 'yarn.nodemanager.resource.memory-mb'.")
        log("INFO", "Client", f"Will allocate AM container, with {mem + overhead} MB memory including {overhead} MB "
            "overhead")
        log("INFO", "Client", "Setting up container launch context for our AM")
        staging = self.staging = self.staging_dir()
        env = self.launch_env(staging[1])
        entries, spec = self.prepare_resources(staging)
        tags = split_list(self.sconf.get("spark.yarn.tags"))
        body: dict[str, Any] = {
            "application-id": self.app_id,
            "application-name": self.sconf.get("spark.app.name", os.path.basename(self.primary)),
            "queue": self.sconf.get("spark.yarn.queue", "default"),
            "priority": int(self.sconf.get("spark.yarn.priority", "0")),
            "am-container-spec": {
                "local-resources": {"entry": entries},
                "environment": {"entry": [{"key": k, "value": v} for k, v in env.items()]},
                "commands": {"command": self.am_command()},
            },
            "unmanaged-AM": False,
            "max-app-attempts": spec["maxAttempts"],
            "resource": {"memory": mem + overhead, "vCores": vcores},
            "application-type": self.sconf.get("spark.yarn.applicationType", "SPARK"),
            "keep-containers-across-application-attempts": False,
            "application-tags": {"tag": tags},
        }
        log("INFO", "Client", f"Submitting application {self.app_id} to ResourceManager")
        self.rm.call("POST", "/ws/v1/cluster/apps", body)
        self.wait_submitted()
        if self.sconf.get("spark.yarn.submit.waitAppCompletion", "true").strip().lower() == "false":
            report = self.report()
            self.log_report(report)
            if report["state"] in ("FAILED", "KILLED"):
                raise SubmitFailure("org.apache.spark.SparkException",
                                    f"Application {self.app_id} finished with status: {report['state']}")
            return 0
        return self.monitor()

    def cleanup_staging(self) -> None:
        """Client.cleanupStagingDir: the application is over, its staged files can go."""
        if self.staging is None or self.sconf.get("spark.yarn.preserve.staging.files", "false").lower() == "true":
            return
        log("INFO", "Client", f"Deleting staging directory {self.staging[1]}")
        shutil.rmtree(self.staging[0], ignore_errors=True)

    def report(self) -> dict[str, Any]:
        app: dict[str, Any] = self.rm.call("GET", f"/ws/v1/cluster/apps/{self.app_id}").json()["app"]
        return app

    def wait_submitted(self) -> None:
        """YarnClientImpl.submitApplication: poll (200 ms) until the RM has accepted the app."""
        polls = 0
        while True:
            app = self.report()
            state = app["state"]
            if state not in ("NEW", "NEW_SAVING", "SUBMITTED"):
                if state in ("FAILED", "KILLED"):
                    raise SubmitFailure("org.apache.hadoop.yarn.exceptions.YarnException",
                                        f"Failed to submit {self.app_id} to YARN : {app.get('diagnostics', '')}")
                log("INFO", "YarnClientImpl", f"Submitted application {self.app_id}")
                return
            polls += 1
            if polls % 10 == 0:
                log("INFO", "YarnClientImpl", "Application submission is not finished, submitted application "
                    f"{self.app_id} is still in {state}")
            time.sleep(0.2)

    def log_report(self, app: dict[str, Any], details: bool = True) -> None:
        log("INFO", "Client", f"Application report for {self.app_id} (state: {app['state']})")
        if details:
            log("INFO", "Client", format_details(app, self.rm.base_url, self.rm.secure))

    def monitor(self) -> int:
        """Client.monitorApplication + the end of Client.run; returns 0 or raises."""
        interval = memory_ms(self.sconf.get("spark.yarn.report.interval", "1s"))
        every = int(self.sconf.get("spark.yarn.report.loggingFrequency", "30"))
        last, since = None, 0
        while True:
            time.sleep(interval / 1000.0)
            try:
                app = self.report()
            except NotFound:
                log("ERROR", "Client", f"Application {self.app_id} not found.")
                self.cleanup_staging()
                raise SubmitFailure("org.apache.spark.SparkException", f"Application {self.app_id} is killed") from None
            state = app["state"]
            since += 1
            if last != state or since >= every:
                self.log_report(app, details=last != state)
                since = 0
            if state in FINAL_STATES:
                self.cleanup_staging()
                break
            last = state
        final = app.get("finalStatus", "UNDEFINED")
        if state == "FAILED" or final == "FAILED":
            if app.get("diagnostics"):
                log("ERROR", "Client", f"Application diagnostics message: {app['diagnostics']}")
            raise SubmitFailure("org.apache.spark.SparkException",
                                f"Application {self.app_id} finished with failed status")
        if state == "KILLED" or final == "KILLED":
            raise SubmitFailure("org.apache.spark.SparkException", f"Application {self.app_id} is killed")
        if final == "UNDEFINED":
            raise SubmitFailure("org.apache.spark.SparkException",
                                f"The final status of application {self.app_id} is undefined")
        return 0


def memory_ms(text: str) -> int:
    """Spark time strings (``1s``, ``500ms``; plain numbers are ms)."""
    m = re.match(r"^\s*(\d+)\s*(ms|s|m|min)?\s*$", text)
    if not m:
        return 1000
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60_000, "min": 60_000}[m.group(2)]


def format_details(app: Mapping[str, Any], rm_url: str, secure: bool) -> str:
    """Client.formatReportDetails from a REST app object (empty values print N/A)."""
    rpc = app.get("amRPCAddress") or ""
    host, _, port = rpc.rpartition(":") if rpc else ("", "", "-1")
    token = "Token { kind: YARN_CLIENT_TOKEN, service:  }" if secure and rpc else ""
    # The RPC report carries the proxy URL even while ACCEPTED; the REST object omits it then.
    tracking = app.get("trackingUrl") or f"{rm_url.rstrip('/')}/proxy/{app.get('id', '')}/"
    details = (("client token", token), ("diagnostics", app.get("diagnostics", "")),
               ("ApplicationMaster host", host), ("ApplicationMaster RPC port", port),
               ("queue", app.get("queue", "")), ("start time", str(app.get("startedTime", 0))),
               ("final status", app.get("finalStatus", "UNDEFINED")), ("tracking URL", tracking),
               ("user", app.get("user", "")))
    return "".join(f"\n\t {k}: {v if v else 'N/A'}" for k, v in details)


