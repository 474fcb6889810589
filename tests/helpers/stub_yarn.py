"""A stand-in spark-submit that "submits" to :class:`helpers.fake_rm.FakeRM` and can run the real
Python launcher locally as the application's container: the YARN provisioner's failure paths
in seconds, with no JVM.

The test scripts each launch through ``scenario`` (read by the stub at every run):

- ``register`` (True): create the application in the fake RM;
- ``print_id`` (True): print spark-submit's "Submitted application <id>" line;
- ``launch`` (False): start launch_ipykernel.py (the real launcher, no Spark) as the container,
  ``launch_delay`` (0) seconds after spark-submit submitted;
- ``sleep_before`` / ``sleep_after`` (0): seconds before submitting / before exiting;
- ``exit`` (0): spark-submit's exit code; ``output``: extra lines it prints first.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from helpers.fake_rm import FakeRM
from helpers.yarn_specs import make_spec

_SCRIPT = r'''#!{python}
import json, os, subprocess, sys, time, urllib.request

argv = sys.argv[1:]
with open({scenario!r}) as f:
    scn = json.load(f)
with open(os.path.join({out!r}, "argv-%d.json" % os.getpid()), "w") as f:
    json.dump(argv, f)


def opt(name):
    return argv[argv.index(name) + 1] if name in argv else ""


def post(path, body):
    req = urllib.request.Request({rm!r} + path, data=json.dumps(body).encode(), method="POST",
                                 headers={{"Content-Type": "application/json"}})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{{}}")


confs = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")
am_env = {{}}
with open(opt("--properties-file"), encoding="utf-8") as f:
    for line in f:
        key, sep, value = line.rstrip("\n").partition("=")
        if sep and key.startswith("spark.yarn.appMasterEnv."):
            am_env[key[len("spark.yarn.appMasterEnv."):]] = value
for line in scn.get("output", []):
    print(line, flush=True)
time.sleep(scn.get("sleep_before", 0))
if scn.get("register", True):
    app_id = post("/fake/submit", {{"tags": confs.get("spark.yarn.tags", ""), "user": opt("--proxy-user"),
                                   "queue": opt("--queue")}})["id"]
    if scn.get("print_id", True):
        print("INFO Client: Submitted application " + app_id, flush=True)
    if scn.get("launch"):
        primary = next(i for i, a in enumerate(argv) if a.endswith("launch_ipykernel.py")
                       and argv[i - 1] not in ("--py-files", "--files"))
        env = dict(os.environ, **am_env)
        for name in ("SPARK_HOME", "SPARK_CONF_DIR", "HADOOP_CONF_DIR"):
            env.pop(name, None)
        log = open(os.path.join({out!r}, app_id + ".log"), "wb")
        work = os.path.join({out!r}, app_id)
        os.makedirs(work)
        delay = ["-c", "import os, sys, time; time.sleep(float(sys.argv[1])); "
                 "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])", str(scn.get("launch_delay", 0))]
        proc = subprocess.Popen([sys.executable, *delay, argv[primary], *argv[primary + 1:]], env=env, cwd=work,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        post("/fake/apps/%s/container" % app_id, {{"pid": proc.pid}})
time.sleep(scn.get("sleep_after", 0))
sys.exit(scn.get("exit", 0))
'''


class StubYarn:
    """A SPARK_HOME whose spark-submit talks to ``rm``, and a kernelspec that uses it."""

    def __init__(self, base: Any, rm: FakeRM) -> None:
        self.rm = rm
        self.base = str(base)
        self.home = os.path.join(self.base, "spark-home")
        self.out = os.path.join(self.base, "submits")
        self.specs = os.path.join(self.base, "specs")
        self.scenario_file = os.path.join(self.base, "scenario.json")
        for d in (os.path.join(self.home, "bin"), os.path.join(self.home, "conf"), self.out, self.specs):
            os.makedirs(d, exist_ok=True)
        path = os.path.join(self.home, "bin", "spark-submit")
        with open(path, "w") as f:
            f.write(_SCRIPT.format(python=sys.executable, scenario=self.scenario_file, out=self.out, rm=rm.url))
        os.chmod(path, 0o755)
        self.scenario()
        # The real launcher without Spark: no SparkContext (the kernel is plain ipykernel).
        make_spec(self.specs, "stub_yarn", spark_context_initialization_mode="none", launch_poll_interval=0.2)

    def scenario(self, **values: Any) -> None:
        with open(self.scenario_file, "w") as f:
            json.dump(values, f)

    def spec(self, name: str, **config: Any) -> str:
        """Another kernelspec on the stub, with provisioner config overrides."""
        make_spec(self.specs, name, spark_context_initialization_mode="none", launch_poll_interval=0.2, **config)
        return name

    def config(self, **yarn: Any) -> dict[str, Any]:
        """make_gateway() sections: YARN kernels on the stub and the fake RM, listener on loopback."""
        return {
            "YarnServices": {"spark_home": self.home, "hadoop_conf_dir": self.home, "response_ip": "127.0.0.1",
                             "response_advertise_host": "127.0.0.1", "rm_endpoints": [self.rm.url],
                             "rm_poll_interval": 0.2, "rm_timeout": 5.0, **yarn},
            "YarnGatewayApp": {"kernelspec_dirs": [self.specs]},
            "KernelRegistry": {"launch_timeout": 30.0, "shutdown_wait_time": 2.0},
        }
