"""The cluster side of Spark: the PySpark install the containers run, and its Spark conf dir.

The containers run a virtualenv every account can execute (``make cluster-env``: Debian's
Python with pyspark, ipykernel, pycryptodome and Toree), found through
``YARN_GATEWAY_CLUSTER_ENV``. Its ``pyspark`` directory is the ``SPARK_HOME`` the gateway's
``spark-submit`` comes from. The dev cluster writes a Spark conf dir (``SPARK_CONF_DIR``)
with what an operator's ``/etc/spark/conf`` would hold on a real edge node.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

DEFAULT_CLUSTER_ENV = "/opt/yarn-gateway-dev/cluster-venv"


class ClusterEnvMissing(RuntimeError):
    """The cluster-side virtualenv is not installed."""


@dataclass(frozen=True)
class ClusterEnv:
    prefix: str
    python: str
    spark_home: str

    @property
    def py4j_zip(self) -> str:
        found = sorted(glob.glob(os.path.join(self.spark_home, "python", "lib", "py4j-*-src.zip")))
        if not found:
            raise ClusterEnvMissing(f"no py4j zip in {self.spark_home}/python/lib")
        return found[-1]


def cluster_env(prefix: str = "") -> ClusterEnv:
    prefix = prefix or os.environ.get("YARN_GATEWAY_CLUSTER_ENV") or DEFAULT_CLUSTER_ENV
    python = os.path.join(prefix, "bin", "python")
    homes = sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages", "pyspark")))
    if not os.access(python, os.X_OK) or not homes or not os.path.isfile(os.path.join(homes[0], "bin",
                                                                                          "spark-submit")):
        raise ClusterEnvMissing(f"the cluster-side environment {prefix} is missing or has no pyspark: "
                                "run `make cluster-env`")
    return ClusterEnv(prefix, python, homes[0])


def spark_defaults(env: ClusterEnv, extra: dict[str, str]) -> dict[str, str]:
    """spark-defaults.conf for submits to the dev cluster."""
    props = {
        # Spark's jars are on every node already (one host): never zip and upload 320 MB per submit.
        "spark.yarn.jars": f"local:{env.spark_home}/jars/*",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON": env.python,
        "spark.executorEnv.PYSPARK_PYTHON": env.python,
        # The host name resolves to loopback: without these Spark binds its driver to eth0.
        "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": "127.0.0.1",
        "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
        # A small machine: small executors, and no waiting for executors before the first job.
        "spark.executor.memory": "512m",
        "spark.scheduler.minRegisteredResourcesRatio": "0.0",
    }
    props.update(extra)
    return props


def write_spark_conf(conf_dir: str, env: ClusterEnv, hadoop_conf_dir: str, extra: dict[str, str]) -> None:
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "spark-defaults.conf"), "w", encoding="utf-8") as f:
        f.write("# Written by devcluster.\n")
        for key, value in spark_defaults(env, extra).items():
            f.write(f"{key} {value}\n")
    archives = f"local:{env.spark_home}/python/lib/pyspark.zip,local:{env.py4j_zip}"
    with open(os.path.join(conf_dir, "spark-env.sh"), "w", encoding="utf-8") as f:
        f.write("# Written by devcluster; sourced by Spark's launch scripts.\n")
        f.write(f'HADOOP_CONF_DIR="${{HADOOP_CONF_DIR:-{hadoop_conf_dir}}}"\n')
        # The PySpark archives are on every node too: no 2.5 MB copy per submit.
        f.write(f'PYSPARK_ARCHIVES_PATH="{archives}"\n')
