"""Metrics, health and logs of YARN launches on the minicluster (launch phases, RM calls, secrets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from obs_support import capture_logs, scrape, value

from helpers.gateway_fixtures import TOKENS
from helpers.minicluster import ClusterThread
from helpers.yarn_specs import PORT_RANGE, make_spec
from yarn_gateway.app import builtin_kernelspec_dir

pytestmark = [pytest.mark.e2e]

SPEC = "spark_python_yarn_cluster"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterThread]:
    env = os.environ.get("YARN_GATEWAY_CLUSTER_ENV", "/opt/yarn-gateway-dev/cluster-venv")
    if not os.access(os.path.join(env, "bin", "python"), os.X_OK):
        pytest.fail("the cluster-side environment is missing: run `make cluster-env` (make test does)")
    mc = ClusterThread(proxyusers={"root": {"users": "alice,bob", "hosts": "*"}}, node_memory_mb=32768,
                       queues=[{"name": "default", "capacity": 100, "maximum-am-resource-percent": 1.0}])
    yield mc
    mc.close()


def _config(cluster: ClusterThread, tmp_path: Any) -> dict[str, Any]:
    bad = tmp_path / "exit_launcher.py"
    bad.write_text("import sys\nsys.exit(3)\n")
    make_spec(tmp_path / "specs", "obs_failing", launcher=str(bad), py_files=[])
    lo, hi = PORT_RANGE
    cfg = cluster.gateway_config(port_range=f"{lo}..{hi}")
    cfg["KernelRegistry"] = {"launch_timeout": 90.0, "shutdown_wait_time": 20.0}
    cfg["YarnGatewayApp"] = {"kernelspec_dirs": [builtin_kernelspec_dir(), str(tmp_path / "specs")]}
    return cfg


async def test_yarn_launch_phases_failure_and_rm_metrics(make_gateway: Any, cluster: ClusterThread,
                                                        tmp_path: Any) -> None:
    gw = await make_gateway(_config(cluster, tmp_path))
    alice = gw.client("alice")
    health = await alice.request("GET", "api/health")
    assert health.code == 200, health.body
    rm_check = next(c for c in health.body["checks"] if c["name"] == "resourcemanager")
    assert rm_check["ok"] is True and rm_check["state"] == "STARTED"

    tokens: list[str] = []
    listener = await gw.registry.yarn_services.listener()
    register = listener.register

    def spy(kernel_id: str, token: str) -> Any:  # records the launch token, then registers it for real
        tokens.append(token)
        return register(kernel_id, token)

    listener.register = spy  # type: ignore[method-assign]
    with capture_logs(gw.app) as buf:
        kid = await alice.start_kernel(SPEC)
        rec = gw.registry.kernels[kid]
        app_id = rec.km.provisioner.app_id
        key = rec.km.get_connection_info()["key"]
        assert (await alice.request("POST", f"api/kernels/{kid}/interrupt")).code == 204
        failed = await alice.request("POST", "api/kernels", {"name": "obs_failing"})
        assert failed.code == 500, failed.body
        m = await scrape(gw)
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204

    launches = "yarn_gateway_kernel_launches_total"
    assert value(m, launches, outcome="success", kernelspec=SPEC) == 1
    assert value(m, launches, outcome="failed", kernelspec="obs_failing") == 1
    for phase in ("spark_submit", "accepted_wait", "launcher_callback", "total"):
        assert value(m, "yarn_gateway_kernel_launch_seconds_bucket", phase=phase, le="+Inf") == (
            2 if phase == "spark_submit" else 1), phase  # the failed launch ran spark-submit too
    assert (value(m, "yarn_gateway_kernel_launch_seconds_sum", phase="spark_submit") or 0) > 0
    assert value(m, "yarn_gateway_kernel_events_total", event="submitted") == 2
    assert value(m, "yarn_gateway_kernel_events_total", event="interrupted") == 1
    assert value(m, "yarn_gateway_kernels", state="idle", user="alice") == 1
    assert value(m, "yarn_gateway_rm_request_seconds_count", method="cluster_information") == 1
    rm_calls = sum(v for (name, _), v in m.items() if name == "yarn_gateway_rm_request_seconds_count")
    assert rm_calls >= 2  # the health probe, and the failed launch's state polls at least

    text = buf.getvalue()
    assert f"Kernel {kid} submitted (app {app_id}, user alice)" in text
    assert f"Kernel {kid} connected (app {app_id}, user alice, kernelspec {SPEC})" in text
    assert f"Kernel {kid} shut down (app {app_id}, user alice" in text
    # No secret reached any log line: launch tokens (both launches), the kernel key, user tokens.
    assert len(tokens) == 2 and all(len(t) >= 32 for t in tokens)
    key_text = key.decode() if isinstance(key, bytes) else str(key)
    for secret in (*tokens, key_text, *TOKENS.values()):
        assert secret not in text
