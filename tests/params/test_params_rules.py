"""Kernel parameter rules (yarn_gateway.kernels.params), each with both outcomes."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from traitlets.config import Config

from yarn_gateway.app import builtin_kernelspec_dir
from yarn_gateway.errors import GatewayError
from yarn_gateway.kernels.params import BUILTINS, KernelParameters, memory_bytes, memory_text


def meta(**params: Any) -> dict[str, Any]:
    return {"yarn_gateway": {"parameters": params}}


def kp(**cfg: Any) -> KernelParameters:
    c = Config()
    for k, v in cfg.items():
        setattr(c.KernelParameters, k, v)
    return KernelParameters(config=c)


def refused(params: KernelParameters, metadata: dict[str, Any], env: dict[str, str], status: int = 400) -> str:
    with pytest.raises(GatewayError) as info:
        params.resolve("spec", metadata, env)
    assert info.value.status == status, info.value.message
    return info.value.message


STANDARD = meta(driver_memory={}, driver_cores={}, executor_instances={}, dynamic_allocation={},
                dynamic_allocation_min_executors={}, dynamic_allocation_max_executors={}, queue={},
                mode={"type": "enum", "choices": ["FAIR", "FIFO"], "env": "KERNEL_SPARK_SCHEDULER_MODE",
                      "maps_to": "spark.scheduler.mode"})
TARGETS = [*{str(d["maps_to"]) for d in BUILTINS.values()}, "spark.scheduler.mode"]


def test_memory_sizes_parse_like_spark() -> None:
    assert memory_bytes("2g") == 2 << 30 and memory_bytes("2048") == 2 << 30 and memory_bytes("512MB") == 512 << 20
    assert memory_text(1536 << 20) == "1536m" and memory_text(8 << 30) == "8g"
    for bad in ("2.5g", "-1g", "2 gigs", "", "1p"):
        with pytest.raises(ValueError):
            memory_bytes(bad)


@pytest.mark.parametrize(("env_value", "canonical"), [("2g", "2g"), ("2048", "2g"), ("2GB", "2g"), ("512m", "512m"),
                                                       ("8g", "8g"), (" 3g ", "3g")])
def test_memory_value_in_range_is_accepted_in_canonical_form(env_value: str, canonical: str) -> None:
    chosen = kp(allowed_targets=TARGETS).resolve("spec", STANDARD, {"KERNEL_SPARK_DRIVER_MEMORY": env_value})
    assert chosen.conf["spark.driver.memory"] == canonical


@pytest.mark.parametrize("env_value", ["64g", "9g", "100m", "511m", "two", "2.5g", "-1g", ""])
def test_memory_value_out_of_range_or_malformed_is_refused_with_the_range(env_value: str) -> None:
    msg = refused(kp(allowed_targets=TARGETS), STANDARD, {"KERNEL_SPARK_DRIVER_MEMORY": env_value})
    assert "KERNEL_SPARK_DRIVER_MEMORY" in msg and "from 512m to 8g" in msg


def test_int_bounds_both_ways() -> None:
    params = kp(allowed_targets=TARGETS)
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_DRIVER_CORES": "4"}).conf["spark.driver.cores"] == "4"
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_DRIVER_CORES": "1"}).conf["spark.driver.cores"] == "1"
    for bad in ("5", "0", "1.5", "two", "0x2"):
        msg = refused(params, STANDARD, {"KERNEL_SPARK_DRIVER_CORES": bad})
        assert "from 1 to 4" in msg, msg


def test_bool_values() -> None:
    params = kp(allowed_targets=TARGETS)
    for word, value in (("TRUE", "true"), ("yes", "true"), ("0", "false"), ("off", "false")):
        chosen = params.resolve("s", STANDARD, {"KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": word})
        assert chosen.conf["spark.dynamicAllocation.enabled"] == value
    assert "true or false" in refused(params, STANDARD, {"KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "maybe"})


def test_enum_choices() -> None:
    params = kp(allowed_targets=TARGETS)
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_SCHEDULER_MODE": "FAIR"}).conf["spark.scheduler.mode"] == "FAIR"
    assert "one of FAIR, FIFO" in refused(params, STANDARD, {"KERNEL_SPARK_SCHEDULER_MODE": "fair"})


def test_string_queue_goes_to_queue_not_conf() -> None:
    params = kp(allowed_targets=TARGETS)
    chosen = params.resolve("s", STANDARD, {"KERNEL_SPARK_YARN_QUEUE": "analytics.team-1"})
    assert chosen.queue == "analytics.team-1" and "queue" not in chosen.conf
    for bad in ("bad queue", "-x", "a\nb", "q" * 200):
        assert "matching" in refused(params, STANDARD, {"KERNEL_SPARK_YARN_QUEUE": bad})


def test_unknown_parameters_are_refused_other_kernel_env_passes() -> None:
    params = kp(allowed_targets=TARGETS)
    msg = refused(params, STANDARD, {"KERNEL_SPARK_EXECUTOR_CORES": "2"})  # a built-in this spec does not declare
    assert "KERNEL_SPARK_EXECUTOR_CORES is not a parameter of this kernelspec" in msg
    assert "KERNEL_SPARK_DRIVER_MEMORY" in msg  # lists what is declared
    assert "KERNEL_SPARK_WHATEVER" in refused(params, STANDARD, {"KERNEL_SPARK_WHATEVER": "1"})
    chosen = params.resolve("s", STANDARD, {"KERNEL_WORKING_DIR": "/x", "KERNEL_FOO": "bar"})
    assert chosen.conf["spark.driver.memory"] == "1g"


def test_every_problem_is_listed() -> None:
    msg = refused(kp(allowed_targets=TARGETS), STANDARD,
                  {"KERNEL_SPARK_DRIVER_MEMORY": "99g", "KERNEL_SPARK_DRIVER_CORES": "9", "KERNEL_SPARK_NOPE": "1"})
    assert msg.count("\n- ") == 3


def test_defaults_apply_and_null_default_sets_nothing() -> None:
    chosen = kp(allowed_targets=TARGETS).resolve("s", STANDARD, {})
    assert chosen.conf == {"spark.driver.memory": "1g", "spark.driver.cores": "1", "spark.executor.instances": "2",
                           "spark.dynamicAllocation.enabled": "false", "spark.dynamicAllocation.minExecutors": "0",
                           "spark.dynamicAllocation.maxExecutors": "8"}
    assert chosen.queue is None  # the built-in queue has no default: the kernelspec's or cluster's queue


def test_dynamic_allocation_min_must_not_exceed_max() -> None:
    params = kp(allowed_targets=TARGETS)
    ok = {"KERNEL_SPARK_DYNAMIC_ALLOCATION_MIN_EXECUTORS": "4", "KERNEL_SPARK_DYNAMIC_ALLOCATION_MAX_EXECUTORS": "4"}
    assert params.resolve("s", STANDARD, ok).conf["spark.dynamicAllocation.minExecutors"] == "4"
    bad = {"KERNEL_SPARK_DYNAMIC_ALLOCATION_MIN_EXECUTORS": "9"}  # above the default max of 8
    assert "is more than spark.dynamicAllocation.maxExecutors=8" in refused(params, STANDARD, bad)


def test_zero_executors_need_dynamic_allocation() -> None:
    # spark-submit itself refuses spark.executor.instances=0 without dynamic allocation
    # ("Number of executors must be a positive number"); with it, 0 is the initial number.
    params = kp(allowed_targets=TARGETS)
    msg = refused(params, STANDARD, {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0"})
    assert ("KERNEL_SPARK_EXECUTOR_INSTANCES=0 (spark.executor.instances) needs "
            "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED=true") in msg, msg
    assert "KERNEL_SPARK_EXECUTOR_INSTANCES" in refused(
        params, STANDARD, {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0", "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "no"})
    chosen = params.resolve("s", STANDARD, {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0",
                                            "KERNEL_SPARK_DYNAMIC_ALLOCATION_ENABLED": "true"})
    assert (chosen.conf["spark.executor.instances"], chosen.conf["spark.dynamicAllocation.enabled"]) == ("0", "true")
    # A kernelspec that leaves dynamic allocation to its own spark_conf (no parameter for it) is not second-guessed.
    only_instances = meta(executor_instances={})
    assert params.resolve("s", only_instances, {"KERNEL_SPARK_EXECUTOR_INSTANCES": "0"}).conf == {
        "spark.executor.instances": "0"}


def test_admin_bounds_cap_the_kernelspec() -> None:
    params = kp(allowed_targets=TARGETS, bounds={"spark.driver.memory": {"max": "4g"},
                                                 "spark.driver.cores": {"min": 2},
                                                 "queue": {"choices": ["default", "adhoc"]}})
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_DRIVER_MEMORY": "4g"}).conf["spark.driver.memory"] == "4g"
    assert "from 512m to 4g" in refused(params, STANDARD, {"KERNEL_SPARK_DRIVER_MEMORY": "6g"})
    # The spec's default of 1 core is moved inside the admin's bounds.
    assert params.resolve("s", STANDARD, {}).conf["spark.driver.cores"] == "2"
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_YARN_QUEUE": "adhoc"}).queue == "adhoc"
    assert "one of default, adhoc" in refused(params, STANDARD, {"KERNEL_SPARK_YARN_QUEUE": "prod"})
    # A kernelspec cannot loosen an admin bound by declaring a wider one.
    wide = meta(driver_memory={"max": "64g"})
    assert "from 512m to 4g" in refused(params, wide, {"KERNEL_SPARK_DRIVER_MEMORY": "32g"})
    # An admin bound keyed by target also caps a renamed parameter.
    renamed = meta(big={"type": "memory", "env": "KERNEL_SPARK_BIG", "maps_to": "spark.driver.memory"})
    assert "at most 4g" in refused(params, renamed, {"KERNEL_SPARK_BIG": "5g"})


def test_admin_enum_choices_intersect() -> None:
    params = kp(allowed_targets=TARGETS, bounds={"spark.scheduler.mode": {"choices": ["FIFO"]}})
    assert "one of FIFO" in refused(params, STANDARD, {"KERNEL_SPARK_SCHEDULER_MODE": "FAIR"})
    assert params.resolve("s", STANDARD, {"KERNEL_SPARK_SCHEDULER_MODE": "FIFO"}).conf["spark.scheduler.mode"] == "FIFO"


def test_targets_outside_allowed_targets_are_a_kernelspec_error() -> None:
    spec = meta(opts={"type": "string", "env": "KERNEL_SPARK_OPTS", "maps_to": "spark.driver.extraJavaOptions",
                      "pattern": "-Xss[0-9]+[km]"})
    msg = refused(KernelParameters(), spec, {}, status=500)
    assert "KernelParameters.allowed_targets" in msg and "Kernelspec 'spec'" in msg
    allowed = kp(allowed_targets=["spark.driver.extraJavaOptions"])
    chosen = allowed.resolve("s", spec, {"KERNEL_SPARK_OPTS": "-Xss4m"})
    assert chosen.conf == {"spark.driver.extraJavaOptions": "-Xss4m"}


@pytest.mark.parametrize(("decl", "why"), [
    ({"x": {"type": "float", "env": "KERNEL_SPARK_X", "maps_to": "spark.x"}}, "type must be"),
    ({"x": {"type": "int", "env": "KERNEL_USERNAME", "maps_to": "spark.x"}}, "env must be"),
    ({"x": {"type": "int", "env": "SPARK_X", "maps_to": "spark.x"}}, "env must be"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_X"}}, "needs maps_to"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_X", "maps_to": "--conf"}}, "maps_to must be"),
    ({"x": {"type": "enum", "env": "KERNEL_SPARK_X", "maps_to": "spark.x"}}, "no choices"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_X", "maps_to": "spark.x", "choices": ["1"]}}, "only an enum"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_X", "maps_to": "spark.x", "min": "lots"}}, "malformed bound"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_X", "maps_to": "spark.x", "min": 5, "max": 2}}, "no value fits"),
    ({"x": {"type": "bool", "env": "KERNEL_SPARK_X", "maps_to": "spark.x", "default": "perhaps"}}, "default"),
    ({"x": {"type": "int", "env": "KERNEL_SPARK_DRIVER_MEMORY", "maps_to": "spark.x"}, "driver_memory": {}},
     "share env"),
    ({"x": "yes"}, "must be an object"),
])
def test_invalid_declarations_are_kernelspec_errors(decl: dict[str, Any], why: str) -> None:
    msg = refused(kp(allowed_targets=[*TARGETS, "spark.x"]), meta(**decl), {}, status=500)
    assert why in msg, msg
    # The same declaration written correctly is fine (the rule, not the parameter, refused it).
    good = meta(x={"type": "int", "env": "KERNEL_SPARK_X", "maps_to": "spark.x", "min": 1, "max": 3, "default": 2})
    assert kp(allowed_targets=["spark.x"]).resolve("s", good, {}).conf == {"spark.x": "2"}


def test_expose_shows_effective_defaults_and_bounds() -> None:
    params = kp(allowed_targets=TARGETS, bounds={"spark.driver.memory": {"max": "4g"}})
    spec = {"display_name": "x", "metadata": STANDARD}
    out = params.expose("s", spec)
    shown = out["metadata"]["yarn_gateway"]["parameters"]
    assert shown["driver_memory"] == {"type": "memory", "env": "KERNEL_SPARK_DRIVER_MEMORY",
                                      "maps_to": "spark.driver.memory", "default": "1g", "min": "512m", "max": "4g",
                                      "description": BUILTINS["driver_memory"]["description"]}
    assert shown["driver_cores"]["min"] == 1 and shown["driver_cores"]["default"] == 1
    assert shown["dynamic_allocation"]["default"] is False
    assert shown["mode"]["choices"] == ["FAIR", "FIFO"]
    assert spec["metadata"] is STANDARD and STANDARD["yarn_gateway"]["parameters"]["driver_memory"] == {}  # a copy
    broken = params.expose("s", {"metadata": meta(x={"type": "nope"})})
    assert broken["metadata"]["yarn_gateway"]["parameters"] == {}
    assert "needs env, maps_to" in broken["metadata"]["yarn_gateway"]["parameters_error"]
    assert params.expose("s", {"metadata": {}}) == {"metadata": {}}


@pytest.mark.parametrize("spec", ["spark_python_yarn_cluster", "spark_scala_yarn_cluster", "spark_R_yarn_cluster"])
def test_shipped_kernelspecs_declare_every_builtin(spec: str) -> None:
    with open(os.path.join(builtin_kernelspec_dir(), spec, "kernel.json")) as f:
        metadata = json.load(f)["metadata"]
    params = KernelParameters()
    assert {p.name for p in params.parameters(metadata)} == set(BUILTINS)
    assert params.resolve(spec, metadata, {"KERNEL_SPARK_EXECUTOR_MEMORY": "4g"}).conf["spark.executor.memory"] == "4g"
    assert "from 512m to 16g" in refused(params, metadata, {"KERNEL_SPARK_EXECUTOR_MEMORY": "17g"})
