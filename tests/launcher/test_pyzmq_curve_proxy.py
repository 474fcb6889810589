"""The launchers' CurveZMQ proxy (launchers/python/curve_proxy.py, issue 17) without YARN.

In front of real pyzmq "kernel" sockets and of a real ipykernel kernel bound on 127.0.0.1, a
real CurveZMQ client (pyzmq + jupyter_client's Session) gets everything through the proxy;
a client with the HMAC key but the NULL mechanism or a wrong server key gets nothing; an
oversized message drops only its sender; close() leaves no socket, fd or thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import zmq
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from helpers.waiting import wait_until_sync as wait_until
from yarn_gateway_launchers import curve_proxy as cp
from yarn_gateway_launchers import launcher_protocol as lp

pytestmark = pytest.mark.skipif(not cp.curve_available(), reason="this pyzmq has no CurveZMQ")

PORTS = tuple(cp.CHANNELS)


def _free_range(width: int = 40) -> tuple[int, int]:
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width


class Client:
    """A kernel client over the proxy: pyzmq sockets (CurveZMQ client with an ephemeral key pair
    unless ``server_key`` is None, then NULL) and jupyter_client's Session for signing. Shell and
    stdin share one identity, as jupyter_client's and the gateway's do."""

    def __init__(self, ports: dict[str, int], key: str, server_key: Optional[str], host: str = "127.0.0.1") -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.session = Session(key=key.encode(), signature_scheme="hmac-sha256")
        public, secret = zmq.curve_keypair()
        self.sockets: dict[str, zmq.Socket[Any]] = {}
        for name, kind in (("shell_port", zmq.DEALER), ("stdin_port", zmq.DEALER), ("control_port", zmq.DEALER),
                           ("hb_port", zmq.REQ), ("iopub_port", zmq.SUB)):
            s = self.ctx.socket(kind)
            s.linger = 0
            if server_key is not None:
                s.curve_serverkey = server_key.encode()
                s.curve_publickey, s.curve_secretkey = public, secret
            if name in ("shell_port", "stdin_port"):
                s.identity = self.session.bsession
            if kind == zmq.SUB:
                s.subscribe(b"")
            s.connect(f"tcp://{host}:{ports[name]}")
            self.sockets[name] = s

    def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg = self.session.msg(msg_type, content)
        self.session.send(self.sockets[channel], msg)
        return str(msg["header"]["msg_id"])

    def recv(self, channel: str, timeout: float = 10.0) -> Optional[dict[str, Any]]:
        s = self.sockets[channel]
        if not s.poll(int(timeout * 1000)):
            return None
        _idents, parts = self.session.feed_identities(s.recv_multipart())
        return dict(self.session.deserialize(parts))

    def reply(self, channel: str, msg_id: str, timeout: float = 10.0) -> Optional[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(channel, left)
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    def outputs(self, msg_id: str, timeout: float = 60.0) -> str:
        """The stdout of request ``msg_id``, read from iopub until the kernel is idle again."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv("iopub_port", left)
            if msg is None or msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise AssertionError(f"no idle status for {msg_id} within {timeout} s; got {''.join(out)[-200:]!r}")

    def execute(self, code: str, allow_stdin: bool = False) -> str:
        return self.send("shell_port", "execute_request", {"code": code, "silent": False, "store_history": True,
                                                           "user_expressions": {}, "allow_stdin": allow_stdin})

    def close(self) -> None:
        for s in self.sockets.values():
            s.close(linger=0)
        self.ctx.term()


@pytest.fixture
def ipykernel() -> Iterator[KernelManager]:
    km = KernelManager(kernel_name="python3")
    km.ip = "127.0.0.1"
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.stop_channels()
        yield km
    finally:
        km.shutdown_kernel(now=True)
        km.cleanup_resources()


@pytest.fixture
def proxied_kernel(ipykernel: KernelManager) -> Iterator[tuple[KernelManager, cp.CurveProxy]]:
    info: dict[str, Any] = dict(ipykernel.get_connection_info())
    proxy = cp.CurveProxy({p: int(info[p]) for p in PORTS}, "127.0.0.1", _free_range())
    proxy.start()
    try:
        yield ipykernel, proxy
    finally:
        proxy.close()


