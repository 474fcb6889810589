"""launcher_protocol building blocks: port ranges, plaintext validation, control server."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Any

import pytest

from yarn_gateway.provisioners import response_frames as frames
from yarn_gateway_launchers import launcher_protocol as lp


def test_protocol_parse_port_range() -> None:
    assert lp.parse_port_range("0..0") == (0, 0)
    assert lp.parse_port_range("40000..40100") == (40000, 40100)
    for bad in ("", "1-2", "10..5", "0..10", "1..70000", "a..b", "5"):
        with pytest.raises(ValueError):
            lp.parse_port_range(bad)


def test_protocol_bind_keeps_sockets_in_range() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    base = blocker.getsockname()[1]
    blocker.close()
    lo, hi = base, min(base + 40, 65535)
    socks = lp.bind_sockets_in_range(6, (lo, hi), "127.0.0.1")
    try:
        ports = [s.getsockname()[1] for s in socks]
        assert len(set(ports)) == 6 and all(lo <= p <= hi for p in ports)
        # Still bound and listening: a second bind to the same port fails, a connect works.
        with socket.socket() as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", ports[0]))
        socket.create_connection(("127.0.0.1", ports[1]), timeout=2).close()
    finally:
        for s in socks:
            s.close()


def test_protocol_bind_fails_when_range_exhausted() -> None:
    (held,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    port = held.getsockname()[1]
    try:
        with pytest.raises(OSError, match="free"):
            lp.bind_sockets_in_range(1, (port, port), "127.0.0.1")
    finally:
        held.close()


def _plaintext(**overrides: Any) -> dict[str, Any]:
    ci = {"ip": "10.0.0.5", "transport": "tcp", "signature_scheme": "hmac-sha256", "key": "k" * 64,
          "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
          "kernel_name": "python3"}
    ci.update(overrides.pop("ci", {}))
    return {**lp.build_response_plaintext("tok", ci, 6, 99, "h"), **overrides}


@pytest.mark.parametrize(
    "plain",
    [
        _plaintext(ci={"ip": "0.0.0.0"}),
        _plaintext(ci={"key": ""}),
        _plaintext(ci={"shell_port": "1"}),
        _plaintext(ci={"hb_port": 70000}),
        _plaintext(ci={"iopub_port": True}),
        _plaintext(control_port=None),
        _plaintext(pid="12"),
        {"launch_token": "tok", "connection_info": {"ip": "10.0.0.5"}, "control_port": 6, "pid": 1,
         "hostname": "h"},
    ],
)
def test_protocol_validate_plaintext_rejects(plain: dict[str, Any]) -> None:
    with pytest.raises(lp.ProtocolError) as info:
        frames.validate_plaintext(plain)
    assert info.value.code == lp.E_INVALID


def test_protocol_validate_plaintext_accepts() -> None:
    assert frames.validate_plaintext(_plaintext())["pid"] == 99


def test_protocol_verifier_nonce_cache_is_bounded() -> None:
    v = lp.ControlVerifier("k1", "key", cache_size=3)
    for i in range(10):
        v.verify(lp.sign_control_request("k1", "key", "ping", nonce=f"nonce-{i:04d}"))
    assert len(v._seen) == 3


def _ask(port: int, line: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line)
        return json.loads(s.makefile("rb").readline())


def test_protocol_control_server_dispatch() -> None:
    (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    got: list[Any] = []
    done = threading.Event()

    def on_signal(n: int) -> None:
        got.append(("signal", n))

    def on_shutdown() -> None:
        got.append(("shutdown",))
        done.set()

    server = lp.ControlServer(sock, lp.ControlVerifier("kid", "secret-key"), on_signal, on_shutdown)
    server.start()
    try:
        port = server.port

        def line(req: dict[str, Any]) -> bytes:
            return json.dumps(req).encode() + b"\n"

        assert _ask(port, line(lp.sign_control_request("kid", "secret-key", "ping"))) == {"status": "ok"}
        sig = lp.sign_control_request("kid", "secret-key", "signal", int(signal.SIGUSR1))
        assert _ask(port, line(sig))["status"] == "ok"
        replay = _ask(port, line(sig))
        assert replay["status"] == "error" and replay["reason"].startswith(lp.E_REPLAY)
        forged = dict(lp.sign_control_request("kid", "secret-key", "signal", 9), signum=15)
        assert _ask(port, line(forged))["reason"].startswith(lp.E_BAD_MAC)
        stale = lp.sign_control_request("kid", "secret-key", "ping", ts=int(time.time()) - 120)
        assert _ask(port, line(stale))["reason"].startswith(lp.E_STALE_TS)
        assert _ask(port, b"garbage\n")["reason"].startswith(lp.E_BAD_REQUEST)
        assert _ask(port, line(lp.sign_control_request("kid", "secret-key", "shutdown")))["status"] == "ok"
        assert done.wait(5)
        assert got == [("signal", int(signal.SIGUSR1)), ("shutdown",)]
    finally:
        server.stop()


def test_protocol_send_response_retries_until_listener_appears() -> None:
    (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1", listen=False)
    port = sock.getsockname()[1]
    received: list[bytes] = []

    def late_server() -> None:
        time.sleep(0.6)  # connections are refused until now
        sock.listen(1)
        conn, _ = sock.accept()
        with conn:
            received.append(conn.recv(65536))
            conn.sendall(b'{"status": "ok"}\n')
        sock.close()

    t = threading.Thread(target=late_server)
    t.start()
    answer = lp.send_response(f"127.0.0.1:{port}", b"\x00\x00\x00\x02{}", timeout=10, initial_backoff=0.1)
    t.join()
    assert answer == {"status": "ok"} and received == [b"\x00\x00\x00\x02{}"]


def test_protocol_send_response_raises_on_error_answer() -> None:
    (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")

    def server() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b'{"status": "error", "reason": "bad_version: nope"}\n')

    t = threading.Thread(target=server)
    t.start()
    with pytest.raises(lp.ResponseRejected, match="bad_version"):
        lp.send_response(f"127.0.0.1:{sock.getsockname()[1]}", b"\x00\x00\x00\x02{}", timeout=5)
    t.join()
    sock.close()


@pytest.mark.parametrize("first", [b'{"status": "error", "reason": "busy: too many connections"}\n',
                                   b'{"status": "error", "reason": "timeout: no complete frame in time"}\n'])
def test_protocol_send_response_retries_busy_and_timeout_answers(first: bytes) -> None:
    (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    frames_seen: list[bytes] = []

    def server() -> None:
        for answer in (first, first, b'{"status": "ok"}\n'):
            conn, _ = sock.accept()
            with conn:
                frames_seen.append(conn.recv(100))
                conn.sendall(answer)

    t = threading.Thread(target=server)
    t.start()
    assert lp.send_response(f"127.0.0.1:{sock.getsockname()[1]}", b"\x00\x00\x00\x02{}", timeout=10,
                            initial_backoff=0.05) == {"status": "ok"}
    t.join()
    sock.close()
    assert frames_seen == [b"\x00\x00\x00\x02{}"] * 3


def test_protocol_send_response_gives_up_on_a_gateway_busy_past_its_deadline() -> None:
    (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
    stop = threading.Event()

    def server() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.recv(100)
                conn.sendall(b'{"status": "error", "reason": "busy: too many connections"}\n')

    t = threading.Thread(target=server)
    t.start()
    try:
        with pytest.raises(TimeoutError, match="busy"):
            lp.send_response(f"127.0.0.1:{sock.getsockname()[1]}", b"\x00\x00\x00\x02{}", timeout=1.0,
                             initial_backoff=0.05)
    finally:
        stop.set()
        t.join()
        sock.close()
