"""The R launcher's contract with its Python helper (launch_r_helper.py), without a cluster:
argv + one JSON line on stdin in; encrypted response, control port and signals out."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest
import zmq
from Crypto.PublicKey import RSA

from yarn_gateway.provisioners import response_frames as frames
from yarn_gateway_launchers import launcher_protocol as lp

HELPER = os.path.join(os.path.dirname(lp.__file__), "launch_r_helper.py")
RANGE = (43100, 43199)


class FakeGateway:
    """Receives one response frame, decrypts it, answers ok."""

    def __init__(self) -> None:
        self.key = RSA.generate(2048)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received: dict[str, Any] = {}
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            head = conn.recv(4, socket.MSG_WAITALL)
            body = conn.recv(frames.parse_frame_length(head), socket.MSG_WAITALL)
            kid, plain = frames.decrypt_frame_body(body, self.key)
            self.received = {"kernel_id": kid, **frames.validate_plaintext(plain)}
            conn.sendall(b'{"status": "ok"}\n')
        self.done.set()


def _control(port: int, kid: str, key: str, request: str, signum: int | None = None, mac: str | None = None) -> Any:
    req = lp.sign_control_request(kid, key, request, signum)
    if mac is not None:
        req["mac"] = mac
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        return json.loads(s.makefile().readline())


def test_helper_without_encryption_reports_serves_control_and_exits_on_eof() -> None:
    gw = FakeGateway()
    fake_r = subprocess.Popen(["sleep", "60"])
    kid = "0f4b6d2e-1111-2222-3333-444455556666"
    info: dict[str, Any] = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
                            "key": os.urandom(32).hex(),
            "shell_port": 43001, "iopub_port": 43002, "stdin_port": 43003, "control_port": 43004,
            "hb_port": 43005, "kernel_name": "ir"}
    pub = lp.public_key_b64(gw.key)
    helper = subprocess.Popen(
        [sys.executable, HELPER, "--kernel-id", kid, "--response-address", gw.address, "--public-key", pub,
         "--port-range", f"{RANGE[0]}..{RANGE[1]}", "--r-pid", str(fake_r.pid), "--launch-timeout", "20",
         "--transport-encryption", "none"],
        stdin=subprocess.PIPE, text=True)
    try:
        assert helper.stdin is not None
        helper.stdin.write(json.dumps({"launch_token": "tok-123", "connection_info": info}) + "\n")
        helper.stdin.flush()
        assert gw.done.wait(20), "no response frame"
        got = gw.received
        assert got["kernel_id"] == kid and got["launch_token"] == "tok-123"
        assert got["connection_info"] == info and got["pid"] == fake_r.pid
        port = got["control_port"]
        assert RANGE[0] <= port <= RANGE[1]

        bad = _control(port, kid, info["key"], "ping", mac="ab" * 32)
        assert bad["status"] == "error" and bad["reason"].startswith("bad_mac")
        assert _control(port, kid, "wrong-key", "signal", signal.SIGTERM)["status"] == "error"
        assert fake_r.poll() is None
        assert _control(port, kid, info["key"], "ping") == {"status": "ok"}
        assert _control(port, kid, info["key"], "signal", signal.SIGTERM) == {"status": "ok"}
        assert fake_r.wait(5) == -signal.SIGTERM

        helper.stdin.close()  # R's end of the pipe closes when R exits
        assert helper.wait(5) == 0
    finally:
        for p in (helper, fake_r):
            if p.poll() is None:
                p.kill()
                p.wait()


def _fake_irkernel(ctx: zmq.Context[Any]) -> tuple[dict[str, zmq.Socket[Any]], dict[str, int]]:
    """IRkernel's five sockets, NULL mechanism, on 127.0.0.1 only (as the R launcher binds them with curve)."""
    kinds = {"shell_port": zmq.ROUTER, "iopub_port": zmq.PUB, "stdin_port": zmq.ROUTER, "control_port": zmq.ROUTER,
             "hb_port": zmq.REP}
    socks = {name: ctx.socket(kind) for name, kind in kinds.items()}
    ports: dict[str, int] = {}
    for name, sock in socks.items():
        sock.linger = 0
        ports[name] = sock.bind_to_random_port("tcp://127.0.0.1")
    return socks, ports


