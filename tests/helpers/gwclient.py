"""A small REST + websocket client for the gateway API, as desktop Jupyter uses it."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

V1 = "v1.kernel.websocket.jupyter.org"


@dataclass
class Reply:
    code: int
    body: Any
    headers: Any

    @property
    def json(self) -> Any:
        return self.body


class GatewayClient:
    def __init__(self, base_url: str, token: Optional[str] = None) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.token = token

    def headers(self, token: Optional[str] = None) -> dict[str, str]:
        tok = self.token if token is None else token
        return {"Authorization": f"token {tok}"} if tok else {}

    async def request(self, method: str, path: str, body: Any = None, *, token: Optional[str] = None,
                      raw: Optional[bytes] = None, timeout: float = 120) -> Reply:
        data: Optional[bytes]
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        else:
            data = b"" if method in ("POST", "PUT", "PATCH") else None
        req = HTTPRequest(self.base_url + path.lstrip("/"), method=method, headers=self.headers(token), body=data,
                          request_timeout=timeout, allow_nonstandard_methods=True)
        try:
            resp: HTTPResponse = await AsyncHTTPClient().fetch(req, raise_error=False)
        except HTTPClientError as exc:  # pragma: no cover - raise_error=False
            assert exc.response is not None
            resp = exc.response
        text = resp.body.decode(errors="replace") if resp.body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(resp.code, parsed, resp.headers)

    async def start_kernel(self, name: str = "python_local", env: Optional[dict[str, str]] = None,
                           token: Optional[str] = None) -> str:
        r = await self.request("POST", "api/kernels", {"name": name, "env": env or {}}, token=token)
        assert r.code == 201, (r.code, r.body)
        return str(r.body["id"])

    async def connect(self, kernel_id: str, session_id: Optional[str] = None, *, token: Optional[str] = None,
                      protocol: str = "") -> KernelWS:
        url = self.base_url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels"
        sid = session_id or uuid.uuid4().hex
        url += "?session_id=" + urllib.parse.quote(sid, safe="")
        req = HTTPRequest(url, headers=self.headers(token))
        conn = await websocket_connect(req, subprotocols=[protocol] if protocol else None,
                                       max_message_size=256 * 1024 * 1024)
        return KernelWS(conn, sid, protocol)


@dataclass
class ExecResult:
    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    error: Optional[dict[str, Any]] = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.results)


class KernelWS:
    def __init__(self, conn: WebSocketClientConnection, session_id: str, protocol: str) -> None:
        self.conn = conn
        self.session_id = session_id
        self.protocol = protocol

    def close(self) -> None:
        self.conn.close()

    def message(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> dict[str, Any]:
        return {
            "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "test",
                       "session": self.session_id, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
        }

    async def send_execute(self, code: str) -> dict[str, Any]:
        """Send an execute_request for ``code`` (not waiting for anything); return the message."""
        msg = self.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False})
        await self.send(msg)
        return msg

    async def send(self, msg: dict[str, Any]) -> None:
        if self.protocol == V1:
            parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
            chan = msg["channel"].encode()
            offsets = [8 * (1 + 1 + len(parts) + 1)]
            offsets.append(offsets[-1] + len(chan))
            for p in parts:
                offsets.append(offsets[-1] + len(p))
            head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
            await self.conn.write_message(b"".join([head, chan, *parts]), binary=True)
        else:
            await self.conn.write_message(json.dumps(msg))

    async def recv(self, timeout: float = 60) -> Optional[dict[str, Any]]:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        if isinstance(raw, str):
            return json.loads(raw)  # type: ignore[no-any-return]
        if self.protocol == V1:
            (n,) = struct.unpack_from("<Q", raw, 0)
            offs = list(struct.unpack_from(f"<{n}Q", raw, 8))
            chunks = [raw[a:b] for a, b in zip(offs[:-1], offs[1:])]
            msg = {k: json.loads(c) for k, c in zip(("header", "parent_header", "metadata", "content"), chunks[1:5])}
            msg["channel"] = chunks[0].decode()
            msg["buffers"] = chunks[5:]
            msg["msg_type"] = msg["header"]["msg_type"]
            return msg
        (nbufs,) = struct.unpack_from("!I", raw, 0)
        offs = [*struct.unpack_from(f"!{nbufs}I", raw, 4), len(raw)]
        parts = [raw[a:b] for a, b in zip(offs[:-1], offs[1:])]
        msg = json.loads(parts[0])
        msg["buffers"] = parts[1:]
        return msg  # type: ignore[no-any-return]

    async def execute(self, code: str, timeout: float = 60) -> ExecResult:
        msg = self.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        await self.send(msg)
        return await self.collect(msg["header"]["msg_id"], timeout)

    async def execute_all(self, code: str, timeout: float = 60, linger: float = 2.0) -> ExecResult:
        """Execute and collect everything published for the cell, including what comes up to ``linger``
        seconds after its reply and idle status (output some kernels, Toree among them, publish late)."""
        msg = self.message("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        await self.send(msg)
        res: ExecResult = await self.collect(msg["header"]["msg_id"], timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger
        while loop.time() < deadline:
            try:
                m = await self.recv(max(0.05, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            if m is None or m.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                continue
            res.messages.append(m)
            if m["msg_type"] == "stream":
                if m["content"]["name"] == "stdout":
                    res.stdout += m["content"]["text"]
                else:
                    res.stderr += m["content"]["text"]
            elif m["msg_type"] in ("execute_result", "display_data"):
                res.results.append(m["content"]["data"].get("text/plain", ""))
        return res

    async def stream_until(self, text: str, timeout: float = 10) -> str:
        """The stream output received until it contains ``text`` (each message within ``timeout``)."""
        got = ""
        while text not in got:
            m = await self.recv(timeout)
            assert m is not None, f"websocket closed before {text!r} was printed"
            if m["msg_type"] == "stream":
                got += m["content"]["text"]
        return got

    async def collect(self, msg_id: str, timeout: float = 60) -> ExecResult:
        res = ExecResult(status="")
        idle = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (res.status and idle):
            m = await self.recv(max(0.1, deadline - loop.time()))
            if m is None:
                raise ConnectionError("websocket closed")
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            res.messages.append(m)
            mt, c = m["msg_type"], m["content"]
            if mt == "stream":
                if c["name"] == "stdout":
                    res.stdout += c["text"]
                else:
                    res.stderr += c["text"]
            elif mt in ("execute_result", "display_data"):
                res.results.append(c["data"].get("text/plain", ""))
            elif mt == "error":
                res.error = c
            elif mt == "execute_reply":
                res.status = c["status"]
            elif mt == "status" and c["execution_state"] == "idle":
                idle = True
        return res