def _wait_connected(c: Client) -> None:
    """The iopub subscription travels up asynchronously: poke the kernel until iopub delivers."""
    def subscribed() -> bool:
        msg_id = c.send("shell_port", "kernel_info_request", {})
        assert c.reply("shell_port", msg_id, 10) is not None, "no kernel_info_reply through the proxy"
        while (msg := c.recv("iopub_port", 0.5)) is not None:
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    wait_until(subscribed, 20, interval=0.1, what="iopub delivers through the proxy")


def test_a_real_ipykernel_works_through_the_proxy_and_only_with_curve(
        proxied_kernel: tuple[KernelManager, cp.CurveProxy]) -> None:
    km, proxy = proxied_kernel
    info: dict[str, Any] = dict(km.get_connection_info())
    key = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
    lo, hi = proxy.port_range
    assert proxy.public_key is not None and len(proxy.public_key) == 40
    assert set(proxy.ports) == set(PORTS) and all(lo <= p <= hi for p in proxy.ports.values()), proxy.ports
    assert not set(proxy.ports.values()) & {int(info[p]) for p in PORTS}

    c = Client(proxy.ports, key, proxy.public_key)
    try:
        _wait_connected(c)
        # execute: reply on shell, output on iopub
        msg_id = c.execute('print("secret-" + "marker")')
        assert c.outputs(msg_id) == "secret-marker\n"
        reply = c.reply("shell_port", msg_id)
        assert reply is not None and reply["content"]["status"] == "ok"

        # stdin: the kernel addresses input_request to the shell request's identities
        msg_id = c.execute('x = input("name? "); print("hello", x)', allow_stdin=True)
        req = c.recv("stdin_port", 20)
        assert req is not None and req["msg_type"] == "input_request", req
        assert req["content"]["prompt"] == "name? "
        c.send("stdin_port", "input_reply", {"value": "world"})
        assert c.outputs(msg_id) == "hello world\n"

        # control and heartbeat
        msg_id = c.send("control_port", "kernel_info_request", {})
        assert c.reply("control_port", msg_id) is not None
        c.sockets["hb_port"].send(b"ping")
        assert c.sockets["hb_port"].poll(10_000) and c.sockets["hb_port"].recv() == b"ping"

        # a 10,000-line burst arrives complete and in order
        msg_id = c.execute("for i in range(10000): print(i, flush=True)")
        assert c.outputs(msg_id, 120).split() == [str(i) for i in range(10000)]
    finally:
        c.close()

    # HMAC key but NULL mechanism, or CURVE with a wrong server key: no answer on any channel
    wrong_key = zmq.curve_keypair()[0].decode()
    for label, server_key in (("NULL mechanism", None), ("wrong server key", wrong_key)):
        bad = Client(proxy.ports, key, server_key)
        try:
            bad.execute('print("secret-" + "marker")')
            bad.send("control_port", "kernel_info_request", {})
            bad.sockets["hb_port"].send(b"ping")
            assert bad.recv("shell_port", 3) is None, label
            assert bad.recv("control_port", 0.5) is None, label
            assert bad.recv("iopub_port", 0.5) is None, label
            assert not bad.sockets["hb_port"].poll(500), label
        finally:
            bad.close()
    # The kernel never ran those requests (the next cell is the 4th), and it still answers a good client.
    ok = Client(proxy.ports, key, proxy.public_key)
    try:
        _wait_connected(ok)
        msg_id = ok.execute('print("still here")')
        assert ok.outputs(msg_id) == "still here\n"
        reply = ok.reply("shell_port", msg_id)
        assert reply is not None
        assert reply["content"]["execution_count"] == 4, reply["content"]
    finally:
        ok.close()


