"""A real ZooKeeper (Debian's `zookeeper` package) on loopback, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from typing import Optional

from helpers.waiting import wait_until_sync

ZK_JAR = "/usr/share/java/zookeeper.jar"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ZooKeeperServer:
    def __init__(self) -> None:
        if not os.path.exists(ZK_JAR):
            raise RuntimeError("ZooKeeper is not installed (apt-get install zookeeper; `make test` does it)")
        self.dir = tempfile.mkdtemp(prefix="yarngw-zk-")
        self.port = _free_port()
        self.hosts = f"127.0.0.1:{self.port}"
        conf = os.path.join(self.dir, "zoo.cfg")
        with open(conf, "w") as f:
            f.write(f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={self.dir}/data\nclientPort={self.port}\n"
                    "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n")
        self.log = open(os.path.join(self.dir, "zk.log"), "wb")
        self.proc: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", f"{self.dir}:{ZK_JAR}:/usr/share/java/slf4j-simple.jar",
             f"-Dzookeeper.log.dir={self.dir}", "org.apache.zookeeper.server.ZooKeeperServerMain", conf],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until_sync(self._up, 30, f"ZooKeeper started (answers ruok on {self.hosts})", interval=0.1)
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        assert self.proc is not None
        if self.ruok():
            return True
        if self.proc.poll() is not None:
            raise RuntimeError("ZooKeeper did not start")
        return False

    def ruok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(16) == b"imok"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        self.log.close()
