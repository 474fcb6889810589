"""The packet tap the encryption tests rely on sees loopback TCP payload, and only its ports'."""

from __future__ import annotations

import socket

import pytest

from helpers.sniff import LoopbackCapture, capture_available
from helpers.waiting import wait_until_sync

pytestmark = pytest.mark.skipif(not capture_available(), reason="needs root (AF_PACKET); CI runs as root")


def test_the_tap_sees_both_directions_on_its_ports_and_nothing_else() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    watched = probe.getsockname()[1]
    probe.close()
    with LoopbackCapture({watched}) as other:  # a port nobody uses in this exchange
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        srv.close()
        with LoopbackCapture({port}) as tap:
            srv = socket.create_server(("127.0.0.1", port))
            cli = socket.create_connection(("127.0.0.1", port))
            conn, _ = srv.accept()
            cli.sendall(b"hello-secret-marker")
            assert conn.recv(64) == b"hello-secret-marker"
            conn.sendall(b"reply-data")
            assert cli.recv(64) == b"reply-data"
            wait_until_sync(lambda: b"reply-data" in tap.payload(), 5, "the tap saw the reply")
            for s in (cli, conn, srv):
                s.close()
        assert b"hello-secret-marker" in tap.payload() and tap.packets >= 2
        assert tap.payload().count(b"hello-secret-marker") == 1  # each packet once, not twice on lo
    assert other.payload() == b"" and other.packets == 0
