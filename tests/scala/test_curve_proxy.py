"""Issue 17, Scala half: the Toree launcher's CurveZMQ proxy (launchers/scala CurveProxy.java, JeroMQ)
in front of plaintext pyzmq sockets on loopback that stand in for Toree's, seen from pyzmq (libzmq)
clients: CURVE clients reach every channel with the routing a Jupyter kernel needs (ROUTER/DEALER with
one back identity for shell and stdin, XPUB/XSUB for iopub); a NULL client or one with a wrong server
key gets nothing through; a message over ZMQ_MAXMSGSIZE drops only its sender; closing the proxy ends
its threads and lets the JVM end. Plain ``java`` with the launcher jar and toree-assembly.jar."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.utils.monitor
import zmq.utils.z85

pytestmark = pytest.mark.jvm

PROBE_SRC = Path(__file__).with_name("CurveProxyProbe.java")
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
ROUTED = ("shell", "stdin", "control", "hb")
RANGE = (47300, 47339)  # the proxy's front ports; nothing else of the tests uses it
BACK_IDENTITY = b"yg-proxy"
SMALL_MAX = 64 * 1024


@pytest.fixture(scope="module")
def probe_cp(launcher_jar: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    javac = shutil.which("javac")
    if not javac or not shutil.which("java"):
        pytest.skip("javac/java not on PATH")
    toree = launcher_jar.with_name("toree-assembly.jar")
    cp = f"{launcher_jar}:{toree}"
    out = tmp_path_factory.mktemp("curve-probe")
    r = subprocess.run([javac, "-d", str(out), "-cp", cp, str(PROBE_SRC)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return f"{out}:{cp}"


@dataclass
class Proxied:
    """The stand-in kernel's plaintext sockets, the running probe and the proxy's front."""

    ctx: zmq.Context[Any]
    kernel: dict[str, zmq.Socket[Any]]
    proc: subprocess.Popen[str]
    front: dict[str, int]
    public_key: bytes
    clients: list[zmq.Socket[Any]] = field(default_factory=list)

    def client(self, kind: int, channel: str, identity: bytes | None = None, server_key: bytes | None = None,
               curve: bool = True) -> zmq.Socket[Any]:
        s: zmq.Socket[Any] = self.ctx.socket(kind)
        s.linger = 0
        if identity is not None:
            s.identity = identity
        if curve:
            pub, sec = zmq.curve_keypair()
            s.curve_serverkey = server_key or self.public_key
            s.curve_publickey = pub
            s.curve_secretkey = sec
        s.connect(f"tcp://127.0.0.1:{self.front[channel]}")
        self.clients.append(s)
        return s

    def stop(self) -> tuple[int, str]:
        """Close the probe's stdin: the proxy closes and main returns; (exit code, last line)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        rc = self.proc.wait(20)
        lines = self.proc.stdout.read().strip().splitlines()
        return rc, lines[-1] if lines else ""


def _recv(sock: zmq.Socket[Any], timeout_ms: int = 5000) -> list[bytes] | None:
    if not sock.poll(timeout_ms):
        return None
    return sock.recv_multipart()


