"""A stand-in ApplicationMaster for the RM tests (stdlib only: runs under /usr/bin/python3 as any user).

argv: <final status or "none"> <go-register file> <go-unregister file> [spawn]
Registers once the first file exists, unregisters with the final status once the second exists
("none": never unregisters), then exits 0. With "spawn" it starts a child `sleep 60` first and
prints its pid and ignores SIGTERM itself (so a kill needs the NodeManager's SIGKILL).
"""

import json
import os
import pwd
import signal
import subprocess
import sys
import time
import urllib.request


def call(action, body):
    url = os.environ["MINICLUSTER_RM_URL"]
    app = os.environ["MINICLUSTER_APP_ID"]
    req = urllib.request.Request(
        f"{url}/ws/v1/minicluster/apps/{app}/{action}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Minicluster-Am-Token": os.environ["MINICLUSTER_AM_TOKEN"]})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.02)


mode, go_register, go_unregister = sys.argv[1:4]
print("unix-user", pwd.getpwuid(os.getuid()).pw_name, "env-user", os.environ["USER"], "cwd", os.getcwd(), flush=True)
if len(sys.argv) > 4 and sys.argv[4] == "spawn":
    child = subprocess.Popen(["sleep", "60"])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("child-pid", child.pid, flush=True)
wait_for(go_register)
print("registered", call("register", {"host": "localhost", "rpcPort": 4242})["state"], flush=True)
wait_for(go_unregister)
if mode != "none":
    print("unregistered", call("unregister", {"finalStatus": mode, "diagnostics": f"done {mode}"})["state"],
          flush=True)
print("bye", file=sys.stderr, flush=True)
