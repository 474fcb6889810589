"""A stand-in SPARK_HOME whose bin/spark-submit records its argv, waits, then fails like Spark.

For fast gateway-level tests of what the gateway passes to spark-submit (kernel
parameters) and of the submit cap, without a JVM or a cluster. Nothing is submitted:
the gateway sees spark-submit exit 1 and answers 500.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

_SCRIPT = """#!{python}
import json, os, sys, time, uuid
with open(os.path.join({out!r}, uuid.uuid4().hex + ".json"), "w") as f:
    json.dump(sys.argv[1:], f)
time.sleep({sleep!r})
print("Exception in thread \\"main\\" org.apache.spark.SparkException: stub spark-submit", file=sys.stderr)
sys.exit(1)
"""


class StubSpark:
    def __init__(self, base: Any, sleep: float = 0.0) -> None:
        self.home = os.path.join(str(base), "spark-home")
        self.out = os.path.join(str(base), "submits")
        os.makedirs(os.path.join(self.home, "bin"))
        os.makedirs(self.out)
        os.makedirs(os.path.join(self.home, "conf"))
        path = os.path.join(self.home, "bin", "spark-submit")
        with open(path, "w") as f:
            f.write(_SCRIPT.format(python=sys.executable, out=self.out, sleep=sleep))
        os.chmod(path, 0o755)

    def config(self, **yarn: Any) -> dict[str, Any]:
        """make_gateway() sections pointing YARN kernels at this stub (loopback listener, no RM calls)."""
        return {"YarnServices": {"spark_home": self.home, "hadoop_conf_dir": self.home, "response_ip": "127.0.0.1",
                                 "response_advertise_host": "127.0.0.1", "rm_endpoints": ["http://127.0.0.1:9"],
                                 **yarn}}

    def argvs(self) -> list[list[str]]:
        """The argv of every spark-submit run so far."""
        out = []
        for name in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, name)) as f:
                out.append(json.load(f))
        return out


def conf_of(argv: list[str]) -> dict[str, str]:
    """The --conf key=value pairs of a spark-submit argv."""
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")


def option(argv: list[str], name: str) -> Any:
    return argv[argv.index(name) + 1] if name in argv else None
