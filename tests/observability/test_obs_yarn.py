"""Metrics, health and logs of YARN launches on the real dev cluster (launch phases, RM calls, secrets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from obs_support import capture_logs, scrape, value

from helpers.gateway_fixtures import TOKENS
from helpers.steps import behaviour
from helpers.yarn_cluster import YarnCluster
from helpers.yarn_specs import PORT_RANGE, make_spec, wait_app_state
from yarn_gateway.app import builtin_kernelspec_dir

pytestmark = [pytest.mark.e2e, pytest.mark.jvm]

SPEC = "spark_python_yarn_cluster"
#: No executor JVM: this kernel runs no Spark job (dynamic allocation starts none until one does).
NO_EXECUTORS = {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true",
                "KERNEL_SPARK_DYNAMIC_ALLOCATION_MAX_EXECUTORS": "1"}


@pytest.fixture
def cluster(yarn_cluster: YarnCluster) -> Iterator[YarnCluster]:
    yield yarn_cluster
    yarn_cluster.kill_live_apps()


def _config(cluster: YarnCluster, tmp_path: Any) -> dict[str, Any]:
    bad = tmp_path / "exit_launcher.py"
    bad.write_text("import sys\nsys.exit(3)\n")
    make_spec(tmp_path / "specs", "obs_failing", launcher=str(bad), py_files=[])
    lo, hi = PORT_RANGE
    cfg = cluster.gateway_config(port_range=f"{lo}..{hi}")
    cfg["KernelRegistry"] = {"shutdown_wait_time": 20.0}
    cfg["YarnGatewayApp"] = {"kernelspec_dirs": [builtin_kernelspec_dir(), str(tmp_path / "specs")]}
    return cfg


async def test_yarn_launch_phases_failure_and_rm_metrics(make_gateway: Any, cluster: YarnCluster,
                                                        tmp_path: Any) -> None:
    gw = await make_gateway(_config(cluster, tmp_path))
    alice = gw.client("alice")
    with behaviour('health reports the ResourceManager'):
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
        kid = await alice.start_kernel(SPEC, NO_EXECUTORS)
        rec = gw.registry.kernels[kid]
        app_id = rec.km.provisioner.app_id
        key = rec.km.get_connection_info()["key"]
        assert (await alice.request("POST", f"api/kernels/{kid}/interrupt")).code == 204
        with behaviour("a failed launch says YARN's summary and the AM's words, no stack"):
            failed = await alice.request("POST", "api/kernels", {"name": "obs_failing", "env": NO_EXECUTORS})
            assert failed.code == 500, failed.body
            # The launcher exited 3 in the AM container: the message gives YARN's summary and the AM's
            # own words for it, not the container log's INFO lines and stack frames YARN wraps them in.
            message = failed.body["message"]
            failed_app = message.split("YARN application ", 1)[1].split(")", 1)[0]
            assert f"{failed_app}) ended FAILED/FAILED before the kernel started" in message, message
            assert "ERROR ApplicationMaster: User application exited with status 3" in message, message
            assert " INFO " not in message and "\tat " not in message and len(message.splitlines()) <= 8, message
            assert (await asyncio.to_thread(cluster.app_json, failed_app))["state"] == "FAILED"
        m = await scrape(gw)
        # Lazy Spark starts by itself: once the AM registered (RUNNING), stopping the kernel ends it FINISHED.
        await wait_app_state(cluster, app_id, {"RUNNING"}, timeout=120)
        assert (await alice.request("DELETE", f"api/kernels/{kid}")).code == 204
        final = await wait_app_state(cluster, app_id, {"FINISHED", "FAILED", "KILLED"})
        assert (final["state"], final["finalStatus"]) == ("FINISHED", "SUCCEEDED")

    launches = "yarn_gateway_kernel_launches_total"
    with behaviour('launch phases, events and RM calls are in the metrics'):
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
    with behaviour('kernel events are logged, and no secret is'):
        assert f"Kernel {kid} submitted (app {app_id}, user alice)" in text
        assert f"Kernel {kid} connected (app {app_id}, user alice, kernelspec {SPEC})" in text
        assert f"Kernel {kid} shut down (app {app_id}, user alice" in text
        # No secret reached any log line: launch tokens (both launches), the kernel key, user tokens.
        assert len(tokens) == 2 and all(len(t) >= 32 for t in tokens)
        key_text = key.decode() if isinstance(key, bytes) else str(key)
        for secret in (*tokens, key_text, *TOKENS.values()):
            assert secret not in text
