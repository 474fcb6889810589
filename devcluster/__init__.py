"""A real single-host Apache Hadoop YARN for development, demos and the test suite.

Never installed with yarn-gateway (it is not in the package, the wheel or the RPM), and
nothing under ``yarn_gateway/`` imports it. It runs Apache Hadoop's own ResourceManager
and NodeManager main classes from Maven Central jars as separate JVM processes, each in
its own process group, with the real PySpark ``spark-submit --master yarn --deploy-mode
cluster`` submitting to them. Modes: ``simple``, ``kerberos`` (MIT KDC, SPNEGO on the RM's
REST API) and ``ha`` (two ResourceManagers and ZooKeeper).
"""

from .cluster import Cluster, ClusterSpec, QueueSpec

__all__ = ["Cluster", "ClusterSpec", "QueueSpec"]