class FakeKernel:
    """NULL-mechanism kernel sockets on 127.0.0.1 as IRkernel has them: ROUTER shell/control/stdin,
    REP heartbeat, PUB iopub. Echoes on shell and control; ``echo`` is served in a thread."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        kinds = {"shell_port": zmq.ROUTER, "control_port": zmq.ROUTER, "stdin_port": zmq.ROUTER,
                 "hb_port": zmq.REP, "iopub_port": zmq.PUB}
        self.sockets = {name: self.ctx.socket(kind) for name, kind in kinds.items()}
        self.ports: dict[str, int] = {}
        for name, s in self.sockets.items():
            s.linger = 0
            self.ports[name] = s.bind_to_random_port("tcp://127.0.0.1")
        self.received: list[list[bytes]] = []

    def close(self) -> None:
        for s in self.sockets.values():
            s.close(linger=0)
        self.ctx.term()


def _curve_socket(ctx: zmq.Context[Any], kind: int, server_key: str, port: int,
                  identity: bytes = b"") -> zmq.Socket[Any]:
    s: zmq.Socket[Any] = ctx.socket(kind)
    s.linger = 0
    public, secret = zmq.curve_keypair()
    s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_key.encode(), public, secret
    if identity:
        s.identity = identity
    s.connect(f"tcp://127.0.0.1:{port}")
    return s


def test_proxy_routes_every_channel_like_a_broker_and_binds_back_only_on_loopback() -> None:
    kernel = FakeKernel()
    proxy = cp.CurveProxy(kernel.ports, "127.0.0.1", _free_range())
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        ports = proxy.start()
        assert proxy.public_key is not None
        shell = _curve_socket(ctx, zmq.DEALER, proxy.public_key, ports["shell_port"], b"client-a")
        stdin = _curve_socket(ctx, zmq.DEALER, proxy.public_key, ports["stdin_port"], b"client-a")
        sub = _curve_socket(ctx, zmq.SUB, proxy.public_key, ports["iopub_port"])
        sub.subscribe(b"")
        hb = _curve_socket(ctx, zmq.REQ, proxy.public_key, ports["hb_port"])

        shell.send_multipart([b"<IDS|MSG>", b"request"])
        ks = kernel.sockets["shell_port"]
        assert ks.poll(10_000)
        idents = ks.recv_multipart()
        assert idents == [cp.PROXY_IDENTITY, b"client-a", b"<IDS|MSG>", b"request"]  # frames unchanged
        ks.send_multipart([cp.PROXY_IDENTITY, b"client-a", b"<IDS|MSG>", b"reply"])
        assert shell.poll(10_000) and shell.recv_multipart() == [b"<IDS|MSG>", b"reply"]

        # stdin: the kernel answers on stdin to the shell request's identities
        stdin.send(b"hello")  # connects the stdin peer (as a client does before it is asked)
        kst = kernel.sockets["stdin_port"]
        assert kst.poll(10_000) and kst.recv_multipart() == [cp.PROXY_IDENTITY, b"client-a", b"hello"]
        kst.send_multipart([cp.PROXY_IDENTITY, b"client-a", b"<IDS|MSG>", b"input_request"])
        assert stdin.poll(10_000) and stdin.recv_multipart() == [b"<IDS|MSG>", b"input_request"]

        hb.send(b"beat")
        khb = kernel.sockets["hb_port"]
        assert khb.poll(10_000)
        khb.send(khb.recv())
        assert hb.poll(10_000) and hb.recv() == b"beat"

        def delivered() -> bool:
            kernel.sockets["iopub_port"].send(b"io")
            return bool(sub.poll(100)) and sub.recv() == b"io"

        wait_until(delivered, 10, interval=0.05, what="iopub through the proxy")

        # back sockets connect to loopback only; front sockets are bound on the ip, in the range
        import psutil

        conns = psutil.Process().net_connections(kind="tcp")
        listening = {c.laddr.port: c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
        lo, hi = proxy.port_range
        for name, port in ports.items():
            assert lo <= port <= hi and listening[port] == "127.0.0.1", (name, port)
        back = [c for c in conns if c.raddr and c.raddr.port in set(kernel.ports.values())]
        assert len(back) == 5 and all(c.raddr.ip == "127.0.0.1" for c in back), back
        for s in (shell, stdin, sub, hb):
            s.close()
    finally:
        proxy.close()
        ctx.term()
        kernel.close()


def test_an_oversized_message_drops_its_sender_only() -> None:
    kernel = FakeKernel()
    proxy = cp.CurveProxy(kernel.ports, "127.0.0.1", _free_range(), max_msg_size=64 * 1024)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        ports = proxy.start()
        assert proxy.public_key is not None
        big = _curve_socket(ctx, zmq.DEALER, proxy.public_key, ports["shell_port"], b"big")
        monitor = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        good = _curve_socket(ctx, zmq.DEALER, proxy.public_key, ports["shell_port"], b"good")
        big.send_multipart([b"<IDS|MSG>", b"x" * (128 * 1024)])
        assert monitor.poll(10_000), "the oversized sender was not disconnected"
        good.send_multipart([b"<IDS|MSG>", b"small"])
        ks = kernel.sockets["shell_port"]
        assert ks.poll(10_000)
        assert ks.recv_multipart() == [cp.PROXY_IDENTITY, b"good", b"<IDS|MSG>", b"small"]
        assert not ks.poll(500)  # the big message never reached the kernel
        ks.send_multipart([cp.PROXY_IDENTITY, b"good", b"reply"])
        assert good.poll(10_000) and good.recv_multipart() == [b"reply"]
        big.disable_monitor()
        for s in (monitor, big, good):
            s.close()
    finally:
        proxy.close()
        ctx.term()
        kernel.close()


def test_null_mode_is_plain_forwarding_without_a_key() -> None:
    kernel = FakeKernel()
    proxy = cp.CurveProxy(kernel.ports, "127.0.0.1", _free_range(), curve=False)
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        ports = proxy.start()
        assert proxy.public_key is None
        shell = ctx.socket(zmq.DEALER)
        shell.linger = 0
        shell.connect(f"tcp://127.0.0.1:{ports['shell_port']}")
        shell.send(b"plain")
        assert kernel.sockets["shell_port"].poll(10_000)
        assert kernel.sockets["shell_port"].recv_multipart()[-1] == b"plain"
        shell.close()
    finally:
        proxy.close()
        ctx.term()
        kernel.close()


# The fd and thread counts are taken in a fresh interpreter: in the suite's process, threads and
# garbage collection left over from other tests open and close fds of their own at any moment.
_CLOSE_PROBE = r"""
import json, os, sys, threading
import zmq
from yarn_gateway_launchers import curve_proxy as cp
from yarn_gateway_launchers import launcher_protocol as lp