def test_helper_with_curve_reports_the_proxy_and_shuts_the_kernel_down_on_loopback() -> None:
    gw = FakeGateway()
    fake_r = subprocess.Popen(["sleep", "60"])
    kid = "0f4b6d2e-1111-2222-3333-444455556688"
    ctx: zmq.Context[Any] = zmq.Context()
    kernel, loopback = _fake_irkernel(ctx)
    info: dict[str, Any] = {"ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256",
                            "key": os.urandom(32).hex(), **loopback, "kernel_name": "ir"}
    helper = subprocess.Popen(
        [sys.executable, HELPER, "--kernel-id", kid, "--response-address", gw.address, "--public-key",
         lp.public_key_b64(gw.key), "--port-range", f"{RANGE[0]}..{RANGE[1]}", "--r-pid", str(fake_r.pid),
         "--launch-timeout", "20", "--transport-encryption", "curve", "--proxy-ip", "127.0.0.1"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        assert helper.stdin is not None
        helper.stdin.write(json.dumps({"launch_token": "tok-456", "connection_info": info}) + "\n")
        helper.stdin.flush()
        assert gw.done.wait(20), "no response frame"
        got = gw.received["connection_info"]
        # the proxy's ports, in the range, and its public key; never a secret key
        public = got.pop(lp.CURVE_PUBLIC_FIELD)
        assert isinstance(public, str) and len(public) == 40 and lp.CURVE_SECRET_FIELD not in got
        ports = {p: got[p] for p in lp.CONNECTION_INFO_PORTS}
        assert all(RANGE[0] <= p <= RANGE[1] for p in ports.values()), ports
        assert got == {**info, **ports}
        assert RANGE[0] <= gw.received["control_port"] <= RANGE[1]

        # a CurveZMQ client reaches the kernel's loopback shell through the proxy
        client = ctx.socket(zmq.DEALER)
        client.linger = 0
        client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
        client.curve_serverkey = public.encode()
        client.identity = b"gw-session"
        client.connect(f"tcp://127.0.0.1:{ports['shell_port']}")
        client.send_multipart([b"<IDS|MSG>", b"hello"])
        assert kernel["shell_port"].poll(10_000)
        assert kernel["shell_port"].recv_multipart() == [b"yg-proxy", b"gw-session", b"<IDS|MSG>", b"hello"]

        # shutdown: the helper sends IRkernel's shutdown_request to its loopback control port itself
        assert _control(gw.received["control_port"], kid, info["key"], "shutdown") == {"status": "ok"}
        assert kernel["control_port"].poll(10_000)
        frames = kernel["control_port"].recv_multipart()
        assert frames[0] != b"yg-proxy" and frames[1] == b"<IDS|MSG>"  # directly, not through the proxy
        assert json.loads(frames[3])["msg_type"] == "shutdown_request"
        fake_r.kill()  # "R" quits; its end of the pipe closes
        fake_r.wait()
        helper.stdin.close()
        assert helper.wait(15) == 0
        for port in ports.values():  # the proxy is gone with the helper
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        err = helper.stderr.read() if helper.stderr else ""
        assert info["key"] not in err and "tok-456" not in err and public not in err
    finally:
        if client is not None:
            client.close()
        for sock in kernel.values():
            sock.close()
        ctx.term()
        for p in (helper, fake_r):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("line", ["", "not json\n", '{"connection_info": {}}\n'])
def test_helper_refuses_a_bad_handoff(line: str) -> None:
    helper = subprocess.Popen(
        [sys.executable, HELPER, "--kernel-id", "k", "--response-address", "127.0.0.1:1", "--public-key", "x",
         "--r-pid", str(os.getpid()), "--proxy-ip", "127.0.0.1"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    _out, err = helper.communicate(line, timeout=20)
    assert helper.returncode == 2, err
    assert "bad hand-off" in err


def _refused_address() -> str:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def _unreportable_argv() -> list[str]:
    """A helper that reports to a closed port for 2 s; ``--r-pid`` comes last, its value still to add."""
    pub = lp.public_key_b64(RSA.generate(2048))
    return [sys.executable, HELPER, "--kernel-id", "0f4b6d2e-1111-2222-3333-444455556677", "--response-address",
            _refused_address(), "--public-key", pub, "--port-range", f"{RANGE[0]}..{RANGE[1]}",
            "--launch-timeout", "2", "--transport-encryption", "curve", "--proxy-ip", "127.0.0.1", "--r-pid"]


HANDOFF = json.dumps({"launch_token": "tok", "connection_info": {
    "ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256", "key": "k" * 64, "shell_port": 1,
    "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "kernel_name": "ir"}}) + "\n"


def test_helper_that_cannot_report_terminates_its_r_parent() -> None:
    # The "R process" is the helper's parent, as under Rscript's pipe(): it is told to go.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import json, os, subprocess, sys, time\n"
         "argv = json.loads(sys.argv[1]) + [str(os.getpid())]\n"
         "h = subprocess.Popen(argv, stdin=subprocess.PIPE, text=True)\n"
         "h.stdin.write(sys.argv[2]); h.stdin.flush()\n"
         "h.wait()\n"
         "time.sleep(60)\n",
         json.dumps(_unreportable_argv()), HANDOFF],
        text=True)
    try:
        assert parent.wait(30) == -signal.SIGTERM
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_helper_that_cannot_report_leaves_a_process_that_is_not_its_parent() -> None:
    # R already gone (the helper was re-parented): the pid it was given may belong to someone else now.
    stranger = subprocess.Popen(["sleep", "60"])
    helper = subprocess.Popen([*_unreportable_argv(), str(stranger.pid)], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _out, err = helper.communicate(HANDOFF, timeout=30)
        assert helper.returncode == 1, err
        assert "could not report to the gateway" in err
        assert stranger.poll() is None
    finally:
        for p in (helper, stranger):
            if p.poll() is None:
                p.kill()
                p.wait()
