"""JSON nested too deeply to parse, from a client or from a kernel (issue 15, item 10)."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import pytest

from helpers.gwclient import V1, KernelWS
from yarn_gateway.relay.wire import PARSE_MAX, V1_PROTOCOL, MessageRefused, decode_client_message

DEEP = "[" * 100_000 + "]" * 100_000


def _v1(parts: list[bytes], channel: bytes = b"shell") -> bytes:
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(channel))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join([channel, *parts])


def _deep_messages(ws: KernelWS) -> list[str | bytes]:
    msg = ws.message("execute_request", {"code": "1"})
    header = json.dumps(msg["header"])
    legacy = json.dumps({k: v for k, v in msg.items() if k != "content"})[:-1] + f', "content": {{"x": {DEEP}}}}}'
    body = legacy.encode()
    legacy_binary = struct.pack("!III", 2, 12, 12 + len(body)) + body + b"buf"
    return [
        legacy,  # legacy text
        legacy_binary,  # legacy binary (a buffer after the JSON)
        _v1([DEEP.encode(), b"{}", b"{}", b"{}"]),  # v1, the header itself
        _v1([header.encode(), b"{}", b"{}", ('{"x": ' + "[" * 30_000 + "]" * 30_000 + "}").encode()]),  # small part
    ]


@pytest.mark.parametrize("which", range(4))
async def test_deeply_nested_json_from_a_client_is_refused_and_the_connection_kept(gateway: Any, which: int) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    protocol = "" if which < 2 else V1
    ws = await c.connect(kid, protocol=protocol)
    payload = _deep_messages(ws)[which]
    await ws.conn.write_message(payload, binary=isinstance(payload, bytes))
    while True:  # a notice says what happened ...
        m = await ws.recv(10)
        assert m is not None, f"the gateway closed the connection ({ws.conn.close_code} {ws.conn.close_reason})"
        if m["msg_type"] == "stream":
            break
    assert m["content"]["name"] == "stderr"
    text = m["content"]["text"]
    assert f"Kernel {kid}: a message from this client was refused" in text and "nested too deeply" in text
    res = await ws.execute("6*7")  # ... and the same connection goes on
    assert res.status == "ok" and res.text == "42"
    ws.close()
    bob = gateway.client("bob")
    bob_kid = await bob.start_kernel()
    ws2 = await bob.connect(bob_kid)
    assert (await ws2.execute("1+1")).text == "2"
    ws2.close()
    for cl, k in ((c, kid), (bob, bob_kid)):
        await cl.request("DELETE", f"api/kernels/{k}")


def test_v1_parts_past_the_parse_limit_are_passed_on_unparsed() -> None:
    header = json.dumps({"msg_id": "1", "msg_type": "comm_msg"}).encode()
    content = ('{"data": ' + "[" * (PARSE_MAX // 2) + "]" * (PARSE_MAX // 2) + "}").encode()
    channel, frames = decode_client_message(_v1([header, b"{}", b"{}", content]), V1_PROTOCOL)
    assert channel == "shell" and frames[3] == content  # as it came: the kernel reads it
    with pytest.raises(MessageRefused):  # the header is always parsed
        decode_client_message(_v1([DEEP.encode(), b"{}", b"{}", b"{}"]), V1_PROTOCOL)


PUBLISH_DEEP = f"""
k = get_ipython().kernel
s = k.session
deep = {DEEP[:20_000]!r} + {DEEP[-20_000:]!r}
status_header = s.msg_header('status')
status_header['date'] = ''
for parts in ([deep.encode(), b'{{}}', b'{{}}', b'{{}}'],
              [json.dumps(status_header).encode(), b'{{}}', b'{{}}', ('{{"execution_state": ' + deep + '}}').encode()]):
    k.iopub_socket.send_multipart([b'kernel.x.status', b'<IDS|MSG>', s.sign(parts), *parts])
print('after')
"""


async def _collect(ws: KernelWS, msg_id: str) -> tuple[str, str, int]:
    """(reply status, stdout, messages too deep for this client to read) of one request."""
    status, stdout, deep, idle = "", "", 0, False
    while not (status and idle):
        raw = await asyncio.wait_for(ws.conn.read_message(), 30)
        assert isinstance(raw, str)
        try:
            m = json.loads(raw)
        except RecursionError:  # relayed as the kernel sent it (the content is not the gateway's to read)
            deep += 1
            continue
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            stdout += m["content"]["text"]
        elif m["msg_type"] == "execute_reply":
            status = m["content"]["status"]
        elif m["msg_type"] == "status":
            idle = m["content"]["execution_state"] == "idle"
    return status, stdout, deep


async def test_deeply_nested_json_from_a_kernel_is_dropped_and_the_relay_goes_on(gateway: Any, caplog: Any) -> None:
    c = gateway.client()
    kid = await c.start_kernel()
    ws = await c.connect(kid)
    assert (await ws.execute("import json")).status == "ok"
    msg = await ws.send_execute(PUBLISH_DEEP)
    status, stdout, deep = await _collect(ws, msg["header"]["msg_id"])
    assert status == "ok" and deep <= 1  # the status with deep content (its header was fine)
    assert stdout == "after\n"  # published right after: the kernel connection was not dropped
    assert "dropped an invalid iopub message: invalid header: its JSON is nested too deeply" in caplog.text
    assert "Fatal error" not in caplog.text
    assert (await ws.execute("6*7")).text == "42"
    ws.close()
    await c.request("DELETE", f"api/kernels/{kid}")