def fds():
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listdir's own fd
    return out

def free_range(width=40):
    (s,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    base = s.getsockname()[1]
    s.close()
    lo = min(base, 65535 - width)
    return lo, lo + width

ctx = zmq.Context()
kernel = {}
for name in cp.CHANNELS:
    s = ctx.socket(zmq.ROUTER)
    s.linger = 0
    kernel[name] = s.bind_to_random_port("tcp://127.0.0.1")
zmq.curve_keypair()  # libsodium's first use may open what it keeps for the process
report = {"rounds": []}
before, threads = fds(), threading.active_count()
for _ in range(3):
    proxy = cp.CurveProxy(kernel, "127.0.0.1", free_range())
    ports = proxy.start()
    running = threading.active_count() - threads
    proxy.close()
    proxy.close()  # idempotent
    now = fds()
    freed = []
    for port in ports.values():  # the port is free again: we can bind it ourselves
        (s,) = lp.bind_sockets_in_range(1, (port, port), "127.0.0.1")
        s.close()
        freed.append(port)
    report["rounds"].append({"channels": len(ports), "running": running,
                             "left_threads": threading.active_count() - threads,
                             "extra_fds": {k: v for k, v in now.items() if k not in before},
                             "freed": len(freed)})
held = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")[0]
port = held.getsockname()[1]
before, threads = fds(), threading.active_count()
try:
    cp.CurveProxy({"shell_port": 1, "hb_port": 2}, "127.0.0.1", (port, port)).start()
    report["full_range"] = "started"
except OSError as e:
    report["full_range"] = str(e)
report["full_range_extra_fds"] = {k: v for k, v in fds().items() if k not in before}
report["full_range_left_threads"] = threading.active_count() - threads
held.close()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def close_probe() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}
    done = subprocess.run([sys.executable, "-c", _CLOSE_PROBE], capture_output=True, text=True, timeout=120,
                          env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_close_leaves_no_socket_fd_or_thread_and_frees_the_ports(close_probe: dict[str, Any]) -> None:
    assert len(close_probe["rounds"]) == 3
    for r in close_probe["rounds"]:
        assert r["running"] == r["channels"] == len(cp.CHANNELS)  # a thread per channel while it runs
        assert r["left_threads"] == 0
        assert r["extra_fds"] == {}
        assert r["freed"] == r["channels"]


def test_a_full_range_fails_cleanly(close_probe: dict[str, Any]) -> None:
    assert "ports free" in close_probe["full_range"]
    assert close_probe["full_range_extra_fds"] == {}
    assert close_probe["full_range_left_threads"] == 0
