"""Lifecycle log lines: one per event with kernel id and user; JSON format; no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

from obs_support import capture_logs

from helpers.gateway_fixtures import TOKENS
from yarn_gateway.logs import JsonFormatter


async def test_json_lines_carry_kernel_id_and_user(make_gateway: Any, tmp_path: Any) -> None:
    gw = await make_gateway({"YarnGatewayApp": {"log_json": True}, "YarnServices": {"hadoop_conf_dir": str(tmp_path)}})
    formatters = [h.formatter for h in gw.app.log.handlers]
    assert formatters and all(isinstance(f, JsonFormatter) for f in formatters)
    alice = gw.client("alice")
    with capture_logs(gw.app, formatters[0]) as buf:
        kid = await alice.start_kernel("python_local")
        assert (await alice.request("POST", f"api/kernels/{kid}/interrupt")).code == 204
        assert (await alice.request("POST", f"api/kernels/{kid}/restart")).code == 200
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(obj) for obj in lines)
    events = [obj for obj in lines if obj.get("kernel_id") == kid and "event" in obj]
    assert [e["event"] for e in events] == ["start_requested", "connected", "interrupted", "restarted", "shut_down"]
    for e in events:
        assert e["user"] == "alice" and e["kernelspec"] == "python_local" and e["level"] == "INFO"
        assert e["message"].startswith(f"Kernel {kid} ") and "user alice" in e["message"]
        assert e["ts"].endswith("Z")


async def test_text_lines_name_kernel_and_user(make_gateway: Any, tmp_path: Any) -> None:
    gw = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)}})
    bob = gw.client("bob")
    with capture_logs(gw.app, logging.Formatter("%(message)s")) as buf:
        kid = await bob.start_kernel("python_local")
        assert (await bob.request("DELETE", f"api/kernels/{kid}")).code == 204
    text = buf.getvalue()
    for event in ("start requested", "connected", "shut down"):
        assert f"Kernel {kid} {event} (user bob, kernelspec python_local)" in text, text


async def test_no_secret_in_logs_during_a_launch(make_gateway: Any, tmp_path: Any) -> None:
    gw = await make_gateway({"YarnServices": {"hadoop_conf_dir": str(tmp_path)}})
    alice = gw.client("alice")
    with capture_logs(gw.app) as buf:
        kid = await alice.start_kernel("python_local")
        ws = await alice.connect(kid)
        assert (await ws.execute("1 + 1")).text == "2"
        ws.close()
        assert (await alice.request("GET", "api/kernels", token="not-a-valid-token-123456")).code == 401
        key = gw.registry.kernels[kid].km.get_connection_info()["key"]
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
    text = buf.getvalue()
    assert f"Kernel {kid} connected" in text and len(text) > 500  # the capture saw the launch (DEBUG included)
    key_text = key.decode() if isinstance(key, bytes) else str(key)
    assert len(key_text) >= 16 and key_text not in text
    for token in (*TOKENS.values(), "not-a-valid-token-123456"):
        assert token not in text
