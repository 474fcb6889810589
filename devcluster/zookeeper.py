"""Debian's ZooKeeper (package ``zookeeper``) for the HA mode: command line and health check."""

from __future__ import annotations

import os
import socket

ZK_JAR = "/usr/share/java/zookeeper.jar"
SLF4J = "/usr/share/java/slf4j-simple.jar"


def zookeeper_argv(data_dir: str, port: int) -> list[str]:
    """Write ``zoo.cfg`` in ``data_dir`` and return the server's argv (loopback only)."""
    if not os.path.exists(ZK_JAR):
        raise RuntimeError("ZooKeeper is not installed (apt-get install zookeeper; `make test` does it)")
    os.makedirs(os.path.join(data_dir, "data"), exist_ok=True)
    conf = os.path.join(data_dir, "zoo.cfg")
    with open(conf, "w", encoding="utf-8") as f:
        # tickTime 1000: sessions may be as short as 2 s, so a killed RM's lock expires quickly.
        f.write(f"tickTime=1000\ninitLimit=10\nsyncLimit=5\ndataDir={data_dir}/data\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n")
    return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", f"{data_dir}:{ZK_JAR}:{SLF4J}",
            f"-Dzookeeper.log.dir={data_dir}", "org.apache.zookeeper.server.ZooKeeperServerMain", conf]


def ruok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"ruok")
            return s.recv(16) == b"imok"
    except OSError:
        return False