def _start(probe_cp: str, max_msg_size: int = 256 * 1024 * 1024) -> Proxied:
    ctx: zmq.Context[Any] = zmq.Context()
    kernel: dict[str, zmq.Socket[Any]] = {}
    for ch in CHANNELS:
        s = ctx.socket(zmq.PUB if ch == "iopub" else zmq.ROUTER)
        s.linger = 0
        if ch != "iopub":
            s.router_mandatory = True  # an unroutable reply raises instead of vanishing
        s.bind("tcp://127.0.0.1:*")
        kernel[ch] = s
    ports = [str(kernel[ch].getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1]) for ch in CHANNELS]
    proc = subprocess.Popen(["java", "-cp", probe_cp, "CurveProxyProbe", f"{RANGE[0]}..{RANGE[1]}",
                             str(max_msg_size), *ports], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PROXY "):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        for s in kernel.values():
            s.close()
        ctx.term()
        pytest.fail(f"the probe did not start: {line!r} {err}")
    info = json.loads(line[len("PROXY "):])
    assert info["running"] is True, info
    return Proxied(ctx, kernel, proc, {ch: int(info[ch]) for ch in CHANNELS}, info["public_key"].encode())


@pytest.fixture
def proxied(probe_cp: str) -> Iterator[Proxied]:
    p = _start(probe_cp)
    yield p
    _cleanup(p)


def _cleanup(p: Proxied) -> None:
    if p.proc.poll() is None:
        p.proc.kill()
    p.proc.wait(10)
    for pipe in (p.proc.stdin, p.proc.stdout, p.proc.stderr):
        if pipe is not None:
            pipe.close()
    for s in [*p.clients, *p.kernel.values()]:
        s.close()
    p.ctx.term()


def _round_trip(p: Proxied, channel: str, client: zmq.Socket[Any], payload: bytes) -> list[bytes]:
    """Send through the proxy; the kernel side must see [back identity?, client id, payload] and reply."""
    client.send_multipart([b"", payload])
    got = _recv(p.kernel[channel])
    assert got is not None, f"{channel}: nothing reached the kernel"
    reply = [*got[:-1], b"reply:" + got[-1]]
    p.kernel[channel].send_multipart(reply)
    back = _recv(client)
    assert back == [b"", b"reply:" + payload], (channel, back)
    return got


def test_curve_clients_reach_every_channel_with_jupyter_routing(proxied: Proxied) -> None:
    p = proxied
    lo, hi = RANGE
    assert all(lo <= port <= hi for port in p.front.values()) and len(set(p.front.values())) == 5, p.front
    assert len(p.public_key) == 40
    zmq.utils.z85.decode(p.public_key)  # valid Z85

    # shell, control, hb: ROUTER/DEALER; the kernel sees [proxy's back identity, client's id, frames...].
    shell = p.client(zmq.DEALER, "shell", identity=b"client-a")
    got = _round_trip(p, "shell", shell, b"kernel_info_request")
    assert got[:2] == [BACK_IDENTITY, b"client-a"], got
    for ch in ("control", "hb"):
        sock = p.client(zmq.DEALER, ch, identity=b"client-a")
        got = _round_trip(p, ch, sock, f"{ch}-ping".encode())
        assert got[1] == b"client-a", got

    # stdin: the kernel addresses input_request with the shell request's identities; it reaches the client
    # whose stdin socket has its shell identity, and no other client.
    stdin_a = p.client(zmq.DEALER, "stdin", identity=b"client-a")
    stdin_b = p.client(zmq.DEALER, "stdin", identity=b"client-b")
    for s in (stdin_a, stdin_b):  # the kernel learns the back identity once the clients' handshakes are done
        s.send_multipart([b"", b"hello"])
        hello = _recv(p.kernel["stdin"])
        assert hello is not None and hello[:2] == [BACK_IDENTITY, s.identity], hello
    p.kernel["stdin"].send_multipart([BACK_IDENTITY, b"client-a", b"", b"input_request"])
    assert _recv(stdin_a) == [b"", b"input_request"]
    stdin_a.send_multipart([b"", b"input_reply"])
    assert _recv(p.kernel["stdin"]) == [BACK_IDENTITY, b"client-a", b"", b"input_reply"]
    assert _recv(stdin_b, 500) is None

    # iopub: subscriptions travel up to the kernel's PUB, messages down to the CURVE subscriber.
    sub = p.client(zmq.SUB, "iopub")
    sub.subscribe(b"")
    got_iopub = None
    for _ in range(100):  # PUB drops until the subscription has arrived
        p.kernel["iopub"].send_multipart([b"kernel.status", b"stream: hello"])
        got_iopub = _recv(sub, 100)
        if got_iopub:
            break
    assert got_iopub == [b"kernel.status", b"stream: hello"]


def test_null_and_wrong_key_clients_get_nothing_through(proxied: Proxied) -> None:
    p = proxied
    intruders = [p.client(zmq.DEALER, "shell", identity=b"null", curve=False),
                 p.client(zmq.DEALER, "shell", identity=b"wrongkey", server_key=zmq.curve_keypair()[0])]
    for s in intruders:
        s.send_multipart([b"", b"kernel_info_request"])
    null_sub = p.client(zmq.SUB, "iopub", curve=False)
    wrong_sub = p.client(zmq.SUB, "iopub", server_key=zmq.curve_keypair()[0])
    good_sub = p.client(zmq.SUB, "iopub")
    for s in (null_sub, wrong_sub, good_sub):
        s.subscribe(b"")
    seen = {"null": 0, "wrong": 0, "good": 0}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        p.kernel["iopub"].send(b"output")
        for name, s in (("null", null_sub), ("wrong", wrong_sub), ("good", good_sub)):
            while s.poll(0):
                s.recv()
                seen[name] += 1
        time.sleep(0.05)
    assert seen["good"] > 0 and seen["null"] == seen["wrong"] == 0, seen
    assert _recv(p.kernel["shell"], 500) is None  # neither intruder's request reached the kernel
    # A client with the right key still gets through, on the same socket the intruders tried.
    good = p.client(zmq.DEALER, "shell", identity=b"good")
    assert _round_trip(p, "shell", good, b"kernel_info_request")[1] == b"good"
    for s in intruders:
        assert _recv(s, 200) is None


def test_message_over_max_size_drops_its_sender_only(probe_cp: str) -> None:
    p = _start(probe_cp, max_msg_size=SMALL_MAX)
    try:
        big = p.client(zmq.DEALER, "shell", identity=b"big")
        small = p.client(zmq.DEALER, "shell", identity=b"small")
        _round_trip(p, "shell", big, b"fits")  # both connected and working
        _round_trip(p, "shell", small, b"fits")
        monitor = big.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            big.send_multipart([b"", b"x" * (SMALL_MAX + 1024)])
            event = _recv(monitor, 5000)
            assert event is not None, "the oversized sender was not disconnected"
            assert zmq.utils.monitor.parse_monitor_message(event)["event"] == zmq.EVENT_DISCONNECTED
        finally:
            big.disable_monitor()
            monitor.close()
        assert _recv(p.kernel["shell"], 500) is None  # the oversized message was not forwarded
        _round_trip(p, "shell", small, b"still works")
    finally:
        _cleanup(p)


def test_close_ends_the_proxy_threads_and_the_jvm(proxied: Proxied) -> None:
    p = proxied
    shell = p.client(zmq.DEALER, "shell", identity=b"a")
    _round_trip(p, "shell", shell, b"before close")
    rc, last = p.stop()  # main returns without System.exit: a live non-daemon thread would hang the JVM
    assert (rc, last) == (0, "STOPPED 0"), (rc, last)
    shell.send_multipart([b"", b"after close"])
    assert _recv(p.kernel["shell"], 500) is None
