"""A minimal Jupyter kernel (pyzmq + stdlib) for the 200-idle-kernels measurement.

Two hundred real ipykernels (~60 MB and ~1 s of CPU each) or PySpark drivers (~0.5 GB)
do not fit the benchmark machine alongside everything else; the gateway's cost of an
*idle* kernel does not depend on what runs behind the ZMQ sockets, so this stand-in
speaks just enough of the protocol: heartbeat echo, kernel_info, execute (echoes
``len(code)`` as the result), shutdown, and the iopub busy/idle states, signed with
HMAC-SHA256 like any kernel. Usage: ``python tiny_kernel.py -f <connection file>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import zmq

DELIM = b"<IDS|MSG>"


class TinyKernel:
    def __init__(self, conn: dict[str, Any]) -> None:
        self.key = str(conn["key"]).encode()
        self.session = uuid.uuid4().hex
        self.count = 0
        ctx = zmq.Context()
        url = f"{conn['transport']}://{conn['ip']}:"
        self.shell = ctx.socket(zmq.ROUTER)
        self.shell.bind(url + str(conn["shell_port"]))
        self.control = ctx.socket(zmq.ROUTER)
        self.control.bind(url + str(conn["control_port"]))
        self.stdin = ctx.socket(zmq.ROUTER)
        self.stdin.bind(url + str(conn["stdin_port"]))
        self.iopub = ctx.socket(zmq.PUB)
        self.iopub.bind(url + str(conn["iopub_port"]))
        hb = ctx.socket(zmq.ROUTER)
        hb.bind(url + str(conn["hb_port"]))
        # The heartbeat is echoed by libzmq's own device, off the Python thread.
        threading.Thread(target=zmq.proxy, args=(hb, hb), daemon=True).start()

    def sign(self, parts: list[bytes]) -> bytes:
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def send(self, sock: zmq.Socket[bytes], idents: list[bytes], msg_type: str, parent: dict[str, Any],
             content: dict[str, Any]) -> None:
        header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "tiny", "session": self.session,
                  "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        parts = [json.dumps(x).encode() for x in (header, parent, {}, content)]
        sock.send_multipart([*idents, DELIM, self.sign(parts), *parts])

    def status(self, parent: dict[str, Any], state: str) -> None:
        self.send(self.iopub, [b"kernel.tiny.status"], "status", parent, {"execution_state": state})

    def handle(self, sock: zmq.Socket[bytes]) -> bool:
        frames = sock.recv_multipart()
        i = frames.index(DELIM)
        idents, sig, rest = frames[:i], frames[i + 1], frames[i + 2 : i + 6]
        if not hmac.compare_digest(sig, self.sign(rest)):
            return True
        header = json.loads(rest[0])
        mt = header["msg_type"]
        self.status(header, "busy")
        keep = True
        if mt == "kernel_info_request":
            self.send(sock, idents, "kernel_info_reply", header, {
                "status": "ok", "protocol_version": "5.3", "implementation": "tiny", "implementation_version": "1",
                "language_info": {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python",
                                  "file_extension": ".py"}, "banner": "tiny", "help_links": []})
        elif mt == "execute_request":
            self.count += 1
            code = json.loads(rest[3]).get("code", "")
            self.send(self.iopub, [b"kernel.tiny.execute_result"], "execute_result", header,
                      {"execution_count": self.count, "data": {"text/plain": str(len(code))}, "metadata": {}})
            self.send(sock, idents, "execute_reply", header,
                      {"status": "ok", "execution_count": self.count, "user_expressions": {}, "payload": []})
        elif mt == "shutdown_request":
            self.send(sock, idents, "shutdown_reply", header, {"status": "ok", "restart": False})
            keep = False
        elif mt.endswith("_request"):
            self.send(sock, idents, mt.replace("_request", "_reply"), header, {"status": "ok"})
        self.status(header, "idle")
        return keep

    def run(self) -> None:
        poller = zmq.Poller()
        for s in (self.shell, self.control, self.stdin):
            poller.register(s, zmq.POLLIN)
        while True:
            for sock, _ in poller.poll():
                if not self.handle(sock):
                    os._exit(0)


def main() -> None:
    path = sys.argv[sys.argv.index("-f") + 1]
    with open(path) as f:
        TinyKernel(json.load(f)).run()


if __name__ == "__main__":
    main()
