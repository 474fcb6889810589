"""The launcher control port (launcher_protocol.ControlServer, used by the Python and R
launchers) and the gateway's control client under hostile peers (issue 15, items 9 and 10):
slow-drip connections no longer hold its slots, one address cannot take them all, the
gateway retries ``busy``, and deeply nested JSON gets an answer instead of killing a thread."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.floods import OTHER_HOST, BusyFront, Flood
from helpers.waiting import wait_until
from yarn_gateway.provisioners.control_client import ControlRequestError, send_control
from yarn_gateway_launchers import launcher_protocol as lp

KID, KEY = "kernel-under-attack", "k" * 64
# A plausible request start, long enough that dripping it takes far longer than any deadline.
DRIP = b'{"kernel_id": "' + b"x" * 400


class Served:
    def __init__(self) -> None:
        (sock,) = lp.bind_sockets_in_range(1, (0, 0), "127.0.0.1")
        self.signals: list[int] = []
        self.got_signal = threading.Event()
        self.server = lp.ControlServer(sock, lp.ControlVerifier(KID, KEY), self._on_signal, lambda: None)

    def _on_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.got_signal.set()

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    s.server.start()
    yield s
    s.server.stop()


async def test_control_port_slow_drip_flood_does_not_stop_an_interrupt(served: Served) -> None:
    # 20 slow-drip connections from another address and 20 from the gateway's own address that
    # reconnect whenever they are dropped: before, 16 of them held every slot for as long as
    # they kept dripping (the timeout was per recv) and interrupts failed with "busy".
    async with Flood("127.0.0.1", served.port, 20, source=OTHER_HOST, drip=DRIP, interval=0.4) as other, \
            Flood("127.0.0.1", served.port, 20, source="127.0.0.1", drip=DRIP, interval=0.4, churn=True):
        await asyncio.sleep(0.5)
        for _ in range(3):
            answer = await send_control("127.0.0.1", served.port, KID, KEY, "signal", int(signal.SIGUSR1),
                                        timeout=10)
            assert answer == {"status": "ok"}
        assert await send_control("127.0.0.1", served.port, KID, KEY, "ping", timeout=10) == {"status": "ok"}
        assert served.got_signal.wait(5) and served.signals == [int(signal.SIGUSR1)] * 3
        assert len(served.server.limiter) <= 16
        assert other.open_now <= 4  # one address holds at most its share
        # The drippers that kept a slot are cut off at the request deadline (5 s from connecting),
        # long before they could have sent their line.
        await wait_until(lambda: other.open_now == 0, 8, interval=0.1,
                         what=lambda: f"the port cut the other address's drippers ({other.open_now} still open)")
    assert lp.E_TIMEOUT in other.stats.codes() and other.stats.codes() <= {lp.E_TIMEOUT, lp.E_BUSY}
    cut = [n for n, a in zip(other.stats.bytes_before_answer, other.stats.answers)
           if str(a.get("reason", "")).startswith(lp.E_TIMEOUT)]
    assert cut and max(cut) < 20


def _ask(port: int, line: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line)
        answer = s.makefile("rb").readline()
    assert answer, "the control port closed the connection without an answer"
    return dict(json.loads(answer))


def test_control_port_answers_deeply_nested_json_and_keeps_serving(served: Served) -> None:
    for line in (b"[" * 4000 + b"\n", b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"\n"):
        answer = _ask(served.port, line)
        assert answer["status"] == "error" and answer["reason"].startswith(lp.E_BAD_REQUEST), answer
    ping = lp.sign_control_request(KID, KEY, "ping")
    assert _ask(served.port, json.dumps(ping).encode() + b"\n") == {"status": "ok"}


async def test_control_client_retries_busy_within_its_deadline(served: Served) -> None:
    async with BusyFront("127.0.0.1", served.port, busy_first=3) as front:
        answer = await send_control("127.0.0.1", front.port, KID, KEY, "signal", int(signal.SIGUSR2), timeout=10)
        assert answer == {"status": "ok"}
        assert front.busy_sent == 3 and front.relayed == 1
    assert served.got_signal.wait(5) and served.signals == [int(signal.SIGUSR2)]

    # Busy for longer than the deadline: a clear error naming the kernel, in time.
    async with BusyFront("127.0.0.1", served.port, busy_first=1000) as front:
        with pytest.raises(ControlRequestError, match=f"kernel {KID}.*busy"):
            await asyncio.wait_for(send_control("127.0.0.1", front.port, KID, KEY, "ping", timeout=1.5), 5)
        assert front.busy_sent >= 2 and front.relayed == 0


async def test_control_client_does_not_retry_a_refusal(served: Served) -> None:
    # Errors other than busy/timeout are final: a lost answer may mean the request was carried out.
    bad_mac = b'{"status": "error", "reason": "bad_mac: MAC does not verify"}\n'
    async with BusyFront("127.0.0.1", served.port, busy_first=5, answer=bad_mac) as front:
        with pytest.raises(ControlRequestError, match="bad_mac"):
            await send_control("127.0.0.1", front.port, KID, KEY, "ping", timeout=10)
        assert front.busy_sent == 1
