"""The dev cluster's Hadoop configuration: core-site, yarn-site, capacity-scheduler, log4j.

One function per file, from a :class:`~devcluster.cluster.ClusterSpec`. Every port is
``spec.port_base`` plus a fixed offset, so several clusters (a developer's ``make run``
and the test suite's simple, kerberos and HA clusters) coexist on one host; every server
binds ``localhost``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import ClusterSpec

# Offsets from port_base. rm2 (HA) uses the same offsets + 100.
RM_PORTS = {"address": 32, "scheduler.address": 30, "resource-tracker.address": 31, "admin.address": 33,
            "webapp.address": 88}
NM_PORTS = {"address": 41, "localizer.address": 40, "webapp.address": 42}
ZK_OFFSET = 81
KDC_OFFSET = 300  # k5test takes portbase .. portbase+9
RM_IDS = ("rm1", "rm2")
DCE = "org.apache.hadoop.yarn.server.nodemanager.DefaultContainerExecutor"
CAPACITY_SCHEDULER = "org.apache.hadoop.yarn.server.resourcemanager.scheduler.capacity.CapacityScheduler"

LOG4J = """# Written by devcluster: the daemons log to stderr, which the dev cluster keeps in logs/<daemon>.log.
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.com.sun.jersey=WARN
"""


def write_xml(path: str, props: Mapping[str, object]) -> None:
    """Write ``props`` as a Hadoop ``<configuration>`` file atomically."""
    root = ET.Element("configuration")
    for name in sorted(props):
        prop = ET.SubElement(root, "property")
        ET.SubElement(prop, "name").text = name
        ET.SubElement(prop, "value").text = str(props[name])
    ET.indent(root)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- Written by devcluster. -->\n')
        f.write(ET.tostring(root, encoding="utf-8"))
        f.write(b"\n")
    os.replace(tmp, path)


def rm_port(spec: ClusterSpec, key: str, index: int = 0) -> int:
    return spec.port_base + RM_PORTS[key] + 100 * index


def core_site(spec: ClusterSpec) -> dict[str, str]:
    props = {
        # No HDFS: Spark stages to the submitter's home and the NodeManager localizes from there.
        "fs.defaultFS": "file:///",
        "hadoop.tmp.dir": os.path.join(spec.base_dir, "tmp"),
        f"hadoop.proxyuser.{spec.submitter}.hosts": "*",
    }
    if spec.proxy_users:
        props[f"hadoop.proxyuser.{spec.submitter}.users"] = spec.proxy_users
    if spec.proxy_groups:
        props[f"hadoop.proxyuser.{spec.submitter}.groups"] = spec.proxy_groups
    if spec.mode == "kerberos":
        assert spec.kerberos is not None
        realm = spec.kerberos.realm
        props.update({
            "hadoop.security.authentication": "kerberos",
            "hadoop.security.authorization": "true",
            "hadoop.security.auth_to_local": "RULE:[1:$1] RULE:[2:$1] DEFAULT",
            "hadoop.http.filter.initializers": "org.apache.hadoop.security.AuthenticationFilterInitializer",
            "hadoop.http.authentication.type": "kerberos",
            "hadoop.http.authentication.kerberos.principal": f"HTTP/localhost@{realm}",
            "hadoop.http.authentication.kerberos.keytab": spec.kerberos.service_keytab,
            "hadoop.http.authentication.simple.anonymous.allowed": "false",
            "hadoop.http.authentication.signature.secret.file": os.path.join(spec.base_dir, "conf", "http-secret"),
        })
    return props


def yarn_site(spec: ClusterSpec) -> dict[str, str]:
    base = spec.base_dir
    props = {
        "yarn.resourcemanager.scheduler.class": CAPACITY_SCHEDULER,
        "yarn.nodemanager.hostname": "localhost",
        "yarn.nodemanager.container-executor.class": DCE,
        "yarn.nodemanager.resource.memory-mb": str(spec.node_memory_mb),
        "yarn.nodemanager.resource.cpu-vcores": str(spec.node_vcores),
        "yarn.scheduler.minimum-allocation-mb": "128",
        "yarn.scheduler.maximum-allocation-mb": str(min(spec.node_memory_mb, 8192)),
        "yarn.scheduler.maximum-allocation-vcores": str(spec.node_vcores),
        # JDK 17's virtual size is many times its heap: the vmem check would kill every JVM.
        "yarn.nodemanager.vmem-check-enabled": "false",
        "yarn.nodemanager.pmem-check-enabled": "false",
        "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage": "100.0",
        "yarn.nodemanager.disk-health-checker.min-free-space-per-disk-mb": "0",
        "yarn.nodemanager.local-dirs": os.path.join(base, "nm-local"),
        "yarn.nodemanager.log-dirs": os.path.join(base, "nm-logs"),
        "yarn.nodemanager.remote-app-log-dir": os.path.join(base, "app-logs"),
        "yarn.log-aggregation-enable": "false",
        "yarn.nodemanager.delete.debug-delay-sec": "120",
        "yarn.nodemanager.env-whitelist": "JAVA_HOME,HADOOP_CONF_DIR,PATH,LANG,TZ",
        "yarn.resourcemanager.am.max-attempts": "1",
        "yarn.resourcemanager.connect.retry-interval.ms": "500",
        "yarn.nodemanager.resourcemanager.connect.retry-interval.ms": "500",
        "yarn.resourcemanager.nodemanagers.heartbeat-interval-ms": "250",
        "yarn.timeline-service.enabled": "false",
        # Applications the RM remembers after they end (the default 1000 is plenty; keep it explicit).
        "yarn.resourcemanager.max-completed-applications": "1000",
    }
    for key, off in NM_PORTS.items():
        props[f"yarn.nodemanager.{key}"] = f"localhost:{spec.port_base + off}"
    if spec.mode == "ha":
        props.update({
            "yarn.resourcemanager.ha.enabled": "true",
            "yarn.resourcemanager.cluster-id": f"devcluster-{spec.port_base}",
            "yarn.resourcemanager.ha.rm-ids": ",".join(RM_IDS),
            "hadoop.zk.address": f"127.0.0.1:{spec.port_base + ZK_OFFSET}",
            "hadoop.zk.timeout-ms": "4000",
            "yarn.resourcemanager.recovery.enabled": "true",
            "yarn.resourcemanager.store.class":
                "org.apache.hadoop.yarn.server.resourcemanager.recovery.ZKRMStateStore",
            "yarn.resourcemanager.ha.automatic-failover.enabled": "true",
            "yarn.resourcemanager.ha.automatic-failover.embedded": "true",
            "yarn.client.failover-sleep-base-ms": "100",
            "yarn.client.failover-sleep-max-ms": "1000",
            "yarn.resourcemanager.zk-retry-interval-ms": "500",
            # Work-preserving recovery: containers (the kernels) survive an RM failover.
            "yarn.resourcemanager.work-preserving-recovery.enabled": "true",
        })
        for index, rm_id in enumerate(RM_IDS):
            props[f"yarn.resourcemanager.hostname.{rm_id}"] = "localhost"
            for key in RM_PORTS:
                props[f"yarn.resourcemanager.{key}.{rm_id}"] = f"localhost:{rm_port(spec, key, index)}"
    else:
        props["yarn.resourcemanager.hostname"] = "localhost"
        for key in RM_PORTS:
            props[f"yarn.resourcemanager.{key}"] = f"localhost:{rm_port(spec, key)}"
    if spec.mode == "kerberos":
        assert spec.kerberos is not None
        realm, keytab = spec.kerberos.realm, spec.kerberos.service_keytab
        props.update({
            "yarn.resourcemanager.principal": f"rm/_HOST@{realm}",
            "yarn.resourcemanager.keytab": keytab,
            "yarn.nodemanager.principal": f"nm/_HOST@{realm}",
            "yarn.nodemanager.keytab": keytab,
            "yarn.resourcemanager.webapp.spnego-principal": f"HTTP/_HOST@{realm}",
            "yarn.resourcemanager.webapp.spnego-keytab-file": keytab,
            "yarn.nodemanager.webapp.spnego-principal": f"HTTP/_HOST@{realm}",
            "yarn.nodemanager.webapp.spnego-keytab-file": keytab,
        })
    props.update(spec.extra_yarn_site)
    return props


def capacity_scheduler(spec: ClusterSpec) -> dict[str, str]:
    prefix = "yarn.scheduler.capacity.root"
    props = {
        f"{prefix}.queues": ",".join(q.name for q in spec.queues),
        "yarn.scheduler.capacity.node-locality-delay": "-1",
        "yarn.scheduler.capacity.maximum-am-resource-percent": "0.9",
        f"{prefix}.acl_submit_applications": " ",
        f"{prefix}.acl_administer_queue": " ",
    }
    total = sum(q.capacity for q in spec.queues)
    if abs(total - 100.0) > 1e-6:
        raise ValueError(f"queue capacities add up to {total}, not 100")
    for q in spec.queues:
        props.update({
            f"{prefix}.{q.name}.capacity": f"{q.capacity:g}",
            f"{prefix}.{q.name}.maximum-capacity": f"{q.maximum_capacity:g}",
            f"{prefix}.{q.name}.maximum-am-resource-percent": f"{q.am_resource_percent:g}",
            f"{prefix}.{q.name}.user-limit-factor": f"{q.user_limit_factor:g}",
            f"{prefix}.{q.name}.state": "RUNNING",
            f"{prefix}.{q.name}.acl_submit_applications": "*",
            f"{prefix}.{q.name}.acl_administer_queue": "*",
        })
    return props


def write_all(spec: ClusterSpec, conf_dir: str) -> None:
    """Write every configuration file of ``spec`` into ``conf_dir`` (HADOOP_CONF_DIR)."""
    os.makedirs(conf_dir, exist_ok=True)
    if spec.mode == "kerberos":
        secret = os.path.join(conf_dir, "http-secret")
        if not os.path.exists(secret):
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(24).hex())
    write_xml(os.path.join(conf_dir, "core-site.xml"), core_site(spec))
    write_xml(os.path.join(conf_dir, "yarn-site.xml"), yarn_site(spec))
    write_xml(os.path.join(conf_dir, "capacity-scheduler.xml"), capacity_scheduler(spec))
    with open(os.path.join(conf_dir, "log4j.properties"), "w", encoding="utf-8") as f:
        f.write(LOG4J)
