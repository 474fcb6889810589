"""Kernel parameters through the real gateway: the kernelspecs API, 400s, and the spark-submit argv.

spark-submit is a stub that records its argv and fails (helpers.stub_spark), so these
run in seconds; tests/params/test_params_yarn.py shows the values reaching YARN.
"""

from __future__ import annotations

from typing import Any

from helpers.stub_spark import StubSpark, conf_of, option

SPEC = "spark_python_yarn_cluster"


async def test_kernelspecs_api_shows_parameters_with_admin_bounds(make_gateway: Any) -> None:
    gw = await make_gateway({"KernelParameters": {"bounds": {"spark.driver.memory": {"max": "4g"}}}})
    alice = gw.client("alice")
    r = await alice.request("GET", "api/kernelspecs")
    assert r.code == 200
    params = r.body["kernelspecs"][SPEC]["spec"]["metadata"]["yarn_gateway"]["parameters"]
    assert params["driver_memory"]["max"] == "4g" and params["driver_memory"]["min"] == "512m"
    assert params["driver_memory"]["default"] == "1g" and params["driver_memory"]["env"] == "KERNEL_SPARK_DRIVER_MEMORY"
    assert params["executor_instances"] == {**params["executor_instances"], "min": 0, "max": 16, "default": 2}
    assert params["queue"]["maps_to"] == "queue"
    assert "yarn_gateway" not in r.body["kernelspecs"]["python_local"]["spec"]["metadata"]
    one = await alice.request("GET", f"api/kernelspecs/{SPEC}")
    assert one.code == 200 and one.body["spec"]["metadata"]["yarn_gateway"]["parameters"] == params


async def test_refused_parameters_answer_400_before_any_submit(make_gateway: Any, tmp_path: Any) -> None:
    stub = StubSpark(tmp_path)
    gw = await make_gateway(stub.config())
    alice = gw.client("alice")
    for env, expect in (({"KERNEL_SPARK_DRIVER_MEMORY": "64g"}, "from 512m to 8g"),
                        ({"KERNEL_SPARK_EXECUTOR_CORES": "lots"}, "from 1 to 8"),
                        ({"KERNEL_SPARK_YARN_QUEUE": "a queue"}, "matching"),
                        ({"KERNEL_SPARK_SHUFFLE_PARTITIONS": "9"}, "is not a parameter of this kernelspec")):
        r = await alice.request("POST", "api/kernels", {"name": SPEC, "env": env})
        assert r.code == 400, (env, r.code, r.body)
        assert expect in r.body["message"] and next(iter(env)) in r.body["message"], r.body
        assert r.body["reason"] == "Bad kernel parameter"
    assert stub.argvs() == [] and gw.registry.kernels == {}


async def test_accepted_parameters_become_spark_submit_options(make_gateway: Any, tmp_path: Any) -> None:
    stub = StubSpark(tmp_path)
    gw = await make_gateway(stub.config())
    env = {"KERNEL_SPARK_DRIVER_MEMORY": "2048", "KERNEL_SPARK_EXECUTOR_INSTANCES": "3",
           "KERNEL_SPARK_YARN_QUEUE": "analytics", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "yes"}
    r = await gw.client("alice").request("POST", "api/kernels", {"name": SPEC, "env": env})
    assert r.code == 500 and "stub spark-submit" in r.body["message"]  # the stub refuses after recording
    [argv] = stub.argvs()
    assert option(argv, "--queue") == "analytics" and option(argv, "--proxy-user") == "alice"
    conf = conf_of(argv)
    assert conf["spark.driver.memory"] == "2g" and conf["spark.executor.instances"] == "3"
    assert conf["spark.dynamicAllocation.enabled"] == "true"
    assert conf["spark.executor.memory"] == "1g" and conf["spark.driver.cores"] == "1"  # defaults
    # Without choices: the defaults, and no --queue (the kernelspec names none).
    r = await gw.client("alice").request("POST", "api/kernels", {"name": SPEC, "env": {}})
    assert r.code == 500
    second = next(a for a in stub.argvs() if a != argv)
    assert option(second, "--queue") is None and conf_of(second)["spark.driver.memory"] == "1g"
