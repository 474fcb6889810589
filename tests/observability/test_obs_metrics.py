"""/metrics after real launches (success, failure, timeout, refusal), an interrupt and relay traffic."""

from __future__ import annotations

from typing import Any

from obs_support import scrape, value, write_spec

from helpers.gwclient import GatewayClient
from yarn_gateway.app import builtin_kernelspec_dir


async def _gateway(make_gateway: Any, tmp_path: Any, **app: Any) -> Any:
    specs = tmp_path / "specs"
    write_spec(specs, "obs_crash", "import sys; sys.exit(3)")
    write_spec(specs, "obs_hang", "import time; time.sleep(120)")
    return await make_gateway({"YarnGatewayApp": {"kernelspec_dirs": [builtin_kernelspec_dir(), str(specs)], **app},
                               "YarnServices": {"hadoop_conf_dir": str(tmp_path)}})


async def test_launch_interrupt_failure_counters_and_buckets(make_gateway: Any, tmp_path: Any) -> None:
    gw = await _gateway(make_gateway, tmp_path)
    alice = gw.client("alice")
    before = await scrape(gw)
    assert value(before, "yarn_gateway_kernel_launches_total", outcome="success", kernelspec="python_local") is None

    kid = await alice.start_kernel("python_local")
    assert (await alice.request("POST", f"api/kernels/{kid}/interrupt")).code == 204
    crash = await alice.request("POST", "api/kernels", {"name": "obs_crash"})
    assert crash.code == 500, crash.body
    hang = await alice.request("POST", "api/kernels", {"name": "obs_hang", "env": {"KERNEL_LAUNCH_TIMEOUT": "1"}})
    assert hang.code == 504, hang.body
    assert (await alice.request("POST", "api/kernels", {"name": "no_such_spec"})).code == 404

    m = await scrape(gw)
    launches = "yarn_gateway_kernel_launches_total"
    assert value(m, launches, outcome="success", kernelspec="python_local") == 1
    assert value(m, launches, outcome="failed", kernelspec="obs_crash") == 1
    assert value(m, launches, outcome="timeout", kernelspec="obs_hang") == 1
    assert value(m, launches, outcome="refused", kernelspec="no_such_spec") == 1
    # Only the successful launch is timed (phase "total"); local kernels have no YARN phases.
    assert value(m, "yarn_gateway_kernel_launch_seconds_count", phase="total") == 1
    assert value(m, "yarn_gateway_kernel_launch_seconds_bucket", phase="total", le="+Inf") == 1
    assert value(m, "yarn_gateway_kernel_launch_seconds_bucket", phase="total", le="60.0") == 1
    assert (value(m, "yarn_gateway_kernel_launch_seconds_sum", phase="total") or 0) > 0  # a real, timed launch
    assert value(m, "yarn_gateway_kernel_launch_seconds_count", phase="spark_submit") is None
    assert value(m, "yarn_gateway_kernel_events_total", event="interrupted") == 1
    assert value(m, "yarn_gateway_kernel_events_total", event="start_requested") == 3
    assert value(m, "yarn_gateway_kernel_events_total", event="connected") == 1
    assert value(m, "yarn_gateway_kernel_events_total", event="start_failed") == 2
    assert value(m, "yarn_gateway_kernels", state="idle", user="alice") == 1

    assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
    m = await scrape(gw)
    assert value(m, "yarn_gateway_kernels", state="idle", user="alice") is None
    assert value(m, "yarn_gateway_kernel_events_total", event="shut_down") == 1


async def test_relay_counters_grow_with_traffic(make_gateway: Any, tmp_path: Any) -> None:
    gw = await _gateway(make_gateway, tmp_path)
    alice = gw.client("alice")
    kid = await alice.start_kernel("python_local")
    m0 = await scrape(gw)
    ws = await alice.connect(kid)
    res = await ws.execute("print('x' * 200000)")
    assert res.status == "ok" and len(res.stdout) == 200001
    m1 = await scrape(gw)
    ws.close()

    def grew(name: str, direction: str) -> float:
        return (value(m1, name, direction=direction) or 0) - (value(m0, name, direction=direction) or 0)

    assert grew("yarn_gateway_relay_messages_total", "client_to_kernel") >= 1
    assert grew("yarn_gateway_relay_bytes_total", "client_to_kernel") >= 100  # the execute_request
    assert grew("yarn_gateway_relay_messages_total", "kernel_to_client") >= 4  # busy, input, stream, reply, idle
    assert grew("yarn_gateway_relay_bytes_total", "kernel_to_client") >= 200000
    # Two gateways in one process: each counts only its own traffic (per-app registries).
    other = await _gateway(make_gateway, tmp_path / "other")
    assert (value(await scrape(other), "yarn_gateway_relay_bytes_total", direction="kernel_to_client") or 0) == 0


async def test_metrics_need_authentication_unless_public(make_gateway: Any, tmp_path: Any) -> None:
    gw = await _gateway(make_gateway, tmp_path)
    r = await GatewayClient(gw.url).request("GET", "metrics")
    assert r.code == 401
    assert (await gw.client("alice").request("GET", "metrics", token="wrong-token")).code == 401
    public = await _gateway(make_gateway, tmp_path / "public", metrics_public=True)
    m = await scrape(public, user=None)
    assert value(m, "yarn_gateway_relay_messages_total", direction="client_to_kernel") == 0
    # Everything else still needs a token.
    assert (await GatewayClient(public.url).request("GET", "api/kernels")).code == 401
